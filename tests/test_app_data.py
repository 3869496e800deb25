"""Loading problems and explanations for the app: formats, joins, and errors that name file, line and column."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from workbench import data
from workbench.errors import WorkbenchError

STRATOS_ASSISTANT = ("<|begin_of_thought|>\n\nOkay, 2+2. Wait, that's 4.\n\n<|end_of_thought|>\n\n"
                     "<|begin_of_solution|>\n\n2+2 = \\boxed{4}\n\n<|end_of_solution|>")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_demo_problems_shape():
    probs = data.demo_problems()
    assert len(probs) == len(data.load_demo_set()) >= 10
    p = probs[0]
    assert set(p) == {"id", "question", "solution", "sources", "completions", "meta"}
    assert set(p["sources"]) == {"rlt", "r1"} and p["meta"]["topic"]
    assert data.load_problems("demo") == probs and data.load_problems(None, limit=3) == probs[:3]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_custom_problem_files_in_every_format(tmp_path, suffix):
    rows = [{"question": "What is 2+2?", "solution": "4", "reasoning_trace": "Hmm. 2+2... 4."},
            {"question": "What is 3+3?", "solution": "6", "reasoning_trace": ""}]
    path = tmp_path / f"probs{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, rows)
    elif suffix == ".json":
        path.write_text(json.dumps(rows, indent=2))
    elif suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)
    probs = data.load_problems(str(path))
    assert [p["question"] for p in probs] == ["What is 2+2?", "What is 3+3?"]
    assert probs[0]["sources"] == {"r1": "Hmm. 2+2... 4."} and probs[1]["sources"] == {}
    assert probs[0]["id"] == "probs-1" and probs[0]["meta"]["location"] == {".jsonl": "line 1", ".json": "line 2", ".csv": "line 2", ".parquet": "row 1"}[suffix]
    assert len(data.load_problems(str(path), limit=1)) == 1


def test_prompt_column_and_ids(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": 7, "prompt": "Q?", "solution": "S"},
                                             {"id": 7, "prompt": "Q2?", "solution": "S2"}])
    probs = data.load_problem_file(path)
    assert [p["id"] for p in probs] == ["7", "7#2"] and probs[0]["question"] == "Q?"


def test_distillation_and_training_paths_build_the_same_teacher_prompt(tmp_path):
    """A Bespoke-Stratos row read for generation/ranking (workbench.data) and for training (training.datasets) gives
    the same question and solution, so the teacher sees the prompt it was trained on (solution padding included)."""
    from workbench import formats
    from workbench.models import load_tokenizer
    from workbench.training.datasets import load_problems as training_problems

    row = {"system": "sys", "conversations": [{"from": "user", "value": "What is 2+2?"},
                                              {"from": "assistant", "value": STRATOS_ASSISTANT}]}
    path = write_jsonl(tmp_path / "stratos.jsonl", [row])
    (a,) = data.load_problems(str(path))
    (b,) = training_problems(str(path))
    assert (a["question"], a["solution"]) == (b["question"], b["solution"])
    tok = load_tokenizer("smollm2-135m")
    assert formats.teacher_prompt(tok, a["question"], a["solution"]) == formats.teacher_prompt(tok, b["question"],
                                                                                              b["solution"])
    assert "<|begin_of_solution|>\n\n2+2" in formats.teacher_prompt(tok, a["question"], a["solution"])


def test_bespoke_stratos_rows(tmp_path):
    row = {"system": "sys", "conversations": [{"from": "user", "value": "What is 2+2?"},
                                              {"from": "assistant", "value": STRATOS_ASSISTANT}]}
    path = write_jsonl(tmp_path / "stratos.jsonl", [row])
    (p,) = data.load_stratos(str(path))
    assert p["question"] == "What is 2+2?" and p["solution"] == "\n\n2+2 = \\boxed{4}\n\n"  # padding kept
    assert p["sources"] == {"r1": "Okay, 2+2. Wait, that's 4."}
    pd.DataFrame([row]).to_parquet(tmp_path / "stratos.parquet")
    assert data.load_problems(str(tmp_path / "stratos.parquet"))[0]["sources"]["r1"].startswith("Okay")
    bad = write_jsonl(tmp_path / "bad_stratos.jsonl", [{"conversations": [{"from": "user", "value": "q"},
                                                                         {"from": "assistant", "value": "no tags"}]}])
    with pytest.raises(WorkbenchError, match=r"bad_stratos.jsonl: line 1, column 'conversations'.*<\|begin_of_solution\|>"):
        data.load_problems(str(bad))


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WorkbenchError, match="could not load the hub dataset 'nobody-here/no-such-dataset'"):
        data.load_problems("nobody-here/no-such-dataset")


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name,content,pattern", [
    ("garbled.jsonl", '{"question": "q", "solution": "s"}\n\n{"question": "q2", "solution": }\n',
     r"garbled.jsonl: line 3, column 32: not valid JSON"),
    ("notobj.jsonl", '{"question": "q", "solution": "s"}\n[1, 2]\n', r"notobj.jsonl: line 2, column 1: expected a JSON object"),
    ("garbled.json", '[\n  {"question": "q", "solution": "s"},\n  {"question": "q2" "solution": "s"}\n]',
     r"garbled.json: line 3, column 21: not valid JSON"),
    ("trailing.json", '[{"question": "q", "solution": "s"}] x', r"trailing.json: line 1, column 38: not valid JSON"),
    ("object.json", '{"question": "q"}', r"object.json: line 1, column 1: expected a JSON array of objects"),
    ("missing.jsonl", '{"question": "q", "solution": "s"}\n{"question": "q2"}\n',
     r"missing.jsonl: line 2: missing column 'solution' \(the row has: question\)"),
    ("wrongtype.jsonl", '{"question": "q", "solution": 42}\n',
     r"wrongtype.jsonl: line 1, column 'solution': expected text, got a number \(42\)"),
    ("emptyfield.jsonl", '{"question": "  ", "solution": "s"}\n', r"emptyfield.jsonl: line 1, column 'question': is empty"),
    ("empty.jsonl", "", r"empty.jsonl: the file is empty"),
    ("blank.json", "  \n\n", r"blank.json: the file is empty"),
    ("nocol.csv", "question,answer\nq,4\n", r"nocol.csv: line 2: missing column 'solution'"),
    ("extra.csv", "question,solution\nq,s\nq2,s2,oops\n", r"extra.csv: line 3: 3 fields, but the header has 2"),
    ("table.txt", "x", r"unknown file type '.txt'"),
])
def test_bad_problem_files_name_file_line_and_column(tmp_path, name, content, pattern):
    """A bad row is skipped and named (file, line, column) while the good rows load; a file with no usable row,
    or a problem with the whole file, is an error naming the same."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    try:
        report = data.load_problems_report(str(path))
    except WorkbenchError as exc:
        message = str(exc)
    else:
        assert [p["question"] for p in report.items] == ["q"]  # the good row before the bad one is kept
        message = " | ".join(report.skipped)
        assert report.note().startswith(f"skipped {len(report.skipped)} of {report.total} rows of {path}")
    assert re.search(pattern, message), message


