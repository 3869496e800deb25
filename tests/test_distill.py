"""Ranking explanations by the RLT reward and building the student SFT set.

The ranking and the CLI are plumbing: they run on the tiny random SmolLM2 of conftest.py (the embedded model's
architecture and tokenizer), whose rewards are as well defined as the embedded model's.
"""

import pytest

from workbench import formats
from workbench.distill import build_student_set, rank_explanations, student_example
from workbench.errors import WorkbenchError

Q1, S1 = "What is 9 × 7?", "9 × 7 = 63. \\boxed{63}"
Q2, S2 = "What is 100 − 37?", "100 − 37 = 63. \\boxed{63}"


def test_rank_keeps_the_best_per_problem_with_components(tiny):
    from workbench.rewards import RLTScorer

    model, tok = tiny
    rows = [
        {"problem_id": "p1", "question": Q1, "solution": S1, "completion": "Nine sevens: 7 × 10 = 70, minus 7 is 63.<|end_of_explanation|>"},
        {"problem_id": "p1", "question": Q1, "solution": S1, "completion": "banana banana banana"},
        {"problem_id": "p2", "question": Q2, "solution": S2, "completion": "Subtract 40 then add 3: 60 + 3 = 63.<|end_of_explanation|>"},
        {"problem_id": "p3", "question": Q2, "solution": "", "completion": "x"},
    ]
    scorer = RLTScorer(model, model, tok)
    kept, errors = rank_explanations(scorer, rows, keep=1)
    assert [r["problem_id"] for r in kept] == ["p1", "p2"]
    assert len(errors) == 1 and "empty solution" in errors[0]["error"]
    direct = scorer.score(rows[:2])
    assert kept[0]["reward"] == pytest.approx(max(r.reward for r in direct), abs=1e-5)  # batched apart: fp32 noise
    assert kept[0]["candidates"] == 2 and kept[0]["rank"] == 1
    assert kept[0]["reward"] == pytest.approx(kept[0]["r_ss"] - kept[0]["r_kl"] + kept[0]["format_penalty"])
    both, _ = rank_explanations(scorer, rows[:2], keep=5)
    assert [r["rank"] for r in both] == [1, 2] and both[0]["reward"] >= both[1]["reward"]


def test_student_example_is_the_stratos_format():
    ex = student_example({"question": Q1, "solution": S1, "completion": "Seven nines.<|end_of_explanation|>junk"})
    assistant = ex["conversations"][1]["value"]
    assert assistant == f"<|begin_of_thought|>\n\nSeven nines.<|end_of_thought|>\n\n<|begin_of_solution|>{S1}<|end_of_solution|>"
    assert formats.split_student_response(assistant) == ("\n\nSeven nines.", S1)
    r1 = student_example({"question": Q1, "solution": S1, "explanation": "x"}, tags=formats.R1)
    assert r1["conversations"][1]["value"].startswith("<think>\n\nx</think>")


def test_build_takes_the_best_rewarded_candidate_that_fits(tiny):
    _, tok = tiny  # SmolLM2's tokenizer
    long_body = "This is a very long explanation. " * 200
    rows = [
        {"problem_id": "a", "question": Q1, "solution": S1, "explanation": long_body, "reward": -1.0},
        {"problem_id": "a", "question": Q1, "solution": S1, "explanation": "Short.", "reward": -2.0},
        {"problem_id": "b", "question": Q2, "solution": S2, "explanation": long_body, "reward": -1.5},
    ]
    examples, stats = build_student_set(rows, tok, max_tokens=512)
    assert len(examples) == 1 and "Short." in examples[0]["conversations"][1]["value"]
    assert stats["skipped_too_long"] == 1 and stats["used_lower_ranked_candidate"] == 1
    assert stats["problems"] == 2 and stats["tokens_max"] <= 512
    examples, stats = build_student_set(rows, tok, max_tokens=None)
    assert len(examples) == 2 and long_body.strip() in examples[0]["conversations"][1]["value"]


def test_build_skips_rows_without_a_solution_or_with_a_bad_reward():
    rows = [{"question": Q1, "explanation": "x"},
            {"problem_id": "p", "question": Q2, "solution": S2, "explanation": "low", "reward": -1.0},
            {"problem_id": "p", "question": Q2, "solution": S2, "explanation": "nan", "reward": float("nan")},
            {"problem_id": "p", "question": Q2, "solution": S2, "explanation": "text", "reward": "high"},
            {"problem_id": "p", "question": Q2, "solution": S2, "explanation": "best", "reward": 0.0}]
    examples, stats = build_student_set(rows, locations=[f"line {k}" for k in range(1, 6)])
    assert [e["conversations"][1]["value"].split("\n\n")[1].split("<")[0] for e in examples] == ["best"]  # not -1.0
    assert stats["skipped_bad_rows"] == 3
    assert stats["skipped_rows"][0] == "line 1: column 'solution': missing"
    assert stats["skipped_rows"][1].startswith("line 3: column 'reward': expected a finite number, got 'nan'")
    assert stats["skipped_rows"][2].startswith("line 4: column 'reward': expected a finite number, got 'high'")
    with pytest.raises(WorkbenchError, match="tokenizer"):
        build_student_set([{"question": Q1, "solution": S1, "explanation": "x"}], max_tokens=10)


def test_generate_rank_build_from_the_cli_and_resume(tmp_path, tiny_dir, tiny, capsys):
    import json

    from workbench.cli import main

    def cli(*args):
        assert main(list(args)) == 0
        return capsys.readouterr().err

    gen, best, sft = tmp_path / "gen.jsonl", tmp_path / "best.jsonl", tmp_path / "sft.jsonl"
    common = ("generate", "--data", "demo", "--limit", "1", "--max-new-tokens", "8", "--output", str(gen),
              "--teacher", tiny_dir, "--engine", "transformers")  # the vLLM path of generate: tests/test_sampling.py
    cli(*common, "--n", "2")
    rows = [json.loads(x) for x in gen.read_text().splitlines()]
    assert [(r["problem_id"], r["sample"]) for r in rows] == [("arith-01", 0), ("arith-01", 1)]
    assert all(r["completion_tokens"] <= 8 and r["teacher"] == tiny_dir for r in rows)
    with gen.open("a") as fh:
        fh.write('{"problem_id": "arith-01", "sam')  # a run killed mid-line
    err = cli(*common, "--n", "3")  # resumes: only sample 2 is new
    assert "skipped 2 already there" in err
    rows = [json.loads(x) for x in gen.read_text().splitlines()]
    assert [r["sample"] for r in rows] == [0, 1, 2]

    cli("rank", "--input", str(gen), "--output", str(best), "--teacher", tiny_dir, "--student", tiny_dir)
    [top] = [json.loads(x) for x in best.read_text().splitlines()]
    assert top["candidates"] == 3 and top["rank"] == 1 and "r_kl" in top
    assert top["reward"] == pytest.approx(max(r["reward"] for r in _rank_all(tiny, rows)), abs=1e-5)  # the best
    cli("distill", "build", "--input", str(best), "--output", str(sft), "--max-tokens", "4096")
    [ex] = [json.loads(x) for x in sft.read_text().splitlines()]
    assert ex["conversations"][1]["value"].startswith("<|begin_of_thought|>\n\n")
    assert ex["reward"] == top["reward"]


def _rank_all(tiny, rows):
    """Every candidate, ranked (keep=all) by a scorer made directly from the tiny model."""
    from workbench.rewards import RLTScorer

    model, tok = tiny
    kept, errors = rank_explanations(RLTScorer(model, model, tok), rows, keep=len(rows))
    assert not errors and len(kept) == len(rows)
    return kept
