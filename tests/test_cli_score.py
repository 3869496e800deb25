"""`workbench score` end to end through the real console entry point, with the embedded model."""

import json
import math
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

Q = "What is 17 + 25?"
SOL = "17 + 25 = 42. \\boxed{42}"


def run_cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_score_file_with_a_malformed_line(tmp_path):
    lines = [
        json.dumps({"id": "a", "question": Q, "solution": SOL, "completion": "Add the tens, then the ones.<|end_of_explanation|>"}),
        '{"id": "broken", "question": ',  # garbled JSON
        json.dumps({"question": Q, "solution": SOL, "explanation": "Twenty plus seventeen is 37, plus 5 is 42."}),
        json.dumps({"id": "c", "question": Q, "solution": "", "completion": "x"}),
        "",
        json.dumps({"id": "d", "question": Q, "solution": SOL, "completion": "no end tag"}),
        json.dumps([1, 2]),
    ]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = run_cli("score", "--input", str(src), "--output", str(out), "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    assert "scoring" in proc.stderr  # the progress bar
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", 2, 3, "c", "d", 7]  # same order; line number when there is no id
    assert "not valid JSON" in rows[1]["error"] and ": line 2, column 30:" in rows[1]["error"]
    assert "empty solution" in rows[3]["error"]
    assert "expected a JSON object" in rows[5]["error"]
    keys = {"id", "reward", "r_ss", "r_kl", "solution_logprob_mean", "solution_logprob_min", "kl_mean", "kl_max",
            "format_penalty", "solution_tokens", "explanation_tokens"}
    for r in (rows[0], rows[2], rows[4]):
        assert keys <= set(r)
        assert math.isclose(r["reward"], r["r_ss"] - r["r_kl"] + r["format_penalty"], abs_tol=1e-9)
        assert set(r["explanation_tokens"][0]) == {"token", "teacher_logprob", "student_logprob", "kl"}
        assert set(r["solution_tokens"][0]) == {"token", "logprob"}
    assert rows[0]["format_penalty"] == 0 and rows[4]["format_penalty"] == -1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left behind

    # the same completion through the Python API gives the same numbers
    from workbench.models import load_model, load_tokenizer
    from workbench.rewards import RLTScorer

    model, tok = load_model("smollm2-135m", "cpu"), load_tokenizer("smollm2-135m")
    api = RLTScorer(model, model, tok).score([json.loads(lines[0])])[0]
    assert api.reward == pytest.approx(rows[0]["reward"], abs=1e-4)


def test_prompt_files_change_the_reward(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "question": Q, "solution": SOL, "explanation": "Add 17 and 25."}) + "\n")
    (tmp_path / "t.txt").write_text("You explain solutions.\n")
    (tmp_path / "s.txt").write_text("You solve problems.\n")
    a = run_cli("score", "--input", str(src), "--output", str(tmp_path / "a.jsonl"))
    b = run_cli("score", "--input", str(src), "--output", str(tmp_path / "b.jsonl"),
                "--teacher-system-prompt-file", str(tmp_path / "t.txt"), "--student-system-prompt-file", str(tmp_path / "s.txt"))
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    ra, rb = (json.loads((tmp_path / f).read_text()) for f in ("a.jsonl", "b.jsonl"))
    assert ra["reward"] != pytest.approx(rb["reward"], abs=1e-3)


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("", "the file is empty"),
    ("{oops\n[1]\n", "no usable line"),
    (b"\xff\xfe\x00bad", "not UTF-8"),
])
def test_unusable_file_exits_non_zero_with_a_message(tmp_path, content, message):
    src = tmp_path / "in.jsonl"
    if isinstance(content, bytes):
        src.write_bytes(content)
    elif content is not None:
        src.write_text(content)
    proc = run_cli("score", "--input", str(src), "--output", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_model_and_prompt_file_errors(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"question": Q, "solution": SOL, "explanation": "x"}) + "\n")
    proc = run_cli("score", "--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--student", "no-such-alias")
    assert proc.returncode == 2 and "unknown model 'no-such-alias'" in proc.stderr
    proc = run_cli("score", "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                   "--teacher-system-prompt-file", str(tmp_path / "missing.txt"))
    assert proc.returncode == 2 and "missing.txt" in proc.stderr


def test_generated_tokenisation_from_the_cli(tmp_path):
    """`--teacher-tokenization generated` scores a line's `completion_ids` (the sampled tokens) as the API does."""
    from workbench.models import load_model, load_tokenizer
    from workbench.rewards import RewardConfig, RLTScorer

    tok = load_tokenizer("smollm2-135m")
    ids = tok.encode("Add the tens, then the ones.<|end_of_explanation|> More text.", add_special_tokens=False)
    item = {"id": "g", "question": Q, "solution": SOL, "completion": tok.decode(ids), "completion_ids": ids}
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps(item) + "\n")
    proc = run_cli("score", "--input", str(src), "--output", str(out), "--teacher-tokenization", "generated",
                   "--trailing-text-penalty", "-0.5")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())
    assert row["format_penalty"] == -0.5
    model = load_model("smollm2-135m", "cpu")
    api = RLTScorer(model, model, tok, RewardConfig(teacher_tokenization="generated", trailing_text_penalty=-0.5))
    assert row["reward"] == pytest.approx(api.score([item])[0].reward, abs=1e-4)


