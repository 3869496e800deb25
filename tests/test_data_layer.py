"""The one data layer (workbench.io, workbench.data): one bad row never aborts a file, valid files are read whole,
outputs are checked before the work and never written by two runs at once. Each test reproduces a probe of issue 12.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time

import pytest

from workbench import data, io
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.eval import benchmarks as bm
from workbench.training import datasets as tds

GOOD = {"question": "What is 2+3?", "solution": "5"}
DEEP = "[" * 1000 + "]" * 1000  # a JSON line nested 1,000 deep: RecursionError in json.loads
DEEP_OBJ = '{"question": ' + "[" * 5000 + "]" * 5000 + ', "solution": "s"}'


def _write(path, lines: list[str], prefix: bytes = b"") -> str:
    path.write_bytes(prefix + "".join(line + "\n" for line in lines).encode("utf-8"))
    return str(path)


# ---------------------------------------------------------------------------------------------- the reader


def test_deep_nesting_is_refused_whatever_the_recursion_limit(tmp_path):
    """json's own limit is the interpreter's recursion limit, which libraries raise (hypothesis does, in this very
    suite): the reader's verdict on a deep line must not depend on what the process imported before."""
    import sys

    path = _write(tmp_path / "t.jsonl", [DEEP, json.dumps(GOOD), '{"q": "' + "[" * 2000 + '", "solution": "s"}'])
    arr = tmp_path / "t.json"
    arr.write_text("[" + json.dumps(GOOD) + ",\n" + DEEP + "]", encoding="utf-8")
    old = sys.getrecursionlimit()
    for limit in (old, 20_000):
        sys.setrecursionlimit(limit)
        try:
            rows = io.read_rows(path)
            assert "nested too deeply" in rows[0].error and rows[1].ok
            assert rows[2].ok and rows[2].data["q"] == "[" * 2000  # brackets inside a string are text
            rows = io.read_rows(arr)
            assert rows[0].ok and "line 2" in rows[1].error and "nested too deeply" in rows[1].error
        finally:
            sys.setrecursionlimit(old)


def test_one_bad_line_is_an_error_row_and_the_rest_is_read(tmp_path):
    lines = [json.dumps(GOOD), DEEP, DEEP_OBJ, '{"question": 1' + "0" * 5000 + "}", "[1, 2]", "{oops",
             json.dumps({**GOOD, "id": "last"})]
    path = tmp_path / "t.jsonl"
    _write(path, lines)
    raw = path.read_bytes().replace(b"{oops", b"{\xff\xfe")  # and one line that is not UTF-8
    path.write_bytes(raw)
    rows = io.read_rows(path)
    assert [r.ok for r in rows] == [True, False, False, False, False, False, True]
    assert rows[-1].data["id"] == "last" and rows[-1].number == 7
    assert "line 2, column 1: not readable (nested too deeply)" in rows[1].error
    assert "line 3" in rows[2].error and "nested too deeply" in rows[2].error
    assert "line 4" in rows[3].error and "digits" in rows[3].error  # Python's int-from-text limit
    assert "line 5, column 1: expected a JSON object, got an array" in rows[4].error
    assert "line 6, column 2: not UTF-8 text" in rows[5].error
    assert all(str(path) in r.error for r in rows if not r.ok)


def test_unicode_line_breaks_inside_strings_and_a_bom_are_ordinary_text(tmp_path):
    q = "Line one\u2028line two\u0085line three\u2029 and \x0c form feed"
    path = tmp_path / "u.jsonl"
    _write(path, [json.dumps({"question": q, "solution": "s"}, ensure_ascii=False), json.dumps(GOOD)],
           prefix=b"\xef\xbb\xbf")
    rows = io.read_rows(path)
    assert [r.ok for r in rows] == [True, True] and rows[0].data["question"] == q
    assert data.load_problems(str(path))[0]["question"] == q  # the app / generate view
    assert tds.load_problems(str(path))[0]["question"] == q  # the training view
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n" + json.dumps(GOOD).encode() + b"\r\n")
    assert [r.ok for r in io.read_rows(crlf)] == [True, True]
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfquestion,solution\nq,s\n")
    assert data.load_problems(str(csv_path))[0]["question"] == "q"  # the BOM is not part of the first column name


def test_json_array_and_csv_bad_rows(tmp_path):
    arr = tmp_path / "a.json"
    arr.write_text("[" + json.dumps(GOOD) + ", 7, " + DEEP + ", " + json.dumps(GOOD) + "]")
    rows = io.read_rows(arr)
    assert [r.ok for r in rows] == [True, False, False]  # a syntax-level failure ends the array: said so
    assert "expected a JSON object, got a number" in rows[1].error and "nested too deeply" in rows[2].error
    assert "the rest of the file is not read" in rows[2].error
    csv_path = tmp_path / "c.csv"
    csv_path.write_text('question,solution\nq1,s1\nq2,s2,extra\n"q3",s3\n')
    rows = io.read_rows(csv_path)
    assert [r.ok for r in rows] == [True, False, True] and "line 3: 3 fields, but the header has 2" in rows[1].error