def test_bad_binary_files(tmp_path):
    with pytest.raises(WorkbenchError, match="no such file"):
        data.load_problems(str(tmp_path / "nothing.jsonl"))
    (tmp_path / "latin1.jsonl").write_bytes(b'{"question": "q", "solution": "s"}\n{"question": "caf\xe9"}\n')
    report = data.load_problems_report(str(tmp_path / "latin1.jsonl"))  # the bad line is skipped, the rest read
    assert len(report.items) == 1 and re.match(r".*latin1.jsonl: line 2, column 18: not UTF-8", report.skipped[0])
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(WorkbenchError, match=r"bad.parquet: not a readable Parquet file"):
        data.load_problems(str(tmp_path / "bad.parquet"))
    pd.DataFrame([{"question": "q", "solution": 3}]).to_parquet(tmp_path / "types.parquet")
    with pytest.raises(WorkbenchError, match=r"types.parquet: row 1, column 'solution': expected text"):
        data.load_problems(str(tmp_path / "types.parquet"))
    pd.DataFrame({"question": pd.Series([], dtype=str), "solution": pd.Series([], dtype=str)}).to_parquet(tmp_path / "e.parquet")
    with pytest.raises(WorkbenchError, match=r"e.parquet: the file has no rows"):
        data.load_problems(str(tmp_path / "e.parquet"))
    with pytest.raises(WorkbenchError, match="bad.parquet: not a readable Parquet file"):  # a folder: its files
        data.load_problems(str(tmp_path))


# ---------------------------------------------------------------------------------------------- explanations


