"""The Heatmap tab: one explanation of the selected problem scored token by token (KL or log-probs), the solution
tokens' log-probs, the reward breakdown against the previous score, editing and re-scoring, and the HTML export.

The tab's state (gr.State `hm_state`) holds the last score: pid, source, text, label, result, previous,
previous_label. Every handler takes the AppContext first, then the event's inputs (see context.bind).
"""

from __future__ import annotations

import html

import gradio as gr

from workbench import compare, viz
from workbench.errors import WorkbenchError

from .common import MODEL_QUEUE, _error_md, _find, _sources_of, _toast
from .context import AppContext, bind

HEATMAP_METRICS = [("KL per token (teacher − student)", "kl"), ("teacher log-prob", "teacher_logprob"),
                   ("student log-prob", "student_logprob")]


# ---------------------------------------------------------------------------------------------- rendering


def heatmap_views(st, metric, limit, sol_mode):
    """(breakdown, explanation heatmap, solution heatmap) HTML from the heatmap state."""
    if not st or not st.get("result"):
        empty = "<p style='color:#666'>Pick an explanation (or type one) and press <b>Score</b>.</p>"
        return empty, "", ""
    r = compare.result_from_dict(st["result"])
    prev = compare.result_from_dict(st["previous"]) if st.get("previous") else None
    if r.error:
        return _error_md(f"could not score this text: {r.error}"), "", ""
    title = f"{st.get('label', 'explanation')} · problem {st.get('pid')}"
    changed = viz.changed_tokens(r.explanation_tokens, prev.explanation_tokens) if prev else None
    expl = viz.render_heatmap(r.explanation_tokens, metric or "kl", limit=limit or None, title=title,
                              elem_id="wbhm-expl", changed=changed)
    sol = None
    if sol_mode == "delta_logprob" and prev is not None:
        d = viz.delta_tokens(r.solution_tokens, prev.solution_tokens)
        if d is not None:
            sol = viz.render_heatmap(d, "delta_logprob", title="Solution tokens · change of student log-prob "
                                     "since the previous score", elem_id="wbhm-sol")
    if sol is None:
        sol = viz.render_heatmap(r.solution_tokens, "logprob", title="Solution tokens · student log-prob after "
                                 "reading the explanation", elem_id="wbhm-sol")
    note = "" if prev is None else (f" · previous: {st.get('previous_label', 'previous score')}; tokens that "
                                    "differ from it are underlined")
    breakdown = viz.render_breakdown(compare.reward_breakdown(r, prev), title="Reward breakdown" + note)
    return breakdown, expl, sol


# ---------------------------------------------------------------------------------------------- handlers


def hm_choices(ctx: AppContext, problems, pid, current=None):
    """Sources of the selected problem for the heatmap picker, and the text of the picked one."""
    p = _find(problems, pid)
    names = _sources_of(p)
    pick = current if current in names else (names[0] if names else None)
    return (gr.update(choices=[(compare.source_label(s), s) for s in names], value=pick),
            p["sources"].get(pick, "") if p and pick else "")


def on_pick_source(ctx: AppContext, problems, pid, source):
    p = _find(problems, pid)
    return p["sources"].get(source, "") if p and source else ""


def on_score_text(ctx: AppContext, problems, pid, source, text, st, teacher_name, student_name, metric, limit_v, mode,
                  progress=gr.Progress(track_tqdm=True)):  # noqa: B008
    p = _find(problems, pid)
    if p is None:
        raise gr.Error("select a problem in the Compare tab first")
    if not (text or "").strip():
        raise gr.Error("the explanation text is empty")
    original = p["sources"].get(source)
    if text == original and source in p.get("completions", {}):
        item = compare.score_item(p, source)  # the raw completion: a missing end tag is penalised
    else:
        item = {"id": f"{pid}:{source}", "question": p["question"], "solution": p["solution"], "explanation": text}
    progress(0, desc=f"scoring with {student_name}")
    try:
        (result,) = ctx.models.score(teacher_name, student_name, [item], progress=True)
    except WorkbenchError as exc:
        raise gr.Error(_toast(exc), duration=None) from None
    if st and st.get("pid") == pid and st.get("result") and st.get("text") != text:
        previous, previous_label = st["result"], st.get("label")
    elif st and st.get("pid") == pid and st.get("text") == text:
        previous, previous_label = st.get("previous"), st.get("previous_label")
    else:
        previous, previous_label = None, None
    label = compare.source_label(source) + ("" if text == original else " (edited)")
    new = {"pid": pid, "source": source, "text": text, "label": label, "result": result.to_dict()
           if result.error is None else {"error": result.error}, "previous": previous,
           "previous_label": previous_label}
    return (new, *heatmap_views(new, metric, limit_v, mode))


def maybe_score(ctx: AppContext, problems, pid, source, text, st, teacher_name, student_name, metric, limit_v, mode,
                progress=gr.Progress(track_tqdm=True)):  # noqa: B008
    """Score on opening the tab or picking a source, unless this very text is already shown."""
    if not text or (st and st.get("pid") == pid and st.get("text") == text and st.get("result")):
        return (st, *heatmap_views(st, metric, limit_v, mode))
    return on_score_text(ctx, problems, pid, source, text, st, teacher_name, student_name, metric, limit_v, mode,
                         progress)


