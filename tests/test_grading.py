"""Grading units: the multiple-choice extractor, Math-Verify with a hard timeout, countdown, `workbench grade`."""

import json
import textwrap
import threading
import time

import pytest

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.eval import grading
from workbench.eval.grading import evaluate_expression, extract_choice, extract_countdown, grade, wrap_gold

# ------------------------------------------------------------------------------------------ multiple choice


@pytest.mark.parametrize("text, letter, rule", [
    ("Therefore, the final answer is $\\boxed{C}$.", "C", "boxed"),
    ("$\\boxed{\\text{(B)}}$", "B", "boxed"),
    ("The answer is C.\n\nAnswer: A", "A", "explicit"),  # the last explicit statement wins
    ("The answer is for sure D, it can't be A or B", "D", "explicit"),
    ("Answer: **B**", "B", "explicit"),
    ("It's not A because it doesn't make sense, therefore I think it's B", "B", "conclusion"),
    ("B is correct. Or maybe C. Actually let's finalize B", "B", "conclusion"),
    ("D. it can't be A or B", "D", "bare"),
    ("(C)", "C", "bare"),
    ("B) Paris", "B", "bare"),
    ("Reasoning...\n\nC", "C", "bare"),
    ("<think>maybe A? Answer: A</think>\nThe answer is D.", "D", "explicit"),  # after </think>
])
def test_extract_choice_priorities(text, letter, rule):
    assert extract_choice(text) == (letter, rule)


@pytest.mark.parametrize("text", [
    "", "No valid answer here", "A hexagon has six sides.",  # the article "A" is not an answer
    "The Pacific is larger than the Atlantic and the Indian oceans.",
    "It could be A or B, hard to say.",  # letters mentioned, none chosen: abstain rather than guess
    "The answer is not A.", "the answer is a number",
])
def test_extract_choice_abstains(text):
    assert extract_choice(text) == (None, "none")


def test_mcq_verdicts_and_bad_gold():
    assert grade("B", "Answer: B", "mcq").equal
    v = grade("B", "Answer: C", "mcq")
    assert not v.equal and v.extracted == "C" and v.status == "ok"
    v = grade("B", "I don't know", "mcq")
    assert not v.equal and v.extracted is None and v.status == "no_answer"
    with pytest.raises(WorkbenchError, match="not one of the letters"):
        grade("E", "Answer: E", "mcq")


# ---------------------------------------------------------------------------------------------------- math


def test_wrap_gold():
    assert wrap_gold("\\dfrac{9}{7}") == "$\\dfrac{9}{7}$"
    assert wrap_gold("$5$") == "$5$"
    assert wrap_gold("\\boxed{5}") == "\\boxed{5}"
    assert wrap_gold("\\$18.90") == "$\\$18.90$"  # an escaped dollar is text, not a delimiter


@pytest.mark.parametrize("gold, prediction, equal", [
    ("\\dfrac{9}{7}", "So the answer is $\\boxed{\\frac{9}{7}}$.", True),
    ("0.5", "The final answer is $\\boxed{\\frac12}$", True),
    ("[0,1)", "The answer is $\\boxed{(0,1)}$", False),  # interval brackets matter
    ("\\pi", "The final answer is $\\boxed{3.14159}$", False),  # no loose tolerance
    ("7425000", "7,425,000", True),
    ("32349", "The answer is $\\boxed{32, 349}$", False),
])
def test_math_verdicts(gold, prediction, equal):
    v = grade(gold, prediction, "math")
    assert v.equal is equal
    assert v.status == "ok" and v.extracted


def test_math_no_answer_and_bad_input():
    v = grade("5", "I cannot solve this.", "math")
    assert not v.equal and v.status in ("no_answer", "ok")
    with pytest.raises(WorkbenchError, match="unknown answer kind"):
        grade("5", "5", "algebra")
    with pytest.raises(WorkbenchError, match="empty"):
        grade("", "5", "math")


def test_hard_timeout_kills_and_restarts_the_helper():
    worker = grading._worker()
    grade("1", "$\\boxed{1}$", "math")  # helper started
    restarts = worker.restarts
    t0 = time.monotonic()
    assert worker.call({"kind": "_sleep", "seconds": 30}, deadline_s=1.0) is None  # a call that hangs
    assert time.monotonic() - t0 < 10
    assert worker.restarts == restarts + 1
    assert grade("2", "$\\boxed{2}$", "math").equal  # a fresh helper serves the next call


