"""The Heatmap tab: one explanation of the selected problem scored token by token (KL or log-probs), optionally
beside a second explanation of the same problem on one colour scale, the solution tokens' log-probs, the reward
breakdown against the previous score of the same text, editing and re-scoring, step attribution ("which steps
teach"), a link to this view, and the HTML export.

The tab's state (gr.State `hm_state`) holds the last score: pid, source, text, label, result, previous,
previous_label, previous_key ((pid, source) of the previous score), and pair (the second explanation shown beside
it: pid, source, label, result). Every handler takes the AppContext first, then the event's inputs (see
context.bind). Options added after the first version of a handler (same_scale, source_b) come after its
gr.Progress parameter, with defaults, so older calls keep working.
"""

from __future__ import annotations

import html
from urllib.parse import urlencode, urlsplit, urlunsplit

import gradio as gr

from workbench import compare, rewards, viz
from workbench.errors import WorkbenchError

from .common import MODEL_QUEUE, _error_md, _find, _sources_of, _toast
from .context import AppContext, bind

HEATMAP_METRICS = [("KL per token (teacher − student)", "kl"), ("teacher log-prob", "teacher_logprob"),
                   ("student log-prob", "student_logprob")]
# The scale end (nats) of each metric when "same colour scale for every heatmap" is on: one fixed value per metric,
# so a colour means the same value in every heatmap of that metric, whatever the explanation (the automatic scale
# is the 98th percentile of |value| of each heatmap alone). The largest automatic limit but one of the demo set's
# 28 explanations scored by the embedded 135M models (KL: 2 to 5 nats, one 10; log-probs: 10 or 20); tokens beyond
# it take the end colour.
FIXED_LIMITS = {"kl": 5.0, "teacher_logprob": 20.0, "student_logprob": 20.0, "logprob": 20.0, "delta_logprob": 2.0}
ATTRIBUTION_COLUMNS = ["step", "Δ reward", "Δ r_ss", "text"]
TABS = ("compare", "heatmap", "evaluate")  # the tab ids a link may name (page.on_page_load)


# ---------------------------------------------------------------------------------------------- rendering


def scale_limit(metric: str, limit_v=0, same_scale: bool = True) -> tuple[float | None, str | None]:
    """(scale end in nats or None for automatic, how it was chosen): a typed limit > 0 wins; else the metric's fixed
    limit when the same scale is asked for every heatmap; else automatic (per heatmap, or shared by a pair)."""
    try:
        typed = float(limit_v or 0)
    except (TypeError, ValueError):
        typed = 0.0
    if typed > 0:
        return typed, "fixed: the limit typed in the scale box"
    if same_scale and metric in FIXED_LIMITS:
        return FIXED_LIMITS[metric], "fixed, the same for every heatmap of this metric"
    return None, None


def _key(pid, source) -> tuple | None:
    return None if pid is None and source is None else (pid, source)


def _previous(st) -> tuple:
    """(previous RewardResult or None, its label): only a score of the same problem and source is a "previous"."""
    if not st or not st.get("previous"):
        return None, None
    key, pkey = _key(st.get("pid"), st.get("source")), st.get("previous_key")
    if pkey is None or not viz.comparable(key, tuple(pkey)):
        return None, None
    prev = compare.result_from_dict(st["previous"])
    return (None, None) if prev.error else (prev, st.get("previous_label", "previous score"))


def _pair_result(st):
    """The second explanation shown beside the first (a RewardResult and its label), when it is of the same problem."""
    pair = (st or {}).get("pair")
    if not pair or pair.get("pid") != st.get("pid") or not pair.get("result"):
        return None, None
    r = compare.result_from_dict(pair["result"])
    return r, pair.get("label") or compare.source_label(pair.get("source", ""))


