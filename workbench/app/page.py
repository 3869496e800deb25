"""The page: `build_app` lays out the header, the status line, the data panel and the tabs, then wires each part.

Each part is a module with `layout(ctx)` (its components, added to ctx.ui) and `wire(ctx)` (its events, calling
module-level handlers bound to the context): data_panel, compare_tab, heatmap_tab, evaluate_tab.

A link can open the page on a problem, an explanation source and a tab: `?problem=ID&source=rlt&tab=heatmap`
(tab: compare, heatmap or evaluate), read by the page's load event (`on_page_load`); the Heatmap tab shows the
link to its current view.
"""

from __future__ import annotations

import gradio as gr

from workbench import compare
from workbench.models import DEFAULT_MODEL

from . import compare_tab, data_panel, evaluate_tab, heatmap_tab
from .common import MODEL_QUEUE, _error_md, _find, _sources_of, _status_md, _toast
from .context import AppContext, bind, make_context
from .theme import page_style


def _page_address(request: gr.Request | None) -> str:
    """The address of the page that sent the event (its Referer, without query or fragment), or ""."""
    if request is None:
        return ""
    try:
        ref = request.headers.get("referer") or ""
    except Exception:  # a request without headers (tests, the API)
        return ""
    return ref.split("#", 1)[0].split("?", 1)[0]


def on_page_load(ctx: AppContext, problems, pid, source, source_b, request: gr.Request):
    """Open the page where its link says: ?problem=ID selects the problem, &source=NAME the explanation of the
    Heatmap tab, &tab=compare|heatmap|evaluate the tab. Unknown values are ignored (with a notice). Returns the
    problem picker, the tabs, the heatmap's pickers, text and link, the page's address and the tab opened."""
    params = dict(getattr(request, "query_params", None) or {}) if request is not None else {}
    want_pid, want_source = params.get("problem"), params.get("source")
    tab = (params.get("tab") or "").strip().lower()
    problems = problems or []
    notes = []
    if want_pid is not None and any(p["id"] == want_pid for p in problems):
        pid = want_pid
    elif want_pid is not None:
        notes.append(f"no problem {want_pid!r} in the loaded data")
    p = _find(problems, pid)
    names = _sources_of(p)
    if want_source is not None and want_source in names:
        source = want_source
    elif want_source is not None:
        notes.append(f"problem {pid!r} has no explanation source {want_source!r}")
    if tab and tab not in heatmap_tab.TABS:
        notes.append(f"no tab {tab!r} (use {', '.join(heatmap_tab.TABS)})")
        tab = ""
    if notes:
        gr.Warning(_toast("The link asked for what is not here: " + "; ".join(notes)))
    base = _page_address(request)
    source_u, text = heatmap_tab.hm_choices(ctx, problems, pid, source)
    return (gr.update(value=pid) if p is not None else gr.skip(),
            gr.Tabs(selected=tab) if tab else gr.skip(),
            source_u, text, heatmap_tab.pair_choices(problems, pid, source_b),
            heatmap_tab.view_link(base, pid, source_u.get("value")), base, tab)


def open_heatmap(ctx: AppContext, start_tab, problems, pid, source, text, st, teacher_name, student_name, metric,
                 limit_v, mode, progress=gr.Progress(track_tqdm=True), same_scale=True, source_b=None):  # noqa: B008
    """After a link opened the Heatmap tab (a programmatic selection fires no `select`): score what it shows."""
    if start_tab != "heatmap":
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return heatmap_tab.maybe_score(ctx, problems, pid, source, text, st, teacher_name, student_name, metric, limit_v,
                                   mode, progress, same_scale, source_b)


def open_evaluate(ctx: AppContext, start_tab, *inputs):
    """After a link opened the Evaluate tab: read the jobs and start the poll, as selecting the tab does."""
    if start_tab != "evaluate":
        return [gr.skip()] * len(evaluate_tab.POLL_OUTPUTS)  # one per output (Gradio 6 refuses an empty dict)
    return evaluate_tab.ev_open(ctx, *inputs)