def test_math_grading_works_from_threads():
    """Math-Verify's own signal timeout only works in the main thread; ours works anywhere."""
    results = []
    threads = [threading.Thread(target=lambda g=g: results.append(grade(g, f"$\\boxed{{{g}}}$", "math").equal))
               for g in ("3", "\\frac{1}{2}", "x^2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [True, True, True]


def test_skythought_verdict_is_called_when_installed(tmp_path, monkeypatch):
    """A stand-in `skythought_evals` package: its functions are called (in the helper) and reported beside ours."""
    pkg = tmp_path / "skythought_evals" / "util"
    pkg.mkdir(parents=True)
    (tmp_path / "skythought_evals" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "math_parsing_util.py").write_text(textwrap.dedent("""
        import re
        def extract_answer(text):
            m = re.findall(r"boxed\\{([^}]*)\\}", text)
            return m[-1] if m else ""
        def strip_answer_string(s):
            return s.strip()
        def math_equal(a, b):
            return a == b
        def get_multiple_choice_answer(text):
            m = re.findall(r"[A-D]", text)
            return m[-1] if m else None
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    grading.close_worker()
    try:
        assert grading.skythought_available()
        v = grade("0.5", "$\\boxed{\\frac{1}{2}}$", "math")
        assert v.equal is True and v.skythought is False  # string comparison says no, Math-Verify says yes
        v = grade("B", "Answer: B. Not C.", "mcq")
        assert v.equal is True and v.skythought is False and v.skythought_extracted == "C"
        assert v.skythought_grader == "skythought package"  # the package's own functions, not the port
    finally:
        monkeypatch.undo()
        grading.close_worker()


def test_skythought_verdict_without_the_package():
    """Without the package the port gives SkyThought's verdict; skythought=True no longer needs an install."""
    if grading.skythought_package_available():
        pytest.skip("skythought is installed here")
    assert grading.skythought_available()
    v = grade("5", "so \\boxed{5}", "math", skythought=True)
    assert v.equal is True and v.skythought is True and v.skythought_extracted == "5"
    assert v.skythought_grader == grading.skythought_grader_name() and "port" in v.skythought_grader
    assert grade("5", "5", "math", skythought=False).skythought is None
    with pytest.raises(WorkbenchError, match="skythought"):
        grade("5", "5", "math", skythought="yes")


# ----------------------------------------------------------------------------------------------- countdown


def test_evaluate_expression_is_safe_and_exact():
    assert evaluate_expression("(3 + 5) * 2 / 4") == (4, [3, 5, 2, 4])
    assert evaluate_expression("7 / 2")[0] * 2 == 7  # exact fractions
    for bad in ("__import__('os')", "2 ** 100000", "abs(-3)", "x + 1", "1.5 + 2", "1 / 0", "[1, 2]", "1" * 300):
        with pytest.raises(ValueError):
            evaluate_expression(bad)


@pytest.mark.parametrize("prediction, equal", [
    ("\\boxed{(3 + 5) * 2}", True),
    ("<answer>3 * 5 + 1</answer>", False),  # 1 is not one of the numbers
    ("We get 2 × (3 + 5) = 16", True),
    ("16 = 8 + 8", False),  # 8 is given once only
    ("(5 + 3) * 2 * 2", False),
    ("5 + 3", False),  # 8, not 16
    ("I give up", False),
])
def test_countdown_grading(prediction, equal):
    assert grade({"target": 16, "numbers": [3, 5, 2]}, prediction, "countdown").equal is equal


def test_countdown_extraction_priorities():
    assert extract_countdown("Try 1 + 2.\n\\boxed{3 * 4}\nthen 5 + 6") == ("3 * 4", "boxed")
    assert extract_countdown("no numbers here") == (None, "none")
    with pytest.raises(WorkbenchError, match="countdown gold"):
        grade("24", "1 + 2", "countdown")


# ------------------------------------------------------------------------------------------ workbench grade


def test_grade_cli(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    lines = [
        {"gold": "\\frac{1}{2}", "prediction": "so $\\boxed{0.5}$", "kind": "math"},
        {"gold": "C", "prediction": "Answer: B", "kind": "mcq"},
        {"gold": "4", "kind": "math"},  # no prediction
        {"gold": "4", "prediction": "4", "kind": "poetry"},
    ]
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json\n")
    out = tmp_path / "out.jsonl"
    assert main(["grade", "--input", str(src), "--output", str(out), "--skythought", "off"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 5
    assert rows[0]["equal"] is True and rows[0]["extracted"]
    assert rows[1]["equal"] is False and rows[1]["extracted"] == "B"
    assert rows[2]["status"] == "error" and "prediction" in rows[2]["error"]
    assert rows[3]["status"] == "error" and "unknown answer kind" in rows[3]["error"]
    assert rows[4]["status"] == "error" and "not valid JSON" in rows[4]["error"]
    assert "wrote 5 rows" in capsys.readouterr().err


def test_grade_cli_bad_input(tmp_path, capsys):
    assert main(["grade", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["grade", "--input", str(empty), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "empty" in capsys.readouterr().err
