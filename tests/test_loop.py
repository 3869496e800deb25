"""The teaching loop (`workbench loop`): its statistics against hand computations, and the whole pipeline end to end
on a tiny random Qwen2.5 model (the plumbing; the real numbers come from `make teaching-loop`, README)."""

from __future__ import annotations

import json
import math

import pytest

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.loop import STAGES, LoopConfig, heldout_by_problem, paired, run_loop


def test_paired_against_hand_computation():
    before = {"a": 0.0, "b": 1.0, "c": 0.5, "only_before": 9.0}
    after = {"a": 1.0, "b": 1.0, "c": 0.0, "only_after": -9.0}
    p = paired(before, after)
    diffs = [1.0, 0.0, -0.5]  # a, b, c: the keys both have
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert p["n"] == 3 and p["wins"] == 1 and p["losses"] == 1
    assert p["difference"] == pytest.approx(mean) and p["stderr"] == pytest.approx(sd / math.sqrt(3))
    assert p["z"] == pytest.approx(mean / (sd / math.sqrt(3)))
    assert p["before"] == pytest.approx(0.5) and p["after"] == pytest.approx(2 / 3)


def test_heldout_by_problem_averages_samples_and_skips_errors(tmp_path):
    f = tmp_path / "heldout.jsonl"
    rows = [{"problem": "1", "reward": -1.0}, {"problem": "1", "reward": -2.0}, {"problem": "2", "reward": 0.5},
            {"problem": "2", "reward": None, "error": "cannot score"}, {"problem": "3", "reward": float("nan")}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{torn line\n")
    assert heldout_by_problem(f) == {"1": -1.5, "2": 0.5}


@pytest.mark.parametrize("kw, match", [({"num_generations": 1}, "num_generations"), ({"rlt_steps": 0}, "rlt_steps"),
                                       ({"student_epochs": 0}, "student_epochs")])
def test_bad_sizes_are_refused(kw, match):
    with pytest.raises(WorkbenchError, match=match):
        LoopConfig(**kw)


def test_cli_flags_come_from_the_config(capsys):
    with pytest.raises(SystemExit):
        main(["loop", "--help"])
    out = capsys.readouterr().out
    for flag in ("--rlt-steps", "--distill-problems", "--no-bf16", "--output", "--resume"):
        assert flag in out
    assert main(["loop", "--num-generations", "1", "--output", "unused"]) == 2
    assert "num_generations must be at least 2" in capsys.readouterr().err


def test_loop_end_to_end_on_a_tiny_model(qwen_dir, tmp_path, capsys):
    out = tmp_path / "loop"
    cfg = LoopConfig(output_dir=str(out), model=str(qwen_dir), warmup_problems=4, distill_problems=4,
                     student_epochs=1, rlt_steps=1, rlt_prompts_per_step=2, num_generations=2,
                     max_completion_length=8, heldout_problems=2, heldout_samples=2, test_problems=4,
                     eval_max_new_tokens=8, batch_size=4)
    summary = run_loop(cfg)
    printed = capsys.readouterr().out
    for k, stage in enumerate(STAGES, 1):
        assert f"[loop {k}/{len(STAGES)}]" in printed and summary["stage_seconds"][stage] >= 0
    assert summary["total_seconds"] == pytest.approx(sum(summary["stage_seconds"].values()), abs=0.2)
    # every stage left its output
    for stage in ("teacher_sft", "student_traces", "rlt", "student_rlt"):
        assert (out / stage / "config.json").is_file()
    assert (out / "explanations" / "generated.jsonl").is_file()
    # the teacher's effect is recomputed from the held-out files, problem by problem
    before = heldout_by_problem(out / "rlt" / "heldout_before.jsonl")
    after = heldout_by_problem(out / "rlt" / "heldout_after.jsonl")
    t = summary["teacher_heldout_reward"]
    assert t["n"] == len(set(before) & set(after)) == 2
    assert t["difference"] == pytest.approx(sum(after[k] - before[k] for k in before) / 2)
    # the students' effects are recomputed from the evaluation records
    for key, (a, b) in {"rlt": ("before", "rlt"), "traces": ("before", "traces"),
                        "rlt_vs_traces": ("traces", "rlt")}.items():
        rec = {tag: {json.loads(line)["problem_id"]: json.loads(line)["equal"]
                     for line in (out / "evaluation" / tag / "records.jsonl").read_text().splitlines()}
               for tag in (a, b)}
        s = summary["students"][key]
        assert s["problems"] == 4
        assert s["difference"] == pytest.approx(sum(rec[b][k] - rec[a][k] for k in rec[a]) / 4)
    # the table, on screen and on disk
    table = (out / "loop_table.md").read_text()
    assert "teacher: held-out RLT reward" in table and "**total**" in table and table.strip() in printed
    assert json.loads((out / "loop_summary.json").read_text())["students"] == summary["students"]
    # a second run with resume keeps every finished stage
    again = run_loop(LoopConfig(**{**cfg.__dict__, "resume": True}))
    assert "done in an earlier run" in capsys.readouterr().out
    assert again["stage_seconds"] == summary["stage_seconds"]


def test_cpu_compact_lm_head_gives_the_same_loss_and_log_probs(qwen_dir):
    """The CPU lever (workbench.training.common.score_only_labelled_positions_on_cpu): TRL's fused LM head scoring only
    the labelled positions gives the loss, log-probs and gradients of scoring every position."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer import utils as trl_utils
    from trl.trainer.utils import add_fused_lm_head

    from workbench.training.common import score_only_labelled_positions_on_cpu

    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (2, 24))
    labels = ids.clone()
    labels[:, :15] = -100  # a prompt, as in the teacher warm-up
    labels[1, 20:] = -100  # and padding
    outs = []
    original = trl_utils._use_triton
    try:
        for compact in (False, True):
            trl_utils._use_triton = original
            if compact:
                assert score_only_labelled_positions_on_cpu()
                assert trl_utils._use_triton(torch.device("cpu")) is True
            model = AutoModelForCausalLM.from_pretrained(str(qwen_dir), dtype=torch.float32)
            add_fused_lm_head(model)
            out = model(input_ids=ids, labels=labels, fused_lm_head=True)
            out.loss.backward()
            grad = model.get_input_embeddings().weight.grad.clone()
            outs.append((out.loss.detach(), out.log_probs.detach(), grad))
    finally:
        trl_utils._use_triton = original
    (l0, lp0, g0), (l1, lp1, g1) = outs
    assert torch.allclose(l0, l1, atol=1e-6) and torch.allclose(lp0, lp1, atol=1e-6)
    assert torch.allclose(g0, g1, atol=1e-6)
    assert (lp1[labels[:, 1:] == -100] == 0).all() and (lp1[labels[:, 1:] != -100] < 0).all()
