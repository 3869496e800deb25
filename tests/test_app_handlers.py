"""The app's handlers called directly, without a browser and without a model: each tab module's functions take the
AppContext and the event's inputs (workbench/app/). Fake models stand in for SharedModels, so this file is fast."""

from __future__ import annotations

import inspect
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

gr = pytest.importorskip("gradio")

from workbench.app import compare_tab, data_panel, evaluate_tab, heatmap_tab  # noqa: E402
from workbench.app.common import MAX_SOURCES  # noqa: E402
from workbench.app.context import UI, AppContext, bind  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.rewards import RewardResult  # noqa: E402

T = S = "fake-model"


class FakeTokenizer:
    name_or_path = "fake-tokenizer"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


class FakeModels:
    """What the handlers use of compare.SharedModels: tokenizer, model, cached, score."""

    def __init__(self, fail: str | None = None, bad_ids: tuple = ()):
        self.fail, self.bad_ids, self.calls, self.results = fail, bad_ids, [], {}

    def tokenizer(self, name):
        return FakeTokenizer()

    def model(self, name):
        return object()

    def cached(self, teacher, student, item):
        return self.results.get(item["id"])

    def score(self, teacher, student, items, progress=False):
        if self.fail:
            raise WorkbenchError(self.fail)
        self.calls.append(items)
        out = []
        for it in items:
            text = it.get("explanation") or it.get("completion") or ""
            if it["id"] in self.bad_ids:
                r = RewardResult(id=it["id"], error="too long")
            else:
                r = RewardResult(id=it["id"], reward=-float(len(text)), r_ss=-1.0, r_kl=0.5, kl_mean=0.1, kl_max=0.2,
                                 solution_logprob_mean=-1.0, solution_logprob_min=-2.0,
                                 solution_tokens=[{"token": "4", "logprob": -1.0}],
                                 explanation_tokens=[{"token": w, "teacher_logprob": -1.0, "student_logprob": -1.5,
                                                      "kl": 0.1} for w in text.split()])
                self.results[it["id"]] = r
            out.append(r)
        return out


def _problem(pid="p1", **sources):
    return {"id": pid, "question": "What is 2+2?", "solution": "4",
            "sources": sources or {"rlt": "Add two and two.\n\nIt is 4.", "r1": "Hmm. 2+2.\n\nSo 4."},
            "completions": {}, "meta": {"topic": "arithmetic"}}


def _ctx(tmp_path, models=None, problems=None, **kw) -> AppContext:
    kw.setdefault("folders", [Path(tmp_path).resolve()])
    return AppContext(models=models or FakeModels(), teacher=T, student=S, export_dir=str(tmp_path),
                      problems=problems or [_problem()], **kw)


class _Progress:
    def __init__(self):
        self.calls = []

    def __call__(self, *a, **k):
        self.calls.append((a, k))


# ---------------------------------------------------------------------------------------------- bind


def test_bind_keeps_the_name_drops_the_context_and_keeps_what_gradio_injects(tmp_path):
    from gradio.helpers import special_args

    ctx = _ctx(tmp_path)
    ev = bind(ctx, compare_tab.generate)
    assert ev.__name__ == "generate" and ev.handler is compare_tab.generate
    assert list(inspect.signature(ev).parameters)[0] == "problems"
    assert inspect.isgeneratorfunction(ev) and not inspect.isgeneratorfunction(bind(ctx, compare_tab.on_view))
    request = gr.Request(session_hash="abc")
    inputs, _, _, _ = special_args(ev, [[], "p1", T, S, 16, 0.0, 0.5], request=request)
    assert inputs[-1] is request  # gr.Request is found through the bound function
    inputs, progress_index, _, _ = special_args(bind(ctx, compare_tab.score_problem), [[], "p1", T, S, "base"])
    assert progress_index == 5 and isinstance(inputs[5], gr.Progress)
    _, _, event_index, _ = special_args(bind(ctx, compare_tab.on_select_row), [],
                                        event_data=gr.SelectData(None, {"index": [0, 0], "value": "p1"}))
    assert event_index == 0
    assert bind(ctx, compare_tab.on_view)([_problem()], "p1", 0.5, T, S)[0].startswith("### p1")