def heatmap_views(st, metric, limit, sol_mode, same_scale=True):
    """(breakdown, explanation heatmap(s), solution heatmap) HTML from the heatmap state."""
    if not st or not st.get("result"):
        empty = "<p>Pick an explanation (or type one) and press <b>Score</b>.</p>"
        return empty, "", ""
    metric = metric or "kl"
    r = compare.result_from_dict(st["result"])
    if r.error:
        return _error_md(f"could not score this text: {r.error}"), "", ""
    prev, prev_label = _previous(st)
    key = _key(st.get("pid"), st.get("source"))
    pkey = tuple(st["previous_key"]) if prev is not None else None
    lim, note = scale_limit(metric, limit, same_scale)
    label = st.get("label", "explanation")
    title = f"{label} · problem {st.get('pid')}"
    b, b_label = _pair_result(st)
    b_note = ""
    if b is not None and not b.error:
        expl = viz.render_heatmaps_side_by_side(r.explanation_tokens, b.explanation_tokens, metric,
                                                (title, f"{b_label} · problem {st.get('pid')}"), limit=lim,
                                                elem_id="wbhm-expl")
    else:
        if b is not None:
            b_note = _error_md(f"could not score {b_label}: {b.error}")
        changed = (viz.changed_tokens(r.explanation_tokens, prev.explanation_tokens, source_key=key,
                                      previous_source_key=pkey) if prev is not None else None)
        expl = viz.render_heatmap(r.explanation_tokens, metric, limit=lim, title=title, elem_id="wbhm-expl",
                                  changed=changed, scale_note=note)
    sol = None
    sol_lim, sol_note = scale_limit("logprob", 0, same_scale)
    if sol_mode == "delta_logprob" and prev is not None:
        d = viz.delta_tokens(r.solution_tokens, prev.solution_tokens, source_key=key, previous_source_key=pkey)
        if d is not None:
            d_lim, d_note = scale_limit("delta_logprob", 0, same_scale)
            sol = viz.render_heatmap(d, "delta_logprob", limit=d_lim, scale_note=d_note,
                                     title="Solution tokens · change of student log-prob since the previous score",
                                     elem_id="wbhm-sol")
    if sol is None:
        sol = viz.render_heatmap(r.solution_tokens, "logprob", limit=sol_lim, scale_note=sol_note,
                                 title="Solution tokens · student log-prob after reading the explanation",
                                 elem_id="wbhm-sol")
    head = "" if prev is None else (f" · previous: {prev_label}; tokens that differ from it are underlined")
    breakdown = viz.render_breakdown(compare.reward_breakdown(r, prev), title="Reward breakdown" + head)
    if b is not None and not b.error:
        breakdown += viz.render_breakdown(compare.reward_breakdown(b), title=f"Reward breakdown · {b_label}")
    return breakdown + b_note, expl, sol


def view_link(base: str | None, pid, source, tab: str = "heatmap") -> str:
    """The address that opens the app on this problem, source and tab (page.on_page_load reads it): the page's
    address (`base`, without its query) and ?problem=…&source=…&tab=…; only the query when the address is unknown."""
    query = urlencode({k: v for k, v in (("problem", pid), ("source", source), ("tab", tab)) if v})
    if not base:
        return f"?{query}"
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def attribution_table(steps: list[dict]):
    """One row per step: its number, Δ reward, Δ r_ss (rounded) and the start of its text."""
    import pandas as pd

    def r3(v):
        return None if v is None else round(float(v), 3)

    rows = [{"step": s["step"], "Δ reward": r3(s.get("delta_reward")), "Δ r_ss": r3(s.get("delta_r_ss")),
             "text": " ".join(str(s.get("text", "")).split())[:90] or s.get("error", "")} for s in steps]
    return pd.DataFrame(rows, columns=ATTRIBUTION_COLUMNS)


# ---------------------------------------------------------------------------------------------- handlers


def hm_choices(ctx: AppContext, problems, pid, current=None):
    """Sources of the selected problem for the heatmap picker, and the text of the picked one."""
    p = _find(problems, pid)
    names = _sources_of(p)
    pick = current if current in names else (names[0] if names else None)
    return (gr.update(choices=[(compare.source_label(s), s) for s in names], value=pick),
            p["sources"].get(pick, "") if p and pick else "")


def pair_choices(problems, pid, current=None):
    """The "side by side with" picker: the sources of the selected problem, and "none" (None)."""
    names = _sources_of(_find(problems, pid))
    return gr.update(choices=[("none", "")] + [(compare.source_label(s), s) for s in names],
                     value=current if current in names else "")


def on_problem_change(ctx: AppContext, problems, pid, current=None, current_b=None, base=None):
    """After the problem or its sources changed: both pickers, the text of the picked source, an empty attribution,
    and the link to this view."""
    source_u, text = hm_choices(ctx, problems, pid, current)
    return (source_u, text, pair_choices(problems, pid, current_b), None, attribution_table([]),
            view_link(base, pid, source_u.get("value")))


def on_open(ctx: AppContext, problems, pid, source, text):
    """Opening the tab: an empty edit box (a fresh page) or a source the problem does not have gets the problem's
    source text; a text the user typed is kept."""
    p = _find(problems, pid)
    if (text or "").strip() and p is not None and source in _sources_of(p):
        return gr.skip(), gr.skip()
    return hm_choices(ctx, problems, pid, source)