def test_whole_file_problems_are_errors_that_say_what_to_do(tmp_path):
    with pytest.raises(WorkbenchError, match="is a folder; give a .jsonl"):
        io.read_rows(tmp_path)
    with pytest.raises(WorkbenchError, match="no such file"):
        io.read_rows(tmp_path / "missing.jsonl")
    with pytest.raises(WorkbenchError, match="unknown file type '.txt'"):
        io.read_rows(_write(tmp_path / "x.txt", ["{}"]))


# ---------------------------------------------------------------------------------------------- the views


def test_the_three_views_agree_on_one_file(tmp_path):
    """data.load_problems (app, generate), training.datasets.load_problems and a benchmark read the same file and
    skip the same bad rows, with the same messages."""
    lines = [json.dumps({"id": "a", "question": "Q1", "solution": "S1", "answer": "1"}), DEEP,
             json.dumps({"id": "b", "question": "Q2", "solution": ["not", "text"], "answer": "2"}),
             json.dumps({"id": "c", "question": "Q3", "solution": "S3", "answer": "3"})]
    path = _write(tmp_path / "p.jsonl", lines)
    app_view = data.load_problems_report(path)
    assert [p["id"] for p in app_view.items] == ["a", "c"]
    assert app_view.skipped[1].endswith("line 3, column 'solution': expected text, got an array "
                                        '(["not", "text"]); write it as a string')
    assert [p["id"] for p in tds.load_problems(path)] == ["a", "c"]
    bench = bm.load_benchmark_report("math500", data=path)
    assert [p["id"] for p in bench.items] == ["a", "b", "c"]  # a benchmark needs the answer, not the solution
    assert bench.skipped == app_view.skipped[:1]


@pytest.mark.parametrize("target", ['"x"', "null", "Infinity", "1e400", "true", '"12.5"', "-Infinity"])
def test_countdown_gold_that_is_not_an_integer_skips_that_row(tmp_path, target):
    path = tmp_path / "cd.jsonl"
    path.write_text('{"numbers": [3, 4], "target": ' + target + '}\n{"numbers": [3, 4], "target": 12}\n'
                    '{"numbers": [3, "x"], "target": 7}\n{"numbers": [1e400], "target": 7}\n')
    loaded = bm.load_benchmark_report("countdown", data=str(path))
    assert [p["gold"] for p in loaded.items] == [{"target": 12, "numbers": [3, 4]}]
    assert "line 1, column 'target': must be an integer" in loaded.skipped[0]
    assert "line 3, column 'numbers'" in loaded.skipped[1] and "line 4, column 'numbers'" in loaded.skipped[2]


def test_eval_run_with_bad_rows_in_data_runs_the_rest_and_names_them(tmp_path, qwen_dir):
    from workbench.eval.runner import EvalConfig, run_eval

    path = tmp_path / "cd.jsonl"
    path.write_text('{"numbers": [3, 4], "target": "x"}\n' + DEEP + '\n{"numbers": [3, 4], "target": 12}\n')
    said = []
    summary = run_eval(EvalConfig("countdown", model=str(qwen_dir), data=str(path), output_dir=str(tmp_path / "run"),
                                  max_new_tokens=4, engine="transformers"), log=said.append)
    assert summary["problems"] == 1 and summary["complete"]
    assert summary["skipped_rows"]["count"] == 2 and "line 1, column 'target'" in summary["skipped_rows"]["first"][0]
    assert any(m.startswith(f"skipped 2 of 3 rows of {path}") for m in said)


# ---------------------------------------------------------------------------------------------- the commands


def test_grade_cli_grades_every_line_it_can(tmp_path, capsys):
    lines = [json.dumps({"gold": {"target": t, "numbers": [1, 2]}, "prediction": "1+2", "kind": "countdown"})
             for t in ("x", None, 3)]
    lines += ['{"gold": {"target": Infinity, "numbers": [1, 2]}, "prediction": "1+2", "kind": "countdown"}',
              '{"gold": {"target": 1e400, "numbers": [1, 2]}, "prediction": "1+2", "kind": "countdown"}', DEEP,
              json.dumps({"gold": "a\u2028b", "prediction": "\\boxed{3}", "kind": "math"}, ensure_ascii=False),
              json.dumps({"gold": "3", "prediction": ["x"], "kind": "math"})]
    src = _write(tmp_path / "g.jsonl", lines, prefix=b"\xef\xbb\xbf")
    assert main(["grade", "--input", src, "--output", str(tmp_path / "o.jsonl")]) == 0
    out = [r.data for r in io.read_rows(tmp_path / "o.jsonl")]
    assert [r["status"] for r in out] == ["error", "error", "ok", "error", "error", "error", "ok", "error"]
    assert out[2]["equal"] is True
    assert out[0]["error"] == "countdown gold: target must be an integer, got 'x'"
    assert "nested too deeply" in out[5]["error"] and out[5]["line"] == 6
    assert main(["grade", "--input", src, "--output", src]) == 2  # output = input: refused, the input kept
    assert "is also the input" in capsys.readouterr().err and (tmp_path / "g.jsonl").read_bytes().startswith(b"\xef")