# ---------------------------------------------------------------------------------------------- compare


def test_problem_view_shows_one_column_per_source_and_hides_the_rest(tmp_path):
    ctx = _ctx(tmp_path)
    out = compare_tab.on_view(ctx, ctx.problems, "p1", 0.5, T, S)
    assert len(out) == compare_tab.N_VIEW == 1 + 3 * MAX_SOURCES
    assert "### p1" in out[0] and "topic: arithmetic" in out[0] and "What is 2+2?" in out[0]
    visible = [u.get("visible") for u in out[1:1 + MAX_SOURCES]]
    assert visible == [True, True] + [False] * (MAX_SOURCES - 2)
    heads, bodies = out[1 + MAX_SOURCES:1 + 2 * MAX_SOURCES], out[1 + 2 * MAX_SOURCES:]
    assert heads[0] and heads[1] and heads[2:] == [""] * (MAX_SOURCES - 2)
    assert "Add two and two" in bodies[0] and "So 4" in bodies[1]
    assert compare_tab.on_view(ctx, ctx.problems, "nope", 0.5, T, S)[0] == "*No problem selected.*"


def test_filter_searches_and_reports_a_bad_bound_without_changing_the_table(tmp_path):
    probs = [_problem("p1"), {**_problem("p2"), "question": "Compute 3*3"}]
    ctx = _ctx(tmp_path, problems=probs)
    df, msg = compare_tab.on_filter(ctx, probs, T, S, "compute", False, ["question"], None, "", "", None, True)
    assert list(df["id"]) == ["p2"] and msg == ""
    skip, msg = compare_tab.on_filter(ctx, probs, T, S, "", False, ["question"], None, "abc", "", None, True)
    assert "wb-error" in msg and "min must be a number" in msg
    assert compare_tab.on_select_row(ctx, SimpleNamespace(row_value=["p2", 1])) == "p2"


def test_scoring_reports_the_explanations_that_failed(tmp_path):
    models = FakeModels(bad_ids=("p1:r1",))
    ctx = _ctx(tmp_path, models=models)
    progress = _Progress()
    status = compare_tab.score_problem(ctx, ctx.problems, "p1", T, S, "base", progress)
    assert status.startswith("base\n\n") and "p1:r1: too long" in status and progress.calls
    assert [it["id"] for it in models.calls[0]] == ["p1:rlt", "p1:r1"]
    assert "1 of 2 explanations could not be scored" in compare_tab.score_everything(ctx, ctx.problems, T, S, "base",
                                                                                      progress)
    with pytest.raises(gr.Error, match="select a problem first"):
        compare_tab.score_problem(ctx, ctx.problems, "nope", T, S, "base", progress)
    ctx = _ctx(tmp_path, models=FakeModels(fail="<b>no model</b>"))
    with pytest.raises(gr.Error) as err:
        compare_tab.score_problem(ctx, ctx.problems, "p1", T, S, "base", progress)
    assert "&lt;b&gt;no model" in str(err.value)  # toasts are escaped


def test_generate_streams_into_the_generated_column_and_stop_sets_the_flag(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path)
    seen = {}

    def fake_stream(model, tokenizer, question, solution, max_new_tokens, temperature, stop_event, **kwargs):
        seen["event"] = stop_event
        assert ctx.stop_events["abc"] is stop_event  # registered for this session while it streams
        compare_tab.stop(ctx, gr.Request(session_hash="abc"))
        yield "<think>First step."
        yield "<think>First step.\n\nSecond step.</think>"

    monkeypatch.setattr(compare_tab, "stream_explanation", fake_stream)
    problems = [_problem()]
    outs = list(compare_tab.generate(ctx, problems, "p1", T, S, 32, 0.0, 0.5, gr.Request(session_hash="abc")))
    assert seen["event"].is_set() and ctx.stop_events == {}
    slot = 2  # rlt, r1, generated
    first = outs[0]
    assert first[0] is problems and len(first) == 1 + compare_tab.N_VIEW
    assert first[1 + 1 + slot]["visible"] is True and "writing…" in first[1 + 1 + MAX_SOURCES + slot]
    assert first[1 + 1 + 2 * MAX_SOURCES + slot].endswith(" ▌")
    assert problems[0]["sources"]["generated"] and "Second step" in problems[0]["completions"]["generated"]
    final = outs[-1]
    assert "Second step" in final[1 + 1 + 2 * MAX_SOURCES + slot]

    def nothing(*a, **k):
        yield ""

    monkeypatch.setattr(compare_tab, "stream_explanation", nothing)
    list(compare_tab.generate(ctx, problems, "p1", T, S, 32, 0.0, 0.5, None))
    assert "generated-2" not in problems[0]["sources"]  # an empty generation (the 2nd sample) leaves no column
    assert compare_tab.stop(ctx, None) is None  # nothing running: nothing to stop