def on_pick_source(ctx: AppContext, problems, pid, source):
    p = _find(problems, pid)
    return p["sources"].get(source, "") if p and source else ""


def on_link(ctx: AppContext, base, pid, source):
    return view_link(base, pid, source)


def _item(p: dict, pid, source, text) -> dict:
    """The reward item of the text in the edit box: the raw completion when it is the source's own text."""
    if text == p["sources"].get(source) and source in p.get("completions", {}):
        return compare.score_item(p, source)  # the raw completion: a missing end tag is penalised
    return {"id": f"{pid}:{source}", "question": p["question"], "solution": p["solution"], "explanation": text}


def _pair_source(p: dict | None, source_b) -> str | None:
    return source_b if p is not None and source_b and source_b in p["sources"] else None


def on_score_text(ctx: AppContext, problems, pid, source, text, st, teacher_name, student_name, metric, limit_v, mode,
                  progress=gr.Progress(track_tqdm=True), same_scale=True, source_b=None):  # noqa: B008
    p = _find(problems, pid)
    if p is None:
        raise gr.Error("select a problem in the Compare tab first")
    if not (text or "").strip():
        raise gr.Error("the explanation text is empty")
    original = p["sources"].get(source)
    items = [_item(p, pid, source, text)]
    pair_source = _pair_source(p, source_b)
    if pair_source:
        items.append(compare.score_item(p, pair_source))
    progress(0, desc=f"scoring with {student_name}")
    try:
        results = ctx.models.score(teacher_name, student_name, items, progress=True)
    except WorkbenchError as exc:
        raise gr.Error(_toast(exc), duration=None) from None
    result = results[0]
    same = bool(st) and st.get("pid") == pid and st.get("source") == source  # a previous score of this very text
    prev_ok = same and st.get("result") and not st["result"].get("error")
    if prev_ok and st.get("text") != text:
        previous, previous_label = st["result"], st.get("label")
    elif same and st.get("text") == text:
        previous, previous_label = st.get("previous"), st.get("previous_label")
    else:
        previous, previous_label = None, None
    label = compare.source_label(source) + ("" if text == original else " (edited)")
    new = {"pid": pid, "source": source, "text": text, "label": label, "result": result.to_dict()
           if result.error is None else {"error": result.error}, "previous": previous,
           "previous_label": previous_label, "previous_key": [pid, source] if previous else None, "pair": None}
    if pair_source:
        rb = results[1]
        new["pair"] = {"pid": pid, "source": pair_source, "label": compare.source_label(pair_source),
                       "result": rb.to_dict() if rb.error is None else {"error": rb.error}}
    return (new, *heatmap_views(new, metric, limit_v, mode, same_scale))


def maybe_score(ctx: AppContext, problems, pid, source, text, st, teacher_name, student_name, metric, limit_v, mode,
                progress=gr.Progress(track_tqdm=True), same_scale=True, source_b=None):  # noqa: B008
    """Score on opening the tab or picking a source, unless this very text (and second source) is already shown."""
    pair = (st or {}).get("pair") or {}
    shown = (st and st.get("pid") == pid and st.get("text") == text and st.get("result")
             and st.get("source") == source and pair.get("source") == _pair_source(_find(problems, pid), source_b))
    if not text or shown:
        return (st, *heatmap_views(st, metric, limit_v, mode, same_scale))
    return on_score_text(ctx, problems, pid, source, text, st, teacher_name, student_name, metric, limit_v, mode,
                         progress, same_scale, source_b)


def on_rerender(ctx: AppContext, st, metric, limit_v, mode, same_scale=True):
    return heatmap_views(st, metric, limit_v, mode, same_scale)


def on_attribute(ctx: AppContext, problems, pid, source, text, teacher_name, student_name,
                 progress=gr.Progress(track_tqdm=True)):  # noqa: B008
    """Which steps teach: the text in the edit box without each of its steps (paragraphs), scored in one batch;
    (the bar chart, the table)."""
    p = _find(problems, pid)
    if p is None:
        raise gr.Error("select a problem in the Compare tab first")
    if not (text or "").strip():
        raise gr.Error("the explanation text is empty")
    progress(0, desc=f"scoring every step's removal with {student_name}")
    try:
        steps = rewards.attribute_steps(ctx.models.scorer(teacher_name, student_name), _item(p, pid, source, text))
    except WorkbenchError as exc:
        raise gr.Error(_toast(exc), duration=None) from None
    label = compare.source_label(source) + ("" if text == p["sources"].get(source) else " (edited)")
    fig = viz.attribution_figure(steps, title=f"{label} · problem {pid}")  # short: the chart sits in a narrow column
    return fig, attribution_table(steps)


