"""Multi-process training: `accelerate launch ... --num_processes 2 -m workbench train sft|rlt` on the CPU.

Every file the workbench writes itself (metrics.jsonl, completions.jsonl, recipe.yaml, summaries, held-out samples,
the saved model) is written once, by the main process; completions are gathered from both processes exactly once;
logged step metrics are the global ones.

Accelerate runs several CPU processes only through mpirun: `accelerate launch --cpu --num_processes 2` starts ONE
process (its simple launcher; `workbench train` warns). Two real CPU processes come from the torchrun launcher,
`--multi_gpu`, with ACCELERATE_USE_CPU=true (gloo backend): what these tests use.

What is checked is the plumbing of two processes, not what the model learns: both runs train the tiny random SmolLM2
of conftest.py (the embedded model's architecture and tokenizer, 2 layers), which keeps each run to its two
processes' start-up.
"""

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "cpu"
NPROC = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What a launcher sets for its processes: a variable left in this process's environment by an in-process training run
# (Accelerate's state) must not reach the launched commands, as it would not from a user's shell.
_LAUNCH_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "PMI_SIZE",
                "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS and not k.startswith("ACCELERATE_")}
    return {**env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE",
            "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "true"}


def _launch(launcher_args: list[str], workbench_args: list[str], timeout: int = 1200) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher_args, "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "workbench", *workbench_args]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _train(stage: str, recipe: str, out: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    return _launch(["--multi_gpu", "--num_processes", str(NPROC)],
                   ["train", stage, "--recipe", str(RECIPES / recipe), f"output_dir={out}", *overrides])


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _check_files(out: Path, jsonl: set[str]) -> None:
    """Exactly the expected logs, one saved model, nothing written per process."""
    files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    assert {f for f in files if f.endswith(".jsonl")} == jsonl
    assert [f for f in files if f.endswith(".safetensors")] == ["model.safetensors"]
    assert not [f for f in files if "rank" in f or "process" in f or f.startswith("checkpoint-")], files


def _check_model(out: Path, start: str) -> None:
    """The saved model is the whole model (every parameter, once) and it was trained: it differs from `start`."""
    from workbench.models import load_model

    model, initial = load_model(str(out), "cpu"), load_model(start, "cpu")
    saved, before = dict(model.named_parameters()), dict(initial.named_parameters())
    assert saved.keys() == before.keys()
    assert all(saved[k].shape == before[k].shape for k in saved)
    assert any(not saved[k].equal(before[k]) for k in saved)


def test_sft_two_processes(tmp_path, tiny_dir):
    out = tmp_path / "sft"
    proc = _train("sft", "teacher_sft.yaml", out,
                  [f"model={tiny_dir}", "max_steps=2", f"max_samples={2 * NPROC * 2}", "per_device_train_batch_size=2", "max_length=256",
                   "save_strategy=no", "report_to=none"])
    assert proc.stdout.count("[train sft] done") == 1  # the main process alone reports
    metrics = _jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["loss"] is not None and m["loss"] > 0 for m in metrics)
    # 8 examples, 2 per process per step: both processes trained, so the two steps are one epoch
    assert metrics[-1]["epoch"] == pytest.approx(1.0)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 2
    for name in ("recipe.yaml", "trl_config.json", "config.json", "tokenizer.json"):
        assert (out / name).is_file(), name
    _check_files(out, {"metrics.jsonl"})
    _check_model(out, tiny_dir)


def test_rlt_two_processes(tmp_path, tiny_dir):
    out = tmp_path / "rlt"
    gens, per_device = 2, 2
    per_step = per_device * NPROC  # completions per optimizer step, across both processes
    prompts = 2 * per_step // gens  # two steps, one epoch
    proc = _train("rlt", "teacher_rlt.yaml", out,
                  [f"model={tiny_dir}", f"student={tiny_dir}", "max_steps=2", f"num_generations={gens}",
                   f"per_device_train_batch_size={per_device}", "gradient_accumulation_steps=1",
                   "max_completion_length=16", f"max_samples={prompts}", "save_strategy=no", "report_to=none",
                   "eval_max_problems=2", "eval_samples_per_problem=1", "eval_batch_size=2"])
    assert proc.stdout.count("[train rlt] done") == 1
    metrics = _jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    assert metrics[-1]["epoch"] == pytest.approx(1.0)
    rows = _jsonl(out / "completions.jsonl")
    assert Counter(r["step"] for r in rows) == {1: per_step, 2: per_step}
    assert [r["policy_step"] for r in rows] == [r["step"] - 1 for r in rows]
    # each prompt of the epoch appears in exactly one step, with its whole group: no row twice, none missing; a step
    # has per_step // gens prompts, one group per process, so both processes' completions are there
    groups = Counter((r["step"], r["id"]) for r in rows)
    assert set(groups.values()) == {gens}
    assert len({i for _, i in groups}) == prompts == len(groups)
    for m in metrics:  # the logged step metrics are the global ones: means over both processes' completions
        mine = [r for r in rows if r["step"] == m["step"]]
        for key in ("reward", "r_ss", "r_kl"):
            assert m[key] == pytest.approx(sum(r[key] for r in mine) / len(mine), abs=1e-4), key
        assert m["format_penalty_rate"] == pytest.approx(sum(r["format_penalty"] != 0 for r in mine) / len(mine))
    # held-out samples: written once, by the main process
    summary = json.loads((out / "rlt_summary.json").read_text())
    assert summary["global_step"] == 2
    for tag in ("before", "after"):
        held = _jsonl(out / f"heldout_{tag}.jsonl")
        assert len(held) == 2 and len({r["id"] for r in held}) == 2
        assert summary["heldout"][tag]["n"] == 2
    _check_files(out, {"metrics.jsonl", "completions.jsonl", "heldout_before.jsonl", "heldout_after.jsonl"})
    _check_model(out, tiny_dir)


def test_accelerate_cpu_launch_warns_it_runs_one_process(tmp_path):
    """`accelerate launch --cpu --num_processes 2` spawns one process: `workbench train` says so (dry run: no training)."""
    proc = _launch(["--cpu", "--num_processes", str(NPROC)],
                   ["train", "sft", "--recipe", str(RECIPES / "teacher_sft.yaml"), f"output_dir={tmp_path}", "--dry-run"],
                   timeout=300)
    assert "starts a single process" in proc.stderr
