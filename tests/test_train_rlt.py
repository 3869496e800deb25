"""RLT training: a 2-step GRPO run whose logged rewards equal `workbench score`, and resume.

The reward of a completion depends on the teacher that scored it, and the teacher is the policy, which changes at
every step. A completion logged for step k was sampled and scored by the teacher after k-1 updates
(`policy_step`): the initial model for step 1, `checkpoint-1` for step 2. `workbench score` with that teacher
must give the same reward, and the initial teacher a different one for step 2 (so the check can tell them apart).

The runs train the tiny random SmolLM2 of conftest.py (the embedded model's architecture and tokenizer, 2 layers) as
teacher and student: what is checked is which model and which tokens scored what, not what is learnt. Its learning
rate is high (1e-2) so that one step moves the rewards far more than the tolerance of the comparison.
"""

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: much faster on a shared CPU

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from workbench.cli import main  # noqa: E402

pytestmark = pytest.mark.slow

RECIPE = str(Path(__file__).resolve().parents[1] / "recipes" / "cpu" / "teacher_rlt.yaml")
ARGS = ["max_steps=2", "num_generations=2", "per_device_train_batch_size=2", "gradient_accumulation_steps=1",
        "max_completion_length=24", "max_samples=4", "eval_split=null", "save_steps=1", "report_to=none",
        "ref_model_sync_steps=1", "log_token_details=true", "learning_rate=1e-2",
        "log_completions=true"]  # TRL's own log too: completions/completions_{step:05d}.parquet
REQUIRED = ("step", "reward", "r_ss", "r_kl", "format_penalty_rate", "completion_length", "kl", "lr")


@pytest.fixture(scope="module")
def TINY(tiny_dir):
    """The runs' overrides: the tiny model as teacher and student, two steps of two completions."""
    return [f"model={tiny_dir}", f"student={tiny_dir}", *ARGS]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory, TINY):
    out = tmp_path_factory.mktemp("rlt") / "out"
    assert main(["train", "rlt", "--recipe", RECIPE, f"output_dir={out}", *TINY]) == 0
    yield out
    shutil.rmtree(out.parent, ignore_errors=True)  # checkpoints