def test_explanation_files_join_by_question_text(tmp_path):
    probs = data.demo_problems()[:3]
    q0 = probs[0]["question"]
    rows = [
        {"question": "  " + q0.replace(" ", "\n", 1) + " ", "completion": "First, multiply.\n\nDone.<|end_of_explanation|> junk"},
        {"question": probs[1]["question"], "explanation": "An explanation body."},
        {"question": probs[1]["question"], "explanation": "A duplicate."},
        {"question": "Not a loaded question", "explanation": "x"},
    ]
    path = write_jsonl(tmp_path / "gen.jsonl", rows)
    expl = data.load_explanation_file(path)
    assert expl[0]["explanation"] == "First, multiply.\n\nDone." and expl[0]["completion"].endswith("junk")
    report = data.join_explanations(probs, expl, "gen", path)
    assert report == {"matched": 2, "unmatched": ["line 4"], "duplicates": 1}
    assert probs[0]["sources"]["gen"] == "First, multiply.\n\nDone."
    assert probs[0]["completions"]["gen"].startswith("First")  # kept raw: a missing end tag would be penalised
    assert probs[1]["sources"]["gen"] == "An explanation body." and "gen" not in probs[1]["completions"]
    assert "gen" not in probs[2]["sources"]


def test_explanation_file_errors(tmp_path):
    probs = data.demo_problems()[:2]
    path = write_jsonl(tmp_path / "e.jsonl", [{"question": "q", "text": "x"}])
    with pytest.raises(WorkbenchError, match=r"e.jsonl: line 1: missing column 'explanation' or 'completion'"):
        data.load_explanation_file(path)
    path = write_jsonl(tmp_path / "e2.jsonl", [{"question": "q", "explanation": ["a"]}])
    with pytest.raises(WorkbenchError, match=r"e2.jsonl: line 1, column 'explanation': expected text, got an array"):
        data.load_explanation_file(path)
    path = write_jsonl(tmp_path / "e3.jsonl", [{"question": "unrelated", "explanation": "x"}])
    with pytest.raises(WorkbenchError, match="none of its 1 explanations matches a loaded problem"):
        data.join_explanations(probs, data.load_explanation_file(path), "x", path)
    path = write_jsonl(tmp_path / "e4.jsonl", [{"question": "q", "completion": "<|end_of_explanation|>"}])
    with pytest.raises(WorkbenchError, match=r"e4.jsonl: line 1, column 'completion': is empty"):
        data.load_explanation_file(path)


# ---------------------------------------------------------------------------------------------- app and CLI


def test_cli_app_flags_default_to_localhost():
    from workbench.cli import build_parser

    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.data, args.share, args.auth) == ("127.0.0.1", 7860, "demo", False, None)
    args = build_parser().parse_args(["app", "--host", "0.0.0.0", "--port", "9000", "--data", "x.jsonl",
                                      "--teacher", "a/b", "--student", "c/d", "--share", "--auth", "u:p"])
    assert (args.host, args.port, args.data, args.teacher, args.student, args.share, args.auth) == \
        ("0.0.0.0", 9000, "x.jsonl", "a/b", "c/d", True, "u:p")


def test_build_app_has_compare_and_heatmap_tabs_and_survives_bad_data(tmp_path):
    gr = pytest.importorskip("gradio")
    import app
    from workbench.compare import SharedModels

    bad = tmp_path / "bad.json"
    bad.write_text("[{]")
    demo = app.build_app(data_spec=str(bad), models=SharedModels(device="cpu"))
    assert isinstance(demo, gr.Blocks)
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert any("Compare" in t for t in tabs) and any("Heatmap" in t for t in tabs)
    status = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "wb-status")
    assert "bad.json: line 1, column 3: not valid JSON" in status.value and "14 problems" in status.value
    assert app._parse_auth("u:p:q") == ("u", "p:q")
    with pytest.raises(WorkbenchError):
        app._parse_auth("nopassword")


def test_the_trained_teacher_before_and_after_rl_as_sources():
    """`cpu-teacher`: the first recorded held-out sample per problem of the CPU RLT run, before and after training."""
    import json

    report = data.load_problems_report("cpu-teacher")
    assert len(report.items) == 32 and not report.skipped
    p = report.items[0]
    assert set(p["sources"]) == set(p["completions"]) == {"before", "after"}
    first = json.loads((data.repo_path_of_run() / "heldout_after.jsonl").read_text().split("\n")[0])
    assert p["id"] == first["problem"] and p["completions"]["after"] == first["completion"]
    assert p["meta"]["recorded"]["after"] == first["reward"]
    assert data.load_problems("cpu-teacher", limit=3) == report.items[:3]