def test_export_writes_the_tables_into_the_export_folder(tmp_path):
    ctx = _ctx(tmp_path)
    paths = [Path(p) for p in compare_tab.on_export(ctx, ctx.problems, T, S)]
    assert sorted(p.suffix for p in paths) == [".csv", ".csv", ".html", ".jsonl", ".jsonl", ".md"]
    assert all(p.parent == tmp_path and p.is_file() for p in paths)


# ---------------------------------------------------------------------------------------------- heatmap


def test_heatmap_scores_then_compares_an_edit_with_the_previous_score(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path)
    p = ctx.problems[0]
    text = p["sources"]["rlt"]
    st, breakdown, expl, sol = heatmap_tab.on_score_text(ctx, ctx.problems, "p1", "rlt", text, {}, T, S, "kl", 0,
                                                         "logprob", _Progress())
    assert st["label"] == "RLT explanation" and st["previous"] is None and "Reward breakdown" in breakdown
    assert 'id="wbhm-expl"' in expl and 'id="wbhm-sol"' in sol
    edited = text + " Done."
    st2, breakdown2, _, _ = heatmap_tab.on_score_text(ctx, ctx.problems, "p1", "rlt", edited, st, T, S, "kl", 0,
                                                      "delta_logprob", _Progress())
    assert st2["label"].endswith("(edited)") and st2["previous"] == st["result"] and "previous:" in breakdown2
    # the same text again is not scored again: maybe_score shows the state as it is
    calls = len(ctx.models.calls)
    again = heatmap_tab.maybe_score(ctx, ctx.problems, "p1", "rlt", edited, st2, T, S, "kl", 0, "logprob", _Progress())
    assert again[0] is st2 and len(ctx.models.calls) == calls
    with pytest.raises(gr.Error, match="empty"):
        heatmap_tab.on_score_text(ctx, ctx.problems, "p1", "rlt", "  ", st, T, S, "kl", 0, "logprob", _Progress())
    # the export lands in the export folder
    monkeypatch.setattr(gr, "Info", lambda *a, **k: None)
    out = heatmap_tab.on_export_heatmap(ctx, ctx.problems, st2, "kl", 0, "logprob")
    path = Path(out["value"])
    assert path.parent == tmp_path and "What is 2+2?" in path.read_text(encoding="utf-8")


def test_heatmap_picker_follows_the_problem(tmp_path):
    ctx = _ctx(tmp_path)
    probs = [_problem("p1"), _problem("p2", only="Just this.")]
    update, text = heatmap_tab.hm_choices(ctx, probs, "p1", "r1")
    assert update["value"] == "r1" and text == "Hmm. 2+2.\n\nSo 4."
    update, text = heatmap_tab.hm_choices(ctx, probs, "p2", "r1")  # p2 has no r1: its first source
    assert update["value"] == "only" and text == "Just this."
    assert heatmap_tab.on_pick_source(ctx, probs, "p2", "only") == "Just this."
    empty = heatmap_tab.on_rerender(ctx, {}, "kl", 0, "logprob")
    assert "press <b>Score</b>" in empty[0] and empty[1:] == ("", "")


# ---------------------------------------------------------------------------------------------- data panel