def on_export_heatmap(ctx: AppContext, problems, st, metric, limit_v, mode, same_scale=True):
    if not st or not st.get("result"):
        raise gr.Error("score an explanation first")
    breakdown, expl, sol = heatmap_views(st, metric, limit_v, mode, same_scale)
    p = _find(problems, st.get("pid"))
    question = "" if p is None else (
        f"<h2 style='font-size:16px'>Problem {html.escape(p['id'])}</h2><p><b>Question.</b> "
        f"{html.escape(p['question'])}</p><p><b>Reference solution.</b> {html.escape(p['solution'])}</p>")
    doc = viz.heatmap_document([question, breakdown, expl, sol], title=f"RLT reward heatmap · {st.get('label', '')}")
    try:  # the problem id is only a hint for the name: `a/b` or `../x` becomes a_b, x
        path = viz.export_path(ctx.export_dir, "rlt-heatmap", str(st.get("pid") or "x"), ".html")
        path.write_text(doc, encoding="utf-8")
    except OSError as exc:
        raise gr.Error(_toast(f"could not write the heatmap export to {ctx.export_dir}: {exc}"),
                       duration=None) from None
    gr.Info(_toast(f"heatmap saved as {path.name}: download it from the “Heatmap export” box below the "
                   "buttons"), duration=8)
    return gr.update(value=str(path), visible=True, label=f"Heatmap export: {path.name}")


# ---------------------------------------------------------------------------------------------- layout and events


def layout(ctx: AppContext) -> None:
    """The tab's components (inside gr.Tabs), added to ctx.ui: a narrow column of controls on the left, the heatmap
    at the top of the wide column, then the edit box beside the step attribution, then the breakdown and the
    solution tokens."""
    ui = ctx.ui
    p0 = _find(ctx.problems, ctx.problems[0]["id"] if ctx.problems else None)
    names0 = _sources_of(p0)
    init_sources = [(compare.source_label(s), s) for s in names0]
    # the first problem's first source is in the edit box from the start: opening this tab first shows its text
    text0 = p0["sources"].get(names0[0], "") if p0 and names0 else ""
    with gr.Tab("Heatmap", id="heatmap", elem_id="wb-tab-heatmap") as ui.hm_tab:
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=240, elem_id="wb-hm-controls"):
                ui.hm_source = gr.Dropdown(init_sources, value=init_sources[0][1] if init_sources else None,
                                           label="Explanation of the selected problem", elem_id="wb-hm-source")
                ui.hm_source_b = gr.Dropdown([("none", "")] + init_sources, value="",
                                             label="Side by side with (same colour scale)", elem_id="wb-hm-source-b")
                ui.hm_metric = gr.Radio(HEATMAP_METRICS, value="kl", label="Colour explanation tokens by",
                                        elem_id="wb-hm-metric")
                ui.sol_mode = gr.Radio([("student log-prob", "logprob"),
                                        ("change since previous score", "delta_logprob")],
                                       value="logprob", label="Colour solution tokens by", elem_id="wb-hm-sol-mode")
                ui.hm_same_scale = gr.Checkbox(True, label="same colour scale for every heatmap (fixed per metric)",
                                               elem_id="wb-hm-same-scale")
                ui.hm_limit = gr.Number(value=0, label="scale limit in nats (0 = auto or fixed)", minimum=0,
                                        elem_id="wb-hm-limit")
                ui.hm_link = gr.Textbox(view_link(None, p0["id"] if p0 else None, names0[0] if names0 else None),
                                        label="Link to this view", interactive=False, buttons=["copy"],
                                        elem_id="wb-hm-link")
            with gr.Column(scale=4, min_width=320):
                ui.hm_expl = gr.HTML("", elem_id="wb-hm-expl", js_on_load=viz.HEATMAP_JS)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=300):
                        ui.hm_text = gr.Textbox(text0, label="Explanation text: edit a sentence, then press Score to "
                                                "see what changed", lines=6, max_lines=14, elem_id="wb-hm-text")
                        with gr.Row():
                            ui.rescore_btn = gr.Button("Score", variant="primary", elem_id="wb-hm-score")
                            ui.reset_btn = gr.Button("Reset text to the source", elem_id="wb-hm-reset")
                            ui.attr_btn = gr.Button("Which steps teach", elem_id="wb-hm-attribute")
                            ui.export_hm_btn = gr.Button("Export heatmap (HTML)", elem_id="wb-hm-export")
                        ui.hm_file = gr.File(label="Heatmap export", interactive=False, visible=False,
                                             elem_id="wb-hm-file")
                    with gr.Column(scale=2, min_width=280):
                        ui.hm_attr_plot = gr.Plot(label="Which steps teach: reward of the whole text minus the same "
                                                  "without the step", elem_id="wb-hm-attr-plot")
                        ui.hm_attr_table = gr.Dataframe(attribution_table([]), interactive=False, wrap=True,
                                                        max_height=240, elem_id="wb-hm-attr-table",
                                                        label="Steps (paragraphs)")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=280):
                        ui.hm_breakdown = gr.HTML("", elem_id="wb-hm-breakdown", js_on_load=None)
                    with gr.Column(scale=3, min_width=300):
                        ui.hm_sol = gr.HTML("", elem_id="wb-hm-sol", js_on_load=viz.HEATMAP_JS)


