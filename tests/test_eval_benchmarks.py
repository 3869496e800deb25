"""Benchmarks and presets: countdown generation, GPQA shuffling as SkyThought does it, hub and local loading."""

import json
import random

import pytest

from workbench.errors import WorkbenchError
from workbench.eval import benchmarks as bm
from workbench.eval.grading import grade
from workbench.eval.presets import PRESETS, get_preset


def test_countdown_is_deterministic_and_solvable():
    for level in bm.COUNTDOWN_LEVELS:
        probs = bm.countdown_problems(level, 30)
        assert probs == bm.countdown_problems(level, 30)
        assert bm.countdown_problems(level, 5) == probs[:5]  # an instance does not depend on how many are asked
        assert len({p["id"] for p in probs}) == 30
        for p in probs:
            spec = bm.COUNTDOWN_LEVELS[level]
            assert len(p["gold"]["numbers"]) == spec["count"]
            assert p["gold"]["target"] not in p["gold"]["numbers"]
            # the generator's own solution passes the grader
            assert grade(p["gold"], f"\\boxed{{{p['meta']['solution']}}}", "countdown").equal, p


def test_load_countdown_and_limits():
    assert len(bm.load_benchmark("countdown", limit=3)) == 3
    assert bm.load_benchmark("countdown-easy", limit=2)[0]["id"] == "countdown-easy-0000"
    with pytest.raises(WorkbenchError, match="at least 1"):
        bm.load_benchmark("countdown", limit=0)
    with pytest.raises(WorkbenchError, match="unknown benchmark"):
        bm.load_benchmark("mmlu")


def _gpqa_rows(n):
    return [(f"row {i}", {"Question": f"Q{i}?", "Correct Answer": f"right{i}", "Incorrect Answer 1": f"w{i}a",
                          "Incorrect Answer 2": f"w{i}b", "Incorrect Answer 3": f"w{i}c", "Record ID": f"rec{i}"})
            for i in range(n)]


def test_gpqa_options_follow_skythought_seed_41():
    """SkyThought: random.seed(41) once, then random.shuffle of each row's four answers in dataset order."""
    calls = []

    def loader(hub_id, config, split):
        calls.append((hub_id, config, split))
        return _gpqa_rows(6)

    probs = bm.load_benchmark("gpqa-diamond", loader=loader)
    assert calls == [("Idavidrein/gpqa", "gpqa_diamond", "train")]
    random.seed(41)
    for (_, row), p in zip(_gpqa_rows(6), probs):
        answers = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"]]
        random.shuffle(answers)
        options = ", ".join(f"{letter}) {a}" for letter, a in zip("ABCD", answers))
        assert p["question"] == f"{row['Question']}\n{options}"
        assert p["gold"] == "ABCD"[answers.index(row["Correct Answer"])]
        assert p["kind"] == "mcq" and p["id"] == row["Record ID"]
    # a limit keeps the options of the full run
    assert bm.load_benchmark("gpqa", limit=2, loader=loader) == probs[:2]


def test_hub_ids_and_splits():
    assert (bm.BENCHMARKS["aime24"].hub_id, bm.BENCHMARKS["aime24"].split) == ("AI-MO/aimo-validation-aime", "train")
    assert (bm.BENCHMARKS["math500"].hub_id, bm.BENCHMARKS["math500"].split) == ("qq8933/MATH500", "test")
    g = bm.BENCHMARKS["gpqa-diamond"]
    assert (g.hub_id, g.config, g.split) == ("Idavidrein/gpqa", "gpqa_diamond", "train")


def test_aime_keeps_2024_rows():
    rows = [("row 0", {"id": 1, "problem": "p1", "answer": "12", "url": "https://x/2023_AIME_I/Problem_1"}),
            ("row 1", {"id": 2, "problem": "p2", "answer": "34", "url": "https://x/2024_AIME_I/Problem_2"})]
    probs = bm.load_benchmark("aime24", loader=lambda *a: rows)
    assert [(p["question"], p["gold"], p["kind"]) for p in probs] == [("p2", "34", "math")]