def on_rerender(ctx: AppContext, st, metric, limit_v, mode):
    return heatmap_views(st, metric, limit_v, mode)


def on_export_heatmap(ctx: AppContext, problems, st, metric, limit_v, mode):
    if not st or not st.get("result"):
        raise gr.Error("score an explanation first")
    breakdown, expl, sol = heatmap_views(st, metric, limit_v, mode)
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
    """The tab's components (inside gr.Tabs), added to ctx.ui."""
    ui = ctx.ui
    p0 = _find(ctx.problems, ctx.problems[0]["id"] if ctx.problems else None)
    init_sources = [(compare.source_label(s), s) for s in _sources_of(p0)]
    with gr.Tab("Heatmap", id="heatmap", elem_id="wb-tab-heatmap") as ui.hm_tab:
        with gr.Row():
            ui.hm_source = gr.Dropdown(init_sources, value=init_sources[0][1] if init_sources else None,
                                       label="Explanation of the selected problem", scale=2, elem_id="wb-hm-source")
            ui.hm_metric = gr.Radio(HEATMAP_METRICS, value="kl", label="Colour explanation tokens by", scale=3,
                                    elem_id="wb-hm-metric")
            ui.hm_limit = gr.Number(value=0, label="scale limit in nats (0 = auto)", scale=1, minimum=0)
            ui.sol_mode = gr.Radio([("student log-prob", "logprob"), ("change since previous score", "delta_logprob")],
                                   value="logprob", label="Colour solution tokens by", scale=2)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                ui.hm_text = gr.Textbox(label="Explanation text: edit a sentence, then press Score to see what "
                                        "changed", lines=6, max_lines=14, elem_id="wb-hm-text")
                with gr.Row():
                    ui.rescore_btn = gr.Button("Score", variant="primary", elem_id="wb-hm-score")
                    ui.reset_btn = gr.Button("Reset text to the source")
                    ui.export_hm_btn = gr.Button("Export heatmap (HTML)", elem_id="wb-hm-export")
                ui.hm_file = gr.File(label="Heatmap export", interactive=False, visible=False,
                                     elem_id="wb-hm-file")
            with gr.Column(scale=2):
                ui.hm_breakdown = gr.HTML("", elem_id="wb-hm-breakdown", js_on_load=None)
        ui.hm_expl = gr.HTML("", elem_id="wb-hm-expl", js_on_load=viz.HEATMAP_JS)
        ui.hm_sol = gr.HTML("", elem_id="wb-hm-sol", js_on_load=viz.HEATMAP_JS)


def picker_sync(ctx: AppContext) -> tuple:
    """(fn, inputs, outputs) of the event that refreshes the picker and text after the problem or its sources
    changed: chain it with `.then(*picker_sync(ctx))`."""
    ui = ctx.ui
    return bind(ctx, hm_choices), [ui.problems_state, ui.problem_dd, ui.hm_source], [ui.hm_source, ui.hm_text]


def wire(ctx: AppContext) -> None:
    ui = ctx.ui
    on_pick_source_, on_rerender_ = bind(ctx, on_pick_source), bind(ctx, on_rerender)
    maybe_score_, on_score_text_ = bind(ctx, maybe_score), bind(ctx, on_score_text)
    hm_outputs = [ui.hm_state, ui.hm_breakdown, ui.hm_expl, ui.hm_sol]
    hm_inputs = [ui.problems_state, ui.problem_dd, ui.hm_source, ui.hm_text, ui.hm_state, ui.teacher_box,
                 ui.student_box, ui.hm_metric, ui.hm_limit, ui.sol_mode]

    ui.hm_source.input(on_pick_source_, [ui.problems_state, ui.problem_dd, ui.hm_source], ui.hm_text).then(
        maybe_score_, hm_inputs, hm_outputs, **MODEL_QUEUE)
    ui.hm_tab.select(maybe_score_, hm_inputs, hm_outputs, **MODEL_QUEUE)
    ui.rescore_btn.click(on_score_text_, hm_inputs, hm_outputs, **MODEL_QUEUE)
    ui.reset_btn.click(on_pick_source_, [ui.problems_state, ui.problem_dd, ui.hm_source], ui.hm_text)

    rerender_in, rerender_out = [ui.hm_state, ui.hm_metric, ui.hm_limit, ui.sol_mode], [ui.hm_breakdown, ui.hm_expl,
                                                                                         ui.hm_sol]
    for comp in (ui.hm_metric, ui.sol_mode):
        comp.change(on_rerender_, rerender_in, rerender_out, show_progress="hidden")
    ui.hm_limit.change(on_rerender_, rerender_in, rerender_out, show_progress="hidden", trigger_mode="always_last")

    ui.export_hm_btn.click(bind(ctx, on_export_heatmap), [ui.problems_state, ui.hm_state, ui.hm_metric, ui.hm_limit,
                                                          ui.sol_mode], ui.hm_file)