def picker_sync(ctx: AppContext) -> tuple:
    """(fn, inputs, outputs) of the event that refreshes the pickers, the text, the attribution and the link after
    the problem or its sources changed: chain it with `.then(*picker_sync(ctx))`."""
    ui = ctx.ui
    return (bind(ctx, on_problem_change),
            [ui.problems_state, ui.problem_dd, ui.hm_source, ui.hm_source_b, ui.page_url],
            [ui.hm_source, ui.hm_text, ui.hm_source_b, ui.hm_attr_plot, ui.hm_attr_table, ui.hm_link])


def score_io(ctx: AppContext) -> tuple[list, list]:
    """(inputs, outputs) of the scoring handlers (on_score_text, maybe_score; gr.Progress comes between the two
    groups of inputs, as in their signatures)."""
    ui = ctx.ui
    return ([ui.problems_state, ui.problem_dd, ui.hm_source, ui.hm_text, ui.hm_state, ui.teacher_box,
             ui.student_box, ui.hm_metric, ui.hm_limit, ui.sol_mode, ui.hm_same_scale, ui.hm_source_b],
            [ui.hm_state, ui.hm_breakdown, ui.hm_expl, ui.hm_sol])


def wire(ctx: AppContext) -> None:
    ui = ctx.ui
    on_pick_source_, on_rerender_ = bind(ctx, on_pick_source), bind(ctx, on_rerender)
    maybe_score_, on_score_text_ = bind(ctx, maybe_score), bind(ctx, on_score_text)
    hm_inputs, hm_outputs = score_io(ctx)
    link_io = (bind(ctx, on_link), [ui.page_url, ui.problem_dd, ui.hm_source], ui.hm_link)

    ui.hm_source.input(on_pick_source_, [ui.problems_state, ui.problem_dd, ui.hm_source], ui.hm_text).then(
        maybe_score_, hm_inputs, hm_outputs, **MODEL_QUEUE)
    ui.hm_source.change(*link_io, show_progress="hidden", queue=False)
    ui.problem_dd.change(*link_io, show_progress="hidden", queue=False)
    ui.hm_source_b.input(maybe_score_, hm_inputs, hm_outputs, **MODEL_QUEUE)
    ui.hm_tab.select(bind(ctx, on_open), [ui.problems_state, ui.problem_dd, ui.hm_source, ui.hm_text],
                     [ui.hm_source, ui.hm_text], show_progress="hidden").then(
        maybe_score_, hm_inputs, hm_outputs, **MODEL_QUEUE)
    ui.rescore_btn.click(on_score_text_, hm_inputs, hm_outputs, **MODEL_QUEUE)
    ui.reset_btn.click(on_pick_source_, [ui.problems_state, ui.problem_dd, ui.hm_source], ui.hm_text)
    ui.attr_btn.click(bind(ctx, on_attribute), [ui.problems_state, ui.problem_dd, ui.hm_source, ui.hm_text,
                                                ui.teacher_box, ui.student_box], [ui.hm_attr_plot, ui.hm_attr_table],
                      **MODEL_QUEUE)

    view_opts = [ui.hm_metric, ui.hm_limit, ui.sol_mode, ui.hm_same_scale]
    rerender_in, rerender_out = [ui.hm_state] + view_opts, [ui.hm_breakdown, ui.hm_expl, ui.hm_sol]
    for comp in (ui.hm_metric, ui.sol_mode, ui.hm_same_scale):
        comp.change(on_rerender_, rerender_in, rerender_out, show_progress="hidden")
    ui.hm_limit.change(on_rerender_, rerender_in, rerender_out, show_progress="hidden", trigger_mode="always_last")

    ui.export_hm_btn.click(bind(ctx, on_export_heatmap), [ui.problems_state, ui.hm_state] + view_opts, ui.hm_file)