def test_step_attribution_equals_rescoring_without_each_step(tmp_path, qwen_dir):
    """`score --attribute steps`: each step's delta equals the reward of the whole explanation minus the reward of the
    explanation written out without that step, each scored on its own (an independent re-scoring)."""
    from workbench.models import load_model, load_tokenizer
    from workbench.rewards import RewardConfig, RLTScorer

    steps = ["First, 17 + 25: add the tens, 10 + 20 = 30.", "Then the ones: 7 + 5 = 12.", "Together 30 + 12 = 42."]
    completion = "\n\n".join(steps) + "<|end_of_explanation|>"
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "question": Q, "solution": SOL, "completion": completion}) + "\n")
    out = tmp_path / "out.jsonl"
    res = run_cli("score", "--input", str(src), "--output", str(out), "--teacher", str(qwen_dir), "--student",
                  str(qwen_dir), "--attribute", "steps")
    assert res.returncode == 0, res.stderr
    (row,) = [json.loads(line) for line in out.read_text().split("\n") if line]
    assert [s["text"] for s in row["steps"]] == steps
    model, tok = load_model(str(qwen_dir), "cpu"), load_tokenizer(str(qwen_dir))
    scorer = RLTScorer(model, model, tok, RewardConfig())
    (full,) = scorer.score([{"question": Q, "solution": SOL, "completion": completion}])
    assert abs(full.reward - row["reward"]) < 1e-4
    for i, s in enumerate(row["steps"]):
        rest = "\n\n".join(steps[:i] + steps[i + 1:]) + "<|end_of_explanation|>"
        (alone,) = scorer.score([{"question": Q, "solution": SOL, "completion": rest}])
        assert abs(s["delta_reward"] - (full.reward - alone.reward)) <= 1e-3
        assert abs(s["delta_r_ss"] - (full.r_ss - alone.r_ss)) <= 1e-3


def test_score_a_file_of_unrelated_problems_imports_only_what_scoring_needs(tmp_path):
    """The shape of a dataset scan: unrelated problems (their system prompt is shared across the file) and a GRPO
    group. The command's numbers are the API's with prefix sharing off, and the scoring path never imports the
    training, data or app stacks."""
    from workbench.models import load_model, load_tokenizer
    from workbench.rewards import RewardConfig, RLTScorer

    problems = [("What is 15% of 80?", "0.15 × 80 = 12. \\boxed{12}", "Ten percent is 8, five percent is 4."),
                ("Solve 3x + 7 = 22.", "3x = 15, so x = 5. \\boxed{5}", "Subtract 7, then divide by 3: x = 5."),
                ("How many edges does a cube have?", "12. \\boxed{12}", "Four on top, four below, four upright."),
                (Q, SOL, "Add the tens, then the ones."), (Q, SOL, "17 + 25: 30 and 12 make 42.")]
    items = [{"id": k, "question": q, "solution": s, "completion": c + "<|end_of_explanation|>"}
             for k, (q, s, c) in enumerate(problems)]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(it) + "\n" for it in items), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "workbench", "score", "--input", str(src),
                           "--output", str(out), "--device", "cpu"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "torch" in imported and "transformers" in imported
    assert not imported & {"datasets", "trl", "gradio", "pandas", "pyarrow", "vllm", "peft", "deepspeed", "matplotlib"}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    model, tok = load_model("smollm2-135m", "cpu"), load_tokenizer("smollm2-135m")
    plain = RLTScorer(model, model, tok, RewardConfig(share_prefix=False)).score(items)
    assert [r["reward"] for r in rows] == pytest.approx([r.reward for r in plain], abs=1e-4)


def test_build_scorer_loads_a_model_named_twice_once(monkeypatch):
    """Teacher and student named alike (or an alias and its folder) are one model, loaded once."""
    import types

    from workbench import models
    from workbench.cli import build_parser, build_scorer

    loads = []
    monkeypatch.setattr(models, "load_model", lambda name, device="auto", dtype=None: loads.append(name) or object())
    tok = types.SimpleNamespace(is_fast=True, pad_token_id=0, eos_token_id=0)
    monkeypatch.setattr(models, "load_tokenizer", lambda name="smollm2-135m": tok)
    folder = str(models.resolve_model_path("smollm2-135m"))
    for student in ("smollm2-135m", folder):
        loads.clear()
        scorer = build_scorer(build_parser().parse_args(["score", "--input", "x", "--output", "y", "--student", student]))
        assert loads == ["smollm2-135m"] and scorer.student is scorer.teacher