def test_distill_build_cli_skips_bad_candidates_and_keeps_the_best(tmp_path, capsys):
    row = {"problem_id": "p", "question": "Q?", "solution": "S"}
    lines = ['{"problem_id": "p", "question": "Q?", "solution": "S", "explanation": "nan", "reward": NaN}',
             json.dumps({**row, "explanation": "low", "reward": -1.0}), DEEP,
             json.dumps({**row, "explanation": "text", "reward": "high"}),
             json.dumps({**row, "explanation": "best\u2028!", "reward": 0.0}, ensure_ascii=False),
             json.dumps({**row, "solution": ["S"], "explanation": "x", "reward": 5.0})]
    src = _write(tmp_path / "ranked.jsonl", lines, prefix=b"\xef\xbb\xbf")
    out = tmp_path / "student.jsonl"
    assert main(["distill", "build", "--input", src, "--output", str(out)]) == 0
    (ex,) = [json.loads(line) for line in out.read_text().split("\n") if line]
    assert "best\u2028!" in ex["conversations"][1]["value"] and ex["reward"] == 0.0
    err = capsys.readouterr().err
    assert f"{src}: line 1: column 'reward': expected a finite number, got 'nan'" in err
    assert "line 3, column 1: not readable (nested too deeply)" in err
    assert f"{src}: line 6: column 'solution': expected text, got list" in err


def test_score_cli_scores_around_bad_lines_and_checks_its_output_first(tmp_path, qwen_dir, capsys):
    lines = [json.dumps({"id": "a", **GOOD, "explanation": "Add 2 and 3.\u2028Done."}, ensure_ascii=False), DEEP,
             json.dumps({"id": "c", **GOOD, "completion": "Two plus three.<|end_of_explanation|>"})]
    src = _write(tmp_path / "in.jsonl", lines, prefix=b"\xef\xbb\xbf")
    model = ["--teacher", str(qwen_dir), "--student", str(qwen_dir)]
    # errors about the output come before any model is loaded (a teacher that does not exist is never reached)
    nobody = ["--teacher", "no-such-model-folder", "--student", "no-such-model-folder"]
    assert main(["score", "--input", src, "--output", str(tmp_path), *nobody]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["score", "--input", src, "--output", str(blocker / "out.jsonl"), *nobody]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["score", "--input", src, "--output", src, *nobody]) == 2
    assert "is also the input" in capsys.readouterr().err
    assert main(["score", "--input", str(tmp_path), "--output", str(tmp_path / "o.jsonl"), *nobody]) == 2
    assert "is a folder; give a .jsonl" in capsys.readouterr().err
    assert main(["score", "--input", src, "--output", str(tmp_path / "o.jsonl"), *model]) == 0
    out = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().split("\n") if line]
    assert [r["id"] for r in out] == ["a", 2, "c"]
    assert math.isfinite(out[0]["reward"]) and math.isfinite(out[2]["reward"]) and "nested too deeply" in out[1]["error"]


# ---------------------------------------------------------------------------------------------- writers and locks


def test_a_second_generate_on_the_same_output_is_refused_at_once(tmp_path):
    from workbench.generate import generate_explanations

    out = tmp_path / "gen.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom workbench.io import exclusive\n"
                               f"with exclusive({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        with pytest.raises(WorkbenchError, match="is being written by another `workbench generate`"):
            generate_explanations("no-such-model", [{"id": "1", **GOOD}], out)
        assert time.time() - t0 < 5
    finally:
        holder.kill()
        holder.wait()
    with io.exclusive(out):  # the lock died with its process: nothing is left held
        pass


def test_appends_from_two_processes_never_interleave(tmp_path):
    out = tmp_path / "a.jsonl"
    code = ("import sys\nfrom workbench.io import append_jsonl\n"
            "for i in range(150):\n    append_jsonl(sys.argv[1], [{'w': sys.argv[2], 'i': i, 'pad': 'x' * 5000}] * 3)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(out), w]) for w in "ab"]
    assert [p.wait() for p in procs] == [0, 0]
    rows = io.read_rows(out)
    assert len(rows) == 900 and all(r.ok for r in rows)


def test_atomic_writes_and_outputs_checked_up_front(tmp_path):
    target = tmp_path / "deep" / "er" / "r.jsonl"
    io.write_jsonl_atomic(target, [{"a": "\u2028"}])
    assert io.read_rows(target)[0].data == {"a": "\u2028"}
    with pytest.raises(WorkbenchError, match="is a folder"):
        io.check_output(tmp_path)
    threads = [threading.Thread(target=io.write_jsonl_atomic, args=(target, [{"n": n}] * 1000)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = io.read_rows(target)
    assert len(rows) == 1000 and len({r.data["n"] for r in rows}) == 1  # one whole file, never a mix
    assert not [p for p in target.parent.iterdir() if p.name != "r.jsonl"]  # no temp files left
