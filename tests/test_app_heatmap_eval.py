"""The Heatmap tab, the Evaluate tab's poll and the page's link handling, called directly (no browser, no model):
the previous score only of the same problem and source, one colour scale for every heatmap and the side-by-side
pair, step attribution, the text on a fresh page, the job message and the poll's pace, the jobs table's `n`, the
dark colours of the Evaluate tab, and links that open a problem, source and tab."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

gr = pytest.importorskip("gradio")

from workbench import viz  # noqa: E402
from workbench.app import evaluate_tab, heatmap_tab, page  # noqa: E402
from workbench.app.context import UI, AppContext, bind  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.eval import views  # noqa: E402
from workbench.eval.jobs import JobInfo  # noqa: E402
from workbench.rewards import RewardResult  # noqa: E402

T = S = "fake-model"


def _result(item, scale=1.0):
    text = item.get("explanation") or item.get("completion") or ""
    return RewardResult(id=item["id"], reward=-float(len(text)), r_ss=-1.0, r_kl=0.5, kl_mean=0.1, kl_max=0.2,
                        solution_logprob_mean=-1.0, solution_logprob_min=-2.0,
                        solution_tokens=[{"token": "4", "logprob": -1.0 * scale}],
                        explanation_tokens=[{"token": w, "teacher_logprob": -1.0, "student_logprob": -1.5,
                                             "kl": 0.1 * scale * (i + 1)} for i, w in enumerate(text.split())])


class FakeScorer:
    """What rewards.attribute_steps uses of an RLTScorer: config.tag_style and score(items)."""

    def __init__(self):
        self.config = SimpleNamespace(tag_style="r1")
        self.batches = []

    def score(self, items, progress=False):
        self.batches.append(items)
        return [_result(it) for it in items]


class FakeModels:
    def __init__(self, fail=None):
        self.calls, self.fail, self.fake_scorer = [], fail, FakeScorer()

    def tokenizer(self, name):
        return None

    def cached(self, teacher, student, item):
        return None

    def scorer(self, teacher, student):
        if self.fail:
            raise WorkbenchError(self.fail)
        return self.fake_scorer

    def score(self, teacher, student, items, progress=False):
        self.calls.append(items)
        return [_result(it, 3.0 if it["id"].endswith(":r1") else 1.0) for it in items]


def _problem(pid="p1", **sources):
    return {"id": pid, "question": "What is 2+2?", "solution": "4",
            "sources": sources or {"rlt": "Add two and two.\n\nIt is 4.", "r1": "Hmm. 2+2.\n\nSo 4."},
            "completions": {}, "meta": {}}


def _ctx(tmp_path, problems=None, **kw) -> AppContext:
    return AppContext(models=kw.pop("models", None) or FakeModels(), teacher=T, student=S, export_dir=str(tmp_path),
                      problems=problems or [_problem(), _problem("p2")], folders=[Path(tmp_path).resolve()], **kw)


def _progress(*a, **k):
    return None


def _score(ctx, pid, source, text, st, metric="kl", limit=0, mode="logprob", same=True, b=None):
    return heatmap_tab.on_score_text(ctx, ctx.problems, pid, source, text, st, T, S, metric, limit, mode, _progress,
                                     same, b)


# ---------------------------------------------------------------------------------------------- 1. previous score


def test_previous_score_only_of_the_same_problem_and_source(tmp_path):
    ctx = _ctx(tmp_path)
    rlt, r1 = ctx.problems[0]["sources"]["rlt"], ctx.problems[0]["sources"]["r1"]
    st, *_ = _score(ctx, "p1", "rlt", rlt, {})
    st2, breakdown, expl, _ = _score(ctx, "p1", "rlt", rlt + " Done.", st, mode="delta_logprob")
    assert st2["previous"] == st["result"] and st2["previous_key"] == ["p1", "rlt"]
    assert "previous:" in breakdown and " c\"" in expl  # edited tokens are underlined
    # another source of the same problem: no previous, nothing underlined, no change of log-prob
    st3, breakdown3, expl3, sol3 = _score(ctx, "p1", "r1", r1, st2, mode="delta_logprob")
    assert st3["previous"] is None and "previous:" not in breakdown3 and " c\"" not in expl3
    assert 'data-metric="logprob"' in sol3
    # the same source of another problem: no previous either
    st4, breakdown4, *_ = _score(ctx, "p2", "r1", r1 + " x", st3)
    assert st4["previous"] is None and "previous:" not in breakdown4
    # a state whose previous belongs to another text is not shown as "previous" (keys differ)
    forged = {**st2, "source": "r1"}
    b5, expl5, _ = heatmap_tab.heatmap_views(forged, "kl", 0, "delta_logprob")
    assert "previous:" not in b5 and " c\"" not in expl5


# ---------------------------------------------------------------------------------------------- 2. colour scale


def test_same_scale_uses_one_fixed_limit_per_metric(tmp_path):
    ctx = _ctx(tmp_path)
    st_a, _, expl_a, _ = _score(ctx, "p1", "rlt", "one two three", {})
    st_b, _, expl_b, _ = _score(ctx, "p1", "r1", "four five six seven eight", {})
    lim = heatmap_tab.FIXED_LIMITS["kl"]
    for expl in (expl_a, expl_b):
        assert f'data-hi="{lim:g}"' in expl and "the same for every heatmap" in expl
    # off: each heatmap has its own automatic scale
    _, auto_a, _ = heatmap_tab.on_rerender(ctx, st_a, "kl", 0, "logprob", False)
    _, auto_b, _ = heatmap_tab.on_rerender(ctx, st_b, "kl", 0, "logprob", False)
    hi = [re.search(r'id="wbhm-expl"[^>]*data-hi="([^"]+)"', h).group(1) for h in (auto_a, auto_b)]
    assert hi[0] != hi[1] and "auto: 98th percentile" in auto_a
    # a typed limit wins over both
    _, typed, _ = heatmap_tab.on_rerender(ctx, st_a, "kl", 7, "logprob", True)
    assert 'data-hi="7"' in typed and "typed" in typed
    assert heatmap_tab.scale_limit("teacher_logprob", 0, True) == (heatmap_tab.FIXED_LIMITS["teacher_logprob"],
                                                                   "fixed, the same for every heatmap of this metric")
    assert heatmap_tab.scale_limit("kl", "", False) == (None, None)


def test_side_by_side_shows_two_sources_on_one_scale(tmp_path):
    ctx = _ctx(tmp_path)
    p = ctx.problems[0]
    st, breakdown, expl, _ = _score(ctx, "p1", "rlt", p["sources"]["rlt"], {}, same=False, b="r1")
    assert [it["id"] for it in ctx.models.calls[-1]] == ["p1:rlt", "p1:r1"]  # one batch
    assert st["pair"]["source"] == "r1" and "rlt-heatmap-pair" in expl
    assert 'id="wbhm-expl-a"' in expl and 'id="wbhm-expl-b"' in expl and "R1" in breakdown
    # one scale for both: the pair's limit is shared (r1's larger KL sets it)
    want = viz.shared_limit([st["result"]["explanation_tokens"], st["pair"]["result"]["explanation_tokens"]], "kl")
    assert f'data-hi="{want:g}"' in expl and expl.count(f'data-hi="{want:g}"') >= 3
    # maybe_score does not score again while the same pair is shown; another second source does
    calls = len(ctx.models.calls)
    heatmap_tab.maybe_score(ctx, ctx.problems, "p1", "rlt", p["sources"]["rlt"], st, T, S, "kl", 0, "logprob",
                            _progress, True, "r1")
    assert len(ctx.models.calls) == calls
    st2, _, expl2, _ = heatmap_tab.maybe_score(ctx, ctx.problems, "p1", "rlt", p["sources"]["rlt"], st, T, S, "kl",
                                               0, "logprob", _progress, True, "")
    assert len(ctx.models.calls) == calls + 1 and st2["pair"] is None and "rlt-heatmap-pair" not in expl2
    # the second picker lists the problem's sources and "none"
    upd = heatmap_tab.pair_choices(ctx.problems, "p1", "nope")
    assert upd["value"] == "" and [v for _, v in upd["choices"]] == ["", "rlt", "r1"]


# ---------------------------------------------------------------------------------------------- 3. attribution


def test_which_steps_teach_scores_every_ablation_in_one_batch(tmp_path):
    ctx = _ctx(tmp_path)
    text = "First step here.\n\nSecond step.\n\nThird."
    fig, df = heatmap_tab.on_attribute(ctx, ctx.problems, "p1", "rlt", text, T, S, _progress)
    assert len(ctx.models.fake_scorer.batches) == 1 and len(ctx.models.fake_scorer.batches[0]) == 4
    assert list(df.columns) == heatmap_tab.ATTRIBUTION_COLUMNS and list(df["step"]) == [1, 2, 3]
    # reward = -len(text): removing a step raises it by the step's length (and its separator)
    assert all(v < 0 for v in df["Δ reward"]) and df["text"][0] == "First step here."
    assert len(fig.data) == 2 and "problem p1" in fig.layout.title.text and "(edited)" in fig.layout.title.text
    with pytest.raises(gr.Error, match="empty"):
        heatmap_tab.on_attribute(ctx, ctx.problems, "p1", "rlt", " ", T, S, _progress)
    bad = _ctx(tmp_path, models=FakeModels(fail="<i>no model</i>"))
    with pytest.raises(gr.Error) as err:
        heatmap_tab.on_attribute(bad, bad.problems, "p1", "rlt", text, T, S, _progress)
    assert "&lt;i&gt;" in str(err.value)
    assert heatmap_tab.attribution_table([]).empty


# ---------------------------------------------------------------------------------------------- 4. layout, fresh page


def test_a_fresh_page_has_the_text_and_the_heatmap_at_the_top(tmp_path, monkeypatch):
    monkeypatch.setenv("RLT_WORKBENCH_HOME", str(tmp_path / "home"))
    from workbench.compare import SharedModels

    probs = [_problem(), _problem("p2")]
    demo = page.build_app(problems=probs, models=SharedModels(device="cpu"), export_dir=str(tmp_path))
    ui = demo.workbench_context.ui
    assert ui.hm_text.value == probs[0]["sources"]["rlt"]  # opening the Heatmap tab first shows the text
    # the heatmap is the first thing of the tab's wide column; the controls sit in the narrow one beside it
    def inside(block):
        return [block] + [b for c in getattr(block, "children", []) for b in inside(c)]

    controls, main = ui.hm_tab.children[0].children
    assert {ui.hm_source, ui.hm_source_b, ui.hm_metric, ui.hm_same_scale, ui.hm_link} <= set(inside(controls))
    assert main.children[0] is ui.hm_expl
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"wb-hm-expl", "wb-hm-sol", "wb-hm-breakdown", "wb-hm-text", "wb-hm-score", "wb-hm-export", "wb-hm-file",
            "wb-hm-source", "wb-hm-metric", "wb-hm-attribute", "wb-hm-attr-plot", "wb-hm-link"} <= ids
    ctx = demo.workbench_context
    # the tab's select: an empty box gets the source's text, a typed one is kept
    src, text = heatmap_tab.on_open(ctx, probs, "p1", "rlt", "")
    assert text == probs[0]["sources"]["rlt"] and src["value"] == "rlt"
    assert heatmap_tab.on_open(ctx, probs, "p1", "rlt", "my edit") == (gr.skip(), gr.skip())
    assert heatmap_tab.on_open(ctx, [_problem("p9", only="x")], "p9", "rlt", "stale")[1] == "x"
    # after the problem changes: both pickers, the text, an empty attribution, the link
    out = heatmap_tab.on_problem_change(ctx, [_problem("p2", only="Just this.")], "p2", "rlt", "r1",
                                        "http://h:1/app/")
    assert out[0]["value"] == "only" and out[1] == "Just this." and out[2]["value"] == ""
    assert out[3] is None and out[4].empty and out[5] == "http://h:1/app/?problem=p2&source=only&tab=heatmap"


# ---------------------------------------------------------------------------------------------- 5. evaluate


def _job(**kw) -> JobInfo:
    base = dict(id=1, kind="eval", title="Countdown · m · quick", state="queued",
                args={"benchmark": "countdown", "model": "m", "preset": None, "limit": 2, "n": None},
                created_at=1_700_000_000.0, started_at=None, finished_at=None, updated_at=1_700_000_000.0, pid=None,
                progress_done=0, progress_total=0, message="queued", error=None, result=None, output_dir=None,
                attempts=1)
    base.update(kw)
    return JobInfo(**base)


def _ev_ui() -> UI:
    names = ["ev_sig", "ev_msg", "ev_jobs", "ev_job", "ev_detail", "ev_cancel", "ev_resume", "ev_log", "ev_summary",
             "ev_records", "ev_idx", "ev_sample", "ev_runs", "ev_metric", "ev_chart", "ev_runs_table", "ev_timer"]
    return UI(**{n: n for n in names})


def test_the_job_message_follows_the_job_and_the_poll_slows_down_when_idle(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path, ui=_ev_ui())
    listed = [_job()]
    monkeypatch.setattr(evaluate_tab.eval_jobs, "list_jobs", lambda: listed)
    monkeypatch.setattr(evaluate_tab.eval_jobs, "read_log", lambda *a: "")
    def resume_job(job_id):
        return listed[0]

    first = evaluate_tab.ev_act(resume_job)(1)  # the message names what was done, by the action's name
    assert "Job <b>#1</b> resumed · now <b>queued</b>" in first and 'data-ev-job="1"' in first
    out = evaluate_tab.ev_open(ctx, {}, 1, "all", None, [], "pass@1", "workbench", first)
    assert "ev_msg" not in out  # the state did not change
    assert out["ev_timer"].active is True and out["ev_timer"].value == evaluate_tab.EVAL_POLL_S
    sig = out["ev_sig"]
    listed[0] = _job(state="done", started_at=1.0, finished_at=2.0, progress_done=2, progress_total=2,
                     message="done", result={"accuracy": 1.0, "problems": 2})
    out = evaluate_tab.ev_refresh(ctx, sig, 1, "all", None, [], "pass@1", "workbench", first)
    assert "now <b>done</b>" in out["ev_msg"] and "resumed" in out["ev_msg"] and "queued" not in out["ev_msg"]
    assert out["ev_timer"].value == evaluate_tab.EVAL_IDLE_POLL_S  # no job active: slower
    again = evaluate_tab.ev_refresh(ctx, out["ev_sig"], 1, "all", None, [], "pass@1", "workbench", out["ev_msg"])
    assert set(again) == {"ev_sig"}
    # an error message, or a message about no job, is left alone
    assert "ev_msg" not in evaluate_tab.ev_refresh(ctx, {}, 1, "all", None, [], "pass@1", "workbench",
                                                   views.error_html("boom"))
    # another tab selected: the poll stops
    assert evaluate_tab.ev_pause(ctx).active is False
    assert evaluate_tab.poll_pace([]) == evaluate_tab.EVAL_IDLE_POLL_S
    # the launch message names the job (and still says "submitted")
    assert "Job <b>#1</b> submitted: Countdown" in views.job_message_html(listed[0], "submitted: Countdown · m")


def test_the_timer_runs_only_while_the_evaluate_tab_is_selected(tmp_path, monkeypatch):
    monkeypatch.setenv("RLT_WORKBENCH_HOME", str(tmp_path / "home"))
    from workbench.compare import SharedModels

    demo = page.build_app(problems=[_problem()], models=SharedModels(device="cpu"), export_dir=str(tmp_path))
    ui = demo.workbench_context.ui
    assert not ui.ev_timer.active
    deps = demo.config["dependencies"]

    def listeners(block, event):
        return [d for d in deps if [block._id, event] in [list(t) for t in d["targets"]]]

    tabs = [t for t in ui.tabs.children if isinstance(t, gr.Tab)]
    assert len(tabs) == 3
    for tab in tabs:
        stops = [d for d in listeners(tab, "select") if ui.ev_timer._id in d["outputs"]]
        assert stops, tab.label  # every tab's select sets the timer: Evaluate starts it, the others stop it
    assert (tmp_path / "home").exists() is False


def test_jobs_table_n_is_samples_per_problem():
    rows = views.jobs_table([_job(id=3), _job(id=2, args={"benchmark": "math500", "model": "m", "preset": "sample-8",
                                                          "n": None}),
                             _job(id=1, args={"benchmark": "math500", "model": "m", "preset": "sample-8", "n": 4}),
                             _job(id=4, kind="wait", args={"steps": 3})]).to_dict("records")
    assert [r["n"] for r in rows] == ["1", "8", "4", ""]  # countdown's default preset (quick) draws 1 sample


def test_evaluate_colours_are_readable_in_light_and_dark_mode():
    for scheme, colours in views.EVAL_TEXT_COLOURS.items():
        for name, colour in colours.items():
            for bg in views.EVAL_BACKGROUNDS[scheme]:
                assert viz.contrast_ratio(colour, bg) >= 4.5, (scheme, name, colour, bg)
    css = views.EVAL_CSS
    for cls in (".wb-ev-meta", ".wb-ev-sample pre", ".wb-ev-ok", ".wb-ev-bad", ".wb-ev-none"):
        assert f".dark {cls}" in css, cls
    dark = views.EVAL_TEXT_COLOURS["dark"]
    assert f".dark .wb-ev-ok{{color:{dark['ok']}}}" in css and f"color:{dark['pre']}" in css
    assert f".dark .wb-ev-meta,.dark .wb-ev-meta *{{color:{dark['meta']}}}" in css
    light = views.EVAL_TEXT_COLOURS["light"]
    assert f".wb-ev-meta{{color:{light['meta']};" in css and f".wb-ev-bad{{color:{light['bad']};" in css


# ---------------------------------------------------------------------------------------------- 6. links


def _request(query: dict, referer="http://127.0.0.1:7860/?problem=old"):
    return SimpleNamespace(query_params=query, headers={"referer": referer})


def test_a_link_opens_the_problem_source_and_tab(tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(gr, "Warning", lambda message="", *a, **k: warnings.append(message))
    ctx = _ctx(tmp_path)
    probs = ctx.problems
    out = page.on_page_load(ctx, probs, "p1", "rlt", "", _request({"problem": "p2", "source": "r1", "tab": "heatmap"}))
    pid_u, tabs_u, src_u, text, pair_u, link, base, tab = out
    assert pid_u["value"] == "p2" and src_u["value"] == "r1" and text == probs[1]["sources"]["r1"]
    assert tabs_u.selected == "heatmap" and tab == "heatmap" and base == "http://127.0.0.1:7860/"
    assert link == "http://127.0.0.1:7860/?problem=p2&source=r1&tab=heatmap" and not warnings
    assert [v for _, v in pair_u["choices"]] == ["", "rlt", "r1"]
    # nothing asked: the page as it is, no tab switch
    out = page.on_page_load(ctx, probs, "p1", "rlt", "", _request({}))
    assert out[1] == gr.skip() and out[3] == probs[0]["sources"]["rlt"] and out[-1] == "" and not warnings
    # what is not there is ignored, with a notice
    out = page.on_page_load(ctx, probs, "p1", "rlt", "", _request({"problem": "zz", "source": "x", "tab": "nope"}))
    assert out[0]["value"] == "p1" and out[2]["value"] == "rlt" and out[1] == gr.skip()
    assert warnings and "zz" in warnings[0] and "nope" in warnings[0]
    # the link is a query of its own when the page's address is unknown, and ids are quoted
    assert heatmap_tab.view_link(None, "a b&c", "rlt") == "?problem=a+b%26c&source=rlt&tab=heatmap"
    assert heatmap_tab.on_link(ctx, "https://x.org/w/?tab=compare#top", "p1", "r1") == \
        "https://x.org/w/?problem=p1&source=r1&tab=heatmap"
    # the load event's follow-ups act only for the tab the link opened
    assert page.open_heatmap(ctx, "compare", probs, "p1", "rlt", "t", {}, T, S, "kl", 0, "logprob") == (gr.skip(),) * 4
    st, *_ = page.open_heatmap(ctx, "heatmap", probs, "p1", "rlt", "t u", {}, T, S, "kl", 0, "logprob", _progress)
    assert st["pid"] == "p1" and st["text"] == "t u"
    skipped = page.open_evaluate(ctx, "heatmap")  # one skip per output: Gradio 6 refuses fewer values
    assert skipped == [gr.skip()] * len(evaluate_tab.POLL_OUTPUTS) == [gr.skip()] * 17
    assert bind(ctx, page.on_page_load).__name__ == "on_page_load"