def test_outputs(run):
    metrics = _jsonl(run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        for key in REQUIRED:
            assert m[key] is not None, key
        assert m["lr"] == pytest.approx(yaml.safe_load((run / "recipe.yaml").read_text())["learning_rate"])
    rows = _jsonl(run / "completions.jsonl")
    assert [r["step"] for r in rows] == [1, 1, 2, 2] and [r["policy_step"] for r in rows] == [0, 0, 1, 1]
    for r in rows:
        assert r["reward"] == pytest.approx(r["r_ss"] - r["r_kl"] + r["format_penalty"], abs=1e-5)
        assert r["explanation_tokens"] and r["solution_tokens"]  # log_token_details=true
    for m in metrics:  # the logged step reward is the mean of that step's completions
        mean = sum(r["reward"] for r in rows if r["step"] == m["step"]) / 2
        assert m["reward"] == pytest.approx(mean, abs=1e-4)
        assert m["format_penalty_rate"] == pytest.approx(
            sum(r["format_penalty"] != 0 for r in rows if r["step"] == m["step"]) / 2)
    for name in ("recipe.yaml", "trl_config.json", "config.json", "model.safetensors", "rlt_summary.json",
                 "checkpoint-1", "checkpoint-2"):
        assert (run / name).exists(), name


def _score(rows: list[dict], folder: Path, teacher: str, student: str) -> list[dict]:
    """`workbench score` of logged completions (their sampled token ids) with the given teacher and student."""
    folder.mkdir(parents=True)
    inp, outp = folder / "in.jsonl", folder / "out.jsonl"
    inp.write_text("".join(json.dumps({"id": k, "question": r["question"], "solution": r["solution"],
                                       "completion": r["completion"], "completion_ids": r["completion_ids"]}) + "\n"
                           for k, r in enumerate(rows)))
    reward = yaml.safe_load(Path(RECIPE).read_text())["reward"]  # the recipe scores the sampled tokens
    assert reward["teacher_tokenization"] == "generated"
    assert main(["score", "--input", str(inp), "--output", str(outp), "--teacher", teacher,
                 "--student", student, "--device", "cpu", "--teacher-tokenization", "generated",
                 "--trailing-text-penalty", str(reward["trailing_text_penalty"])]) == 0
    scored = _jsonl(outp)
    assert len(scored) == len(rows) == 2
    return scored


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


def test_trls_completions_log_reads_as_the_workbenchs(run, tmp_path, tiny_dir, capsys):
    """GRPOTrainer's completions/*.parquet (prompt text, completion, `rlt`, r_ss, r_kl, advantage) read back: the
    question and solution recovered from its prompts, its samples and rewards those of our completions.jsonl; the
    app's loader and `workbench score` take the run folder."""
    from workbench import runlog

    assert sorted(p.name for p in (run / "completions").iterdir()) == ["completions_00001.parquet",
                                                                        "completions_00002.parquet"]
    ours = _jsonl(run / "completions.jsonl")
    trl = runlog.read_run_log(run)
    assert trl.kind == "trl" and trl.steps == [1, 2] and not trl.skipped and len(trl.samples) == len(ours) == 4
    for mine, theirs in zip(ours, trl.samples):
        assert (theirs["step"], theirs["question"], theirs["solution"], theirs["completion"]) == (
            mine["step"], mine["question"], mine["solution"], mine["completion"])
        for k in ("reward", "r_ss", "r_kl"):
            assert theirs["logged"][k] == pytest.approx(mine[k], abs=1e-4)
        assert abs(theirs["logged"]["advantage"]) == pytest.approx(1 / 2 ** 0.5, abs=1e-3)  # a group of two
    own = runlog.read_run_log(run / "completions.jsonl")
    assert own.kind == "workbench" and [s["completion_ids"] for s in own.samples] == [r["completion_ids"] for r in ours]
    # `workbench score` on the run folder at step 2 = on a file of the same rows written by hand
    rows = [r for r in ours if r["step"] == 2]
    hand = tmp_path / "hand.jsonl"
    hand.write_text("".join(json.dumps({k: r[k] for k in ("question", "solution", "completion")}) + "\n" for r in rows))
    flags = ["--teacher", str(run / "checkpoint-1"), "--student", tiny_dir, "--device", "cpu"]
    assert main(["score", "--input", str(run), "--steps", "2", "--output", str(tmp_path / "a.jsonl"), *flags]) == 0
    assert "TRL's completions log: 4 samples, steps 1–2" in capsys.readouterr().err
    assert main(["score", "--input", str(hand), "--output", str(tmp_path / "b.jsonl"), *flags]) == 0
    a, b = _jsonl(tmp_path / "a.jsonl"), _jsonl(tmp_path / "b.jsonl")
    assert [r["step"] for r in a] == [2, 2] and [r["id"] for r in a] == [s["id"] for s in runlog.score_rows(trl, [2])]
    assert [r["logged_reward"] for r in a] == pytest.approx([r["reward"] for r in rows], abs=1e-4)
    assert [r["reward"] for r in a] == pytest.approx([r["reward"] for r in b], abs=1e-6)


def _ref_weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "ref_model.safetensors"))


def test_checkpoints_hold_the_synced_reference_model(run, tiny_dir):
    """sync_ref_model mixes the reference towards the policy (alpha 0.9, every step here): each checkpoint holds that
    reference, which is neither the initial model nor the policy."""
    from safetensors.torch import load_file

    initial = {k: v for k, v in load_file(str(Path(tiny_dir) / "model.safetensors")).items()}
    for step in (1, 2):
        ref = _ref_weights(run / f"checkpoint-{step}")
        policy = load_file(str(run / f"checkpoint-{step}" / "model.safetensors"))
        name = "model.layers.0.self_attn.q_proj.weight"
        assert (ref[name] - initial[name]).abs().max() > 1e-4
        assert (ref[name] - policy[name]).abs().max() > 1e-6
        # step 1 syncs a reference that was the initial model: ref = 0.9 * policy + 0.1 * initial
        if step == 1:
            assert torch.allclose(ref[name], 0.9 * policy[name] + 0.1 * initial[name], atol=1e-6)