def test_load_and_join_respect_the_allowed_folders(tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(gr, "Warning", lambda message="", *a, **k: warnings.append(message))
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    good = allowed / "ok.jsonl"
    good.write_text('{"id": "q1", "question": "What is 1+1?", "solution": "2"}\n', encoding="utf-8")
    secret = outside / "secret.jsonl"
    secret.write_text('{"question": "secret", "solution": "s"}\n', encoding="utf-8")
    ctx = _ctx(tmp_path, folders=[allowed.resolve()])
    out = data_panel.on_load(ctx, str(good), None, T, S, "base")
    new, table, picker, _, _, line, steps, src, status = out
    assert [p["id"] for p in new] == ["q1"] and list(table["id"]) == ["q1"] and picker["value"] == "q1"
    assert line == status and "1 problems from" in line
    out = data_panel.on_load(ctx, str(secret), None, T, S, "base")
    assert len(out) == 9 and "not in a folder this app may read" in out[-1] and warnings
    assert "choose a file" in data_panel.on_join(ctx, ctx.problems, None, "", T, S, "base")[-1]
    refused = data_panel.on_join(ctx, ctx.problems, str(secret), "", T, S, "base")[-1]
    assert "not in a folder this app may read" in refused


# ---------------------------------------------------------------------------------------------- evaluate


def _ev_ui() -> UI:
    names = ["ev_sig", "ev_msg", "ev_jobs", "ev_job", "ev_detail", "ev_cancel", "ev_resume", "ev_log", "ev_summary",
             "ev_records", "ev_idx", "ev_sample", "ev_runs", "ev_metric", "ev_chart", "ev_runs_table", "ev_timer"]
    return UI(**{n: n for n in names})  # plain names stand in for the components the handlers key their output by


def test_evaluate_poll_sends_only_what_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("RLT_WORKBENCH_HOME", str(tmp_path / "home"))
    ctx = _ctx(tmp_path, ui=_ev_ui())
    first = evaluate_tab.ev_open(ctx, {}, None, "all", None, [], "pass@1", "workbench")
    assert {"ev_jobs", "ev_job", "ev_detail", "ev_sig", "ev_timer"} <= set(first)
    again = evaluate_tab.ev_refresh(ctx, first["ev_sig"], None, "all", None, [], "pass@1", "workbench")
    assert set(again) == {"ev_sig"}  # nothing changed: nothing but the signature is sent
    assert "select a job first" in evaluate_tab.ev_act(lambda job_id: None)("")
    assert evaluate_tab.ev_show_sample(ctx, None, "all", None)[0] is None


def test_evaluate_poll_never_raises(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path, ui=_ev_ui())

    def broken():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(evaluate_tab.eval_jobs, "list_jobs", broken)
    out = evaluate_tab.ev_refresh(ctx, {}, None, "all", None, [], "pass@1", "workbench")
    assert set(out) == {"ev_msg"} and "disk on fire" in out["ev_msg"]


def test_evaluate_launch_refuses_data_outside_the_allowed_folders(tmp_path, monkeypatch):
    launched = []
    monkeypatch.setattr(evaluate_tab.eval_views, "launch", lambda *a, **k: launched.append(a))
    (tmp_path / "allowed").mkdir()
    ctx = _ctx(tmp_path, folders=[(tmp_path / "allowed").resolve()])
    msg, _ = evaluate_tab.ev_launch_job(ctx, T, "countdown", "quick", 2, 0, 0, "", "/etc/passwd", 8, "auto")
    assert "not in a folder this app may read" in msg and not launched


# ---------------------------------------------------------------------------------------------- the package


def test_the_app_is_in_the_package_and_app_py_reexports_it(monkeypatch):
    import app
    import workbench.app
    from workbench import cli

    assert app.build_app is workbench.app.build_app and app._parse_auth is workbench.app._parse_auth
    called = []
    monkeypatch.setattr(workbench.app, "launch_from_args", lambda args: called.append(args) or 0)
    assert cli.main(["app", "--port", "7999"]) == 0  # `workbench app` imports the package, reads no file
    assert called and called[0].port == 7999


def test_stop_events_are_per_context(tmp_path):
    a, b = _ctx(tmp_path), _ctx(tmp_path)
    a.stop_events["s"] = threading.Event()
    assert b.stop_events == {}
