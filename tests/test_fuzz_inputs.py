"""Fuzzing the inputs a user hands the workbench (hypothesis): whatever the bytes of a data file or the values in a
row, the readers, the normalisers, the benchmark loader and the grader either return rows with errors or raise a
WorkbenchError with a message; they never crash with another exception and never lose the good rows."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from workbench import data, io
from workbench.errors import WorkbenchError
from workbench.eval import benchmarks as bm
from workbench.eval import grading

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD_LINE = json.dumps({"question": "What is 1+1?", "solution": "2", "answer": "2"})

# JSON values, including the awkward ones: NaN and infinities, huge integers, Unicode line breaks, deep lists
scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats()
           | st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
           | st.sampled_from(["", " ", "\u2028", "\u0085", "\ufeff", "=HYPERLINK(\"x\")", "<img src=x>", "x" * 300]))
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                           max_size=4), max_leaves=12)
keys = st.sampled_from(["question", "prompt", "solution", "reasoning_trace", "explanation", "completion", "id",
                        "conversations", "answer", "gold", "prediction", "kind", "numbers", "target", "topic",
                        "rlt_explanation", "reward", "problem"])
rows = st.dictionaries(keys, values, max_size=6)


def _tmpfile(suffix: str, payload: bytes) -> Path:
    d = Path(tempfile.mkdtemp(prefix="wb-fuzz-"))
    p = d / f"f{suffix}"
    p.write_bytes(payload)
    return p


@FUZZ
@given(payload=st.binary(max_size=400), suffix=st.sampled_from([".jsonl", ".json", ".csv"]))
@example(payload=b"[" * 1000 + b"]" * 1000, suffix=".jsonl")  # the probes of issue 12, always tried
@example(payload=b"[" + b"[" * 5000 + b"]" * 5000 + b"]", suffix=".json")
@example(payload=b'{"q": 1' + b"0" * 5000 + b"}", suffix=".jsonl")
@example(payload=b'\xef\xbb\xbf{"q": "a\xe2\x80\xa8b\xc2\x85c"}', suffix=".jsonl")
@example(payload=b'\xef\xbb\xbfquestion,solution\nq,"s\x00"\n', suffix=".csv")
def test_reader_never_crashes_on_any_bytes(payload, suffix):
    path = _tmpfile(suffix, payload + b"\n" + GOOD_LINE.encode() + b"\n" if suffix == ".jsonl" else payload)
    try:
        out = io.read_rows(path)
    except WorkbenchError as exc:
        assert str(path) in str(exc)
        return
    for r in out:
        assert (r.data is None) != (r.error is None)
        assert r.ok or str(path) in r.error
    if suffix == ".jsonl":  # the good last line always survives whatever came before it
        assert out[-1].ok and out[-1].data["question"] == "What is 1+1?"


@FUZZ
@given(text=st.text(max_size=200))
def test_reader_on_any_text_line(text):
    path = _tmpfile(".jsonl", (text.replace("\n", " ") + "\n" + GOOD_LINE + "\n").encode("utf-8", "surrogatepass"))
    out = io.read_rows(path)
    assert out[-1].ok and sum(r.ok for r in out) >= 1


@FUZZ
@given(batch=st.lists(rows, min_size=1, max_size=5))
def test_problem_views_skip_what_they_cannot_use(batch):
    text = "".join(json.dumps(r, ensure_ascii=False, allow_nan=True) + "\n" for r in batch) + GOOD_LINE + "\n"
    path = _tmpfile(".jsonl", text.encode("utf-8", "surrogatepass"))
    report = data.load_problems_report(str(path))  # the good last row is always there, so this never raises
    assert report.items[-1]["question"] == "What is 1+1?" and report.total == len(batch) + 1
    assert all(m.startswith(str(path)) for m in report.skipped)
    for name in ("math500", "gpqa", "countdown"):
        try:
            bench = bm.load_benchmark_report(name, data=str(path))
        except WorkbenchError:
            continue  # no usable row for this benchmark: said with the file's name
        assert all(m.startswith(str(path)) for m in bench.skipped)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gold=values, prediction=values, kind=st.sampled_from(["math", "mcq", "countdown", "other"]) | values)
@example(gold={"target": "x", "numbers": [1, 2]}, prediction="1+2", kind="countdown")
@example(gold={"target": float("inf"), "numbers": [1, 2]}, prediction="1+2", kind="countdown")
@example(gold={"target": None, "numbers": [1, 2]}, prediction="1+2", kind="countdown")
@example(gold={"target": 3, "numbers": [1, 2]}, prediction="9**9**9**9", kind="countdown")
def test_grader_gives_every_row_a_verdict(gold, prediction, kind):
    if kind == "math" and not (isinstance(prediction, str) and isinstance(gold, str | int | float)):
        prediction = "no answer"  # keep the math worker's share of the examples cheap
    (out,) = grading.grade_rows([{"gold": gold, "prediction": prediction, "kind": kind}], skythought=False)
    assert out["status"] in ("ok", "no_answer", "error", "timeout")
    assert isinstance(out["equal"], bool)
    assert out["status"] != "error" or out["error"]


# score items: whatever a line of a `workbench score` input holds, its result is a reward or an error for that item
items = st.fixed_dictionaries({}, optional={
    "question": values | st.just("What is 2+3?"), "solution": values | st.just("5"),
    "completion": values | st.just("Add them.<|end_of_explanation|>"), "explanation": values,
    "completion_ids": st.lists(st.integers(min_value=-(10**30), max_value=10**30), max_size=4) | values})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(items, min_size=1, max_size=3))
def test_score_items_never_crash_the_batch(qwen, batch):
    from workbench.rewards import RewardConfig, RLTScorer

    model, tok = qwen
    good = {"question": "What is 2+3?", "solution": "5", "completion": "Add 2 and 3.<|end_of_explanation|>"}
    for tokenization in ("joint", "generated"):
        scorer = RLTScorer(model, model, tok, RewardConfig(teacher_tokenization=tokenization, batch_size=4))
        results = scorer.score([*batch, good])
        assert len(results) == len(batch) + 1 and results[-1].ok
        for r in results:
            assert r.ok or (isinstance(r.error, str) and r.error)