def test_resume_without_a_saved_reference_says_so(run, tmp_path, TINY, capsys):
    """A checkpoint written without the reference (another tool, an older workbench): the run resumes and warns that
    the reference restarts from the initial model."""
    out = tmp_path / "old"
    shutil.copytree(run, out, ignore=lambda d, names: [n for n in names if n in ("checkpoint-2", "ref_model.safetensors")])
    assert main(["train", "rlt", "--recipe", RECIPE, f"output_dir={out}", *TINY, "resume_from_checkpoint=true"]) == 0
    assert "holds no ref_model.safetensors" in capsys.readouterr().out


def test_resume_from_checkpoint(run, tmp_path, TINY):
    out = tmp_path / "resumed"
    # as if the run had stopped after step 1: its logs and checkpoint-1 (linked, not copied), no checkpoint-2
    shutil.copytree(run, out, ignore=lambda d, names: [n for n in names if n.startswith("checkpoint-")
                                                        or n.endswith(".safetensors")])
    (out / "checkpoint-1").symlink_to(run / "checkpoint-1", target_is_directory=True)
    assert main(["train", "rlt", "--recipe", RECIPE, f"output_dir={out}", *TINY,
                 "resume_from_checkpoint=true"]) == 0
    metrics = _jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]  # step 2 trained again, logged once
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    before = [r for r in _jsonl(run / "completions.jsonl") if r["step"] == 2]
    after = [r for r in _jsonl(out / "completions.jsonl") if r["step"] == 2]
    assert len(after) == 2 and [r["step"] for r in _jsonl(out / "completions.jsonl")] == [1, 1, 2, 2]
    # the RNG state comes back with the checkpoint: the same completions, the same rewards
    assert [r["completion"] for r in after] == [r["completion"] for r in before]
    assert [r["reward"] for r in after] == pytest.approx([r["reward"] for r in before], abs=1e-4)
    # and the soft-synced reference model (TRL's checkpoint lacks it): the same reference weights after step 2, the
    # same KL to it and the same loss at step 2 as the uninterrupted run
    ref_run, ref_resumed = _ref_weights(run / "checkpoint-2"), _ref_weights(out / "checkpoint-2")
    assert ref_run.keys() == ref_resumed.keys()
    assert max((ref_run[k] - ref_resumed[k]).abs().max().item() for k in ref_run) < 1e-6
    first = _jsonl(run / "metrics.jsonl")[1]
    assert first["kl"] > 1e-4  # the policy has moved away from its reference: the KL can tell references apart
    assert metrics[1]["kl"] == pytest.approx(first["kl"], rel=1e-4, abs=1e-7)
    assert metrics[1]["loss"] == pytest.approx(first["loss"], rel=1e-4, abs=1e-7)
    # without a checkpoint to resume from, a clear error
    assert main(["train", "rlt", "--recipe", RECIPE, f"output_dir={tmp_path / 'empty'}", *TINY,
                 "resume_from_checkpoint=true"]) == 2


def test_lora_run_saves_adapter_and_merged_model(tmp_path, TINY):
    from workbench.models import load_model

    out = tmp_path / "lora"
    assert main(["train", "rlt", "--recipe", RECIPE, f"output_dir={out}", *TINY, "max_steps=1",
                 "lora={r: 4, lora_alpha: 8, target_modules: [q_proj, v_proj]}", "sync_ref_model=false",
                 "learning_rate=1e-3"]) == 0
    rows = _jsonl(out / "completions.jsonl")
    assert len(rows) == 2 and all(r["reward"] is not None for r in rows)
    assert (out / "adapter" / "adapter_config.json").is_file()
    load_model(str(out), "cpu")  # the merged model loads like any other
    assert main(["train", "rlt", "--recipe", RECIPE, f"output_dir={out}", *TINY, "lora={r: 4}"]) == 2  # ref sync