def build_app(problems: list[dict] | None = None, *, data_spec: str | None = None, teacher: str = DEFAULT_MODEL,
              student: str = DEFAULT_MODEL, models: compare.SharedModels | None = None, max_new_tokens: int = 256,
              limit: int | None = None, export_dir: str | None = None,
              allow_dirs: list[str] | None = None) -> gr.Blocks:
    """Build the Gradio UI. `problems` (normalised, see workbench.data) wins over `data_spec` ("demo", a file or
    a hub id); a bad data_spec shows its error in the app, which starts on the demo set instead.

    Files loaded from the UI (typed paths, uploads, the Evaluate tab's data) must lie in `allow_dirs` (default:
    the working directory), Gradio's upload folder, or be the `data_spec` file itself (see check_data_path)."""
    ctx = make_context(problems, data_spec=data_spec, teacher=teacher, student=student, models=models,
                       max_new_tokens=max_new_tokens, limit=limit, export_dir=export_dir, allow_dirs=allow_dirs)
    ui = ctx.ui
    run_note = ""
    if ctx.run_steps:  # a training run's completions log: which steps are shown (as data_panel.on_load says it)
        run_note = data_panel.run_note(ctx.run_steps, ctx.run_chosen)
    status_line = _status_md(ctx.problems, ctx.origin, teacher, student, run_note)  # the data line, without errors
    init_status = status_line + ("\n\n" + _error_md(ctx.start_error) if ctx.start_error else "")

    with gr.Blocks(title="RLT Workbench", fill_width=True) as demo:
        ui.demo = demo
        gr.HTML(page_style(), js_on_load=None, padding=False)
        gr.Markdown("## RLT Workbench — teacher explanations, R1 traces and the RLT reward, token by token")
        ui.status = gr.Markdown(init_status, elem_id="wb-status")
        ui.status_base = gr.State(status_line)
        ui.problems_state = gr.State(ctx.problems)
        ui.hm_state = gr.State({})
        ui.page_url = gr.State("")  # the page's address, for the links to a view (set when the page loads)
        ui.start_tab = gr.State("")  # the tab a link opened the page on

        data_panel.layout(ctx)
        with gr.Tabs(elem_id="wb-tabs") as ui.tabs:
            compare_tab.layout(ctx)
            heatmap_tab.layout(ctx)
            evaluate_tab.layout(ctx)

        compare_tab.wire(ctx)
        data_panel.wire(ctx)
        compare_tab.wire_export(ctx)
        heatmap_tab.wire(ctx)
        evaluate_tab.wire(ctx)
        wire_page(ctx, demo)
    demo.workbench_export_dir = ctx.export_dir  # type: ignore[attr-defined]
    demo.workbench_context = ctx  # type: ignore[attr-defined]
    return demo


def wire_page(ctx: AppContext, demo: gr.Blocks) -> None:
    """The page's load event: follow the link's problem, source and tab, then draw what they show."""
    ui = ctx.ui
    hm_inputs, hm_outputs = heatmap_tab.score_io(ctx)
    ev_inputs, ev_outputs = evaluate_tab.poll_io(ctx)
    loaded = demo.load(bind(ctx, on_page_load), [ui.problems_state, ui.problem_dd, ui.hm_source, ui.hm_source_b],
                       [ui.problem_dd, ui.tabs, ui.hm_source, ui.hm_text, ui.hm_source_b, ui.hm_link, ui.page_url,
                        ui.start_tab], show_progress="hidden")
    loaded = compare_tab.wire_load(ctx, loaded)  # the problem's columns, table and charts from the shared score cache
    loaded.then(bind(ctx, open_evaluate), [ui.start_tab] + ev_inputs, ev_outputs,
                show_progress="hidden")
    loaded.then(bind(ctx, open_heatmap), [ui.start_tab] + hm_inputs, hm_outputs, **MODEL_QUEUE)