def test_hub_unreachable_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    with pytest.raises(WorkbenchError, match="--data"):
        bm.load_benchmark("math500", limit=1)


def test_local_files(tmp_path):
    f = tmp_path / "math.jsonl"
    f.write_text(json.dumps({"problem": "1+1?", "answer": "2", "unique_id": "a"}) + "\n"
                 + json.dumps({"problem": "2+2?", "solution": "so \\boxed{4}", "unique_id": "a"}) + "\n")
    probs = bm.load_benchmark("math500", data=str(f))
    assert [(p["id"], p["gold"]) for p in probs] == [("a", "2"), ("a#1", "4")]  # ids made unique
    g = tmp_path / "gpqa.jsonl"
    g.write_text(json.dumps({"question": "Q?\nA) x, B) y, C) z, D) w", "answer": "C"}) + "\n")
    assert bm.load_benchmark("gpqa", data=str(g))[0]["gold"] == "C"
    c = tmp_path / "cd.jsonl"
    c.write_text(json.dumps({"numbers": [3, 4], "target": 12}) + "\n")
    assert bm.load_benchmark("countdown", data=str(c))[0]["gold"] == {"target": 12, "numbers": [3, 4]}


def test_local_files_bad_rows(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"question": "no answer"}) + "\n")
    with pytest.raises(WorkbenchError, match="line 1.*answer"):
        bm.load_benchmark("math500", data=str(f))
    g = tmp_path / "gpqa.jsonl"
    g.write_text(json.dumps({"question": "Q?", "answer": "E"}) + "\n")
    with pytest.raises(WorkbenchError, match="A-D"):
        bm.load_benchmark("gpqa", data=str(g))
    c = tmp_path / "cd.jsonl"
    c.write_text(json.dumps({"numbers": "3 4", "target": 12}) + "\n")
    with pytest.raises(WorkbenchError, match="list of integers"):
        bm.load_benchmark("countdown", data=str(c))
    with pytest.raises(WorkbenchError, match="no such file"):
        bm.load_benchmark("math500", data=str(tmp_path / "nope.jsonl"))


def test_presets():
    sky = PRESETS["skythought"]
    assert (sky.temperature, sky.top_p, sky.max_new_tokens, sky.n, sky.pass_k) == (0.0, 1.0, 32768, 1, (1,))
    assert sky.prompt("math", "What is 1+1?") == "Return your final response within \\boxed{}. What is 1+1?"
    assert sky.prompt("gpqa", "Q").startswith("Return your final response within \\boxed{} and only include the "
                                              "letter choice (A, B, C, or D) as your final response. ")
    assert sky.system_for("Qwen/Qwen2.5-7B-Instruct").endswith("You should think step-by-step.")
    assert sky.system_for("bespokelabs/Bespoke-Stratos-7B") is None  # not in SkyThought 4bb8f3e's model table
    assert sky.system_for("runs/my-student") is None  # SkyThought knew no system prompt for other models
    assert get_preset("skythought", system_prompt="S").system_for("Qwen/Qwen2.5-7B-Instruct") == "S"
    p = get_preset("sample-8", n=4, pass_k=[1, 4])
    assert (p.n, p.pass_k, p.temperature) == (4, (1, 4), 0.7)
    for bad, match in (({"n": 2}, "identical"), ({"top_p": 0}, "top_p"), ({"max_new_tokens": 0}, "max_new_tokens")):
        with pytest.raises(WorkbenchError, match=match):
            get_preset("skythought", **bad)
    with pytest.raises(WorkbenchError, match="pass@k"):
        get_preset("sample-8", pass_k=[16])
    with pytest.raises(WorkbenchError, match="unknown preset"):
        get_preset("fast")
