"""The Compare tab: the problem table (search, filter, sort), one problem's explanations side by side with their
steps aligned, scoring, a streamed generation with Stop, the dataset charts and the table export.

Rendering (table_df, charts, problem_view) is also what the data panel shows after a load; every handler takes
the AppContext first, then the event's inputs (see context.bind).
"""

from __future__ import annotations

import threading
import time

import gradio as gr

from workbench import compare, viz
from workbench.errors import WorkbenchError
from workbench.formats import parse_completion
from workbench.generate import stream_explanation

from . import heatmap_tab
from .common import LATEX, MAX_SOURCES, MODEL_QUEUE, _error_md, _find, _labels, _sources_of, _toast
from .context import AppContext, bind

CHART_METRICS = ["reward", "r_ss", "r_kl", "kl_mean", "tokens", "steps", "markers"]
# problem_view's outputs, in this order: the problem column, then per source column its visibility, header, body
N_VIEW = 1 + 3 * MAX_SOURCES


# ---------------------------------------------------------------------------------------------- rendering


def table_df(ctx: AppContext, problems, teacher_name, student_name, query="", regex=False, fields=("question",),
             metric=None, lo=None, hi=None, sort_by=None, descending=True):
    df = compare.problem_table(problems, ctx.tok(teacher_name), ctx.rewards_lookup(teacher_name, student_name),
                               sources=compare.source_names(problems)[:MAX_SOURCES])
    fields = tuple("sources" if f == "explanations" else f for f in (fields or ["question"]))
    ids = compare.search_problems(problems, query, regex, fields)
    return compare.filter_table(df, ids, metric or None, lo, hi, sort_by or None, descending)


def metric_choices(problems):
    return [compare.metric_column(s, m) for s in compare.source_names(problems)[:MAX_SOURCES]
            for m in compare.METRIC_NAMES]


def charts(ctx: AppContext, problems, teacher_name, student_name, metric):
    long = compare.long_table(problems, ctx.tok(teacher_name), ctx.rewards_lookup(teacher_name, student_name))
    labels = _labels(compare.source_names(problems))
    scored = "reward" in long and long["reward"].notna().any()
    shown = metric if (scored or metric not in ("reward", "r_ss", "r_kl", "kl_mean")) else "tokens"
    dist = viz.distribution_figure(long, shown, labels)
    if shown != metric:
        dist.update_layout(title=f"tokens by source (no {metric} yet: press “Score all problems”)")
    y = metric if metric not in ("tokens",) else "reward"
    return dist, viz.scatter_figure(long, "tokens", y if scored else "markers", labels)


def problem_view(ctx: AppContext, problems, pid, threshold, teacher_name, student_name):
    """Markdown of the problem column and (visible, header, body) of every source column."""
    p = _find(problems, pid)
    if p is None:
        return ["*No problem selected.*"] + [gr.update(visible=False)] * MAX_SOURCES + [""] * (2 * MAX_SOURCES)
    names = _sources_of(p)
    labels = _labels(names)
    aligned = compare.align_steps({s: compare.split_steps(p["sources"][s]) for s in names}, threshold)
    meta = p.get("meta", {})
    # topic, difficulty and id come from the data file: plain text, never HTML or Markdown links and images
    tags = " · ".join(f"{k}: {viz.escape_markdown_text(meta[k])}" for k in ("topic", "difficulty") if meta.get(k))
    problem_md = (f"### {viz.escape_markdown_text(p['id'])}\n\n{tags}\n\n#### Question\n\n{viz.escape_markdown_html(p['question'])}"
                  f"\n\n#### Reference solution\n\n{viz.escape_markdown_html(p['solution'])}")
    vis, heads, bodies = [], [], []
    for k in range(MAX_SOURCES):
        if k < len(names):
            s = names[k]
            m = compare.text_metrics(p["sources"][s], ctx.tok(teacher_name))
            r = ctx.models.cached(teacher_name, student_name, compare.score_item(p, s))
            vis.append(gr.update(visible=True))
            heads.append(viz.column_stats_markdown(labels[s], m, r))
            bodies.append(viz.render_steps_markdown(aligned[s], labels))
        else:
            vis.append(gr.update(visible=False))
            heads.append("")
            bodies.append("")
    return [problem_md] + vis + heads + bodies


# ---------------------------------------------------------------------------------------------- handlers


def on_filter(ctx: AppContext, problems, teacher_name, student_name, query, rx, fields, metric, lo_v, hi_v, sort_by,
              descending):
    try:
        bounds = []
        for name, v in (("min", lo_v), ("max", hi_v)):
            try:
                bounds.append(float(v) if v and str(v).strip() else None)
            except ValueError:
                raise WorkbenchError(f"{name} must be a number, got {v!r}") from None
        return table_df(ctx, problems, teacher_name, student_name, query, rx, fields, metric, *bounds,
                        sort_by, descending), ""
    except WorkbenchError as exc:
        return gr.skip(), _error_md(str(exc))


def on_select_row(ctx: AppContext, evt: gr.SelectData):
    row = evt.row_value or []
    return row[0] if row else gr.skip()


def on_view(ctx: AppContext, problems, pid, thr, teacher_name, student_name):
    return problem_view(ctx, problems, pid, thr, teacher_name, student_name)


def on_charts(ctx: AppContext, problems, teacher_name, student_name, metric):
    return charts(ctx, problems, teacher_name, student_name, metric)


def score_problem(ctx: AppContext, problems, pid, teacher_name, student_name, base,
                  progress=gr.Progress(track_tqdm=True)):  # noqa: B008
    p = _find(problems, pid)
    if p is None:
        raise gr.Error("select a problem first")
    items = [compare.score_item(p, s) for s in _sources_of(p)]
    progress(0, desc=f"loading {teacher_name} / {student_name}")
    try:
        results = ctx.models.score(teacher_name, student_name, items, progress=True)
    except WorkbenchError as exc:
        raise gr.Error(_toast(exc), duration=None) from None
    errors = [f"{it['id']}: {r.error}" for it, r in zip(items, results) if r.error]
    return base + "\n\n" + _error_md("; ".join(errors)) if errors else base


def score_everything(ctx: AppContext, problems, teacher_name, student_name, base,
                     progress=gr.Progress(track_tqdm=True)):  # noqa: B008
    items = [compare.score_item(p, s) for p in problems for s in compare.source_names([p])[:MAX_SOURCES]]
    progress(0, desc=f"loading {teacher_name} / {student_name}")
    try:
        results = ctx.models.score(teacher_name, student_name, items, progress=True)
    except WorkbenchError as exc:
        raise gr.Error(_toast(exc), duration=None) from None
    bad = sum(r.error is not None for r in results)
    return base if not bad else base + "\n\n" + _error_md(
        f"{bad} of {len(items)} explanations could not be scored (their reward stays empty in the table)")


def generate(ctx: AppContext, problems, pid, teacher_name, student_name, n_tokens, temp, thr, request: gr.Request):
    """Stream an explanation into the "generated" column: yields [problems] + problem_view's outputs."""
    p = _find(problems, pid)
    if p is None:
        raise gr.Error("select a problem first")
    key = request.session_hash if request is not None else "local"
    event = threading.Event()
    ctx.stop_events[key] = event
    try:
        model, tokenizer = ctx.models.model(teacher_name), ctx.models.tokenizer(teacher_name)
    except WorkbenchError as exc:
        raise gr.Error(_toast(exc), duration=None) from None
    p["sources"]["generated"] = ""
    p.setdefault("completions", {})["generated"] = ""
    slot = _sources_of(p).index("generated") if "generated" in _sources_of(p) else None
    label = compare.source_label("generated") + f" · {teacher_name}"
    started = time.time()
    try:
        for text in stream_explanation(model, tokenizer, p["question"], p["solution"],
                                       max_new_tokens=int(n_tokens), temperature=float(temp), stop_event=event):
            parsed = parse_completion(text).body.strip()
            p["sources"]["generated"], p["completions"]["generated"] = parsed, text
            if slot is None:
                continue
            out = [gr.skip()] * N_VIEW
            out[1 + slot] = gr.update(visible=True)
            out[1 + MAX_SOURCES + slot] = (f"### {label}\n\nwriting… {len(text)} characters, "
                                           f"{time.time() - started:.0f} s")
            out[1 + 2 * MAX_SOURCES + slot] = viz.escape_markdown_html(parsed) + " ▌"
            yield [problems] + out
    except WorkbenchError as exc:
        raise gr.Error(_toast(exc)) from None
    finally:
        ctx.stop_events.pop(key, None)
    if not p["sources"].get("generated", "").strip():
        p["sources"].pop("generated", None)
        p["completions"].pop("generated", None)
    yield [problems] + problem_view(ctx, problems, pid, thr, teacher_name, student_name)


def stop(ctx: AppContext, request: gr.Request):
    ev = ctx.stop_events.get(request.session_hash if request is not None else "local")
    if ev is not None:
        ev.set()


def on_export(ctx: AppContext, problems, teacher_name, student_name):
    df = compare.long_table(problems, ctx.tok(teacher_name), ctx.rewards_lookup(teacher_name, student_name))
    wide = table_df(ctx, problems, teacher_name, student_name)
    paths = []
    try:
        for prefix, suffix, text in (("rlt-problems", ".csv", compare.table_to_csv(wide)),
                                     ("rlt-explanations", ".csv", compare.table_to_csv(df)),
                                     ("rlt-explanations", ".jsonl", compare.table_to_jsonl(df))):
            path = viz.export_path(ctx.export_dir, prefix, "", suffix)
            path.write_text(text, encoding="utf-8")
            paths.append(str(path))
    except OSError as exc:
        raise gr.Error(_toast(f"could not write the export to {ctx.export_dir}: {exc}"), duration=None) from None
    return paths


# ---------------------------------------------------------------------------------------------- layout and events


def layout(ctx: AppContext) -> None:
    """The tab's components (inside gr.Tabs), added to ctx.ui."""
    ui, problems, teacher, student = ctx.ui, ctx.problems, ctx.teacher, ctx.student
    first = problems[0]["id"] if problems else None
    init_df = table_df(ctx, problems, teacher, student)
    init_view = problem_view(ctx, problems, first, 0.5, teacher, student)
    init_charts = charts(ctx, problems, teacher, student, "reward")
    n_init = len(_sources_of(_find(problems, first)))
    with gr.Tab("Compare", id="compare", elem_id="wb-tab-compare"):
        with gr.Row():
            ui.search = gr.Textbox(label="Search", placeholder="text, or a regular expression", scale=3,
                                   elem_id="wb-search")
            ui.regex = gr.Checkbox(label="regex", value=False, scale=0, min_width=80)
            ui.search_in = gr.Dropdown(["question", "solution", "explanations"], value=["question"],
                                       multiselect=True, label="search in", scale=2)
            ui.metric_dd = gr.Dropdown(metric_choices(problems), value=None, label="filter by metric", scale=2)
            ui.lo = gr.Textbox(label="min", placeholder="any", scale=1, min_width=80)
            ui.hi = gr.Textbox(label="max", placeholder="any", scale=1, min_width=80)
            ui.sort_dd = gr.Dropdown(["id"] + metric_choices(problems), value=None, label="sort by", scale=2)
            ui.desc = gr.Checkbox(label="descending", value=True, scale=0, min_width=100)
        ui.filter_msg = gr.Markdown("", elem_id="wb-filter-msg")
        ui.table = gr.Dataframe(init_df, interactive=False, max_height=300, elem_id="wb-table",
                                label="Problems (click a row to open it)", wrap=False, pinned_columns=1)
        with gr.Row():
            ui.problem_dd = gr.Dropdown([p["id"] for p in problems], value=first, label="Problem",
                                        elem_id="wb-problem", scale=2)
            ui.threshold = gr.Slider(0.2, 0.95, value=0.5, step=0.05, scale=2,
                                     label="step similarity threshold (cosine of content words)")
            ui.score_btn = gr.Button("Score these columns", elem_id="wb-score-cols", scale=1)
            ui.score_all_btn = gr.Button("Score all problems", scale=1, elem_id="wb-score-all")
            ui.gen_btn = gr.Button("Generate explanation", variant="primary", scale=1, elem_id="wb-generate")
            ui.stop_btn = gr.Button("Stop", variant="stop", scale=0, min_width=80, elem_id="wb-stop")
        with gr.Row(equal_height=False):
            with gr.Column(min_width=260, elem_classes=["wb-col"]):
                ui.problem_md = gr.Markdown(init_view[0], latex_delimiters=LATEX, elem_id="wb-col-problem",
                                            max_height=720)
            ui.cols, ui.heads, ui.bodies = [], [], []
            for k in range(MAX_SOURCES):
                with gr.Column(visible=k < n_init, min_width=260, elem_classes=["wb-col"],
                               elem_id=f"wb-col-{k}") as col:
                    ui.heads.append(gr.Markdown(init_view[1 + MAX_SOURCES + k], latex_delimiters=LATEX,
                                                elem_id=f"wb-col-{k}-head"))
                    ui.bodies.append(gr.Markdown(init_view[1 + 2 * MAX_SOURCES + k], latex_delimiters=LATEX,
                                                 max_height=720, elem_id=f"wb-col-{k}-body"))
                ui.cols.append(col)
        with gr.Accordion("Dataset charts", open=True):
            ui.chart_metric = gr.Dropdown(CHART_METRICS, value="reward", label="metric")
            with gr.Row():
                ui.dist_plot = gr.Plot(init_charts[0], label="distribution per source")
                ui.scatter_plot = gr.Plot(init_charts[1], label="tokens vs metric")
        with gr.Accordion("Export", open=False):
            ui.export_btn = gr.Button("Export problem table (CSV + JSONL)", elem_id="wb-export")
            ui.export_files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                      elem_id="wb-export-files")


def filter_inputs(ui) -> list:
    return [ui.problems_state, ui.teacher_box, ui.student_box, ui.search, ui.regex, ui.search_in, ui.metric_dd, ui.lo,
            ui.hi, ui.sort_dd, ui.desc]


def view_inputs(ui) -> list:
    return [ui.problems_state, ui.problem_dd, ui.threshold, ui.teacher_box, ui.student_box]


def view_outputs(ui) -> list:
    """problem_view's outputs, in its order (N_VIEW components)."""
    return [ui.problem_md] + ui.cols + ui.heads + ui.bodies


def chart_io(ui) -> tuple[list, list]:
    return [ui.problems_state, ui.teacher_box, ui.student_box, ui.chart_metric], [ui.dist_plot, ui.scatter_plot]


def wire(ctx: AppContext) -> None:
    """The tab's events: table, selection, columns, scoring, generation with Stop, export."""
    ui = ctx.ui
    on_filter_, on_view_, on_charts_ = bind(ctx, on_filter), bind(ctx, on_view), bind(ctx, on_charts)
    hm_sync = heatmap_tab.picker_sync(ctx)
    filter_in, view_in, view_out = filter_inputs(ui), view_inputs(ui), view_outputs(ui)

    for comp in (ui.search, ui.regex, ui.search_in, ui.metric_dd, ui.lo, ui.hi, ui.sort_dd, ui.desc):
        comp.change(on_filter_, filter_in, [ui.table, ui.filter_msg], show_progress="hidden",
                    trigger_mode="always_last")

    ui.table.select(bind(ctx, on_select_row), None, ui.problem_dd).then(on_view_, view_in, view_out).then(*hm_sync)
    ui.problem_dd.input(on_view_, view_in, view_out).then(*hm_sync)
    ui.threshold.release(on_view_, view_in, view_out)

    ui.chart_metric.change(on_charts_, *chart_io(ui))

    # -- scoring --------------------------------------------------------------------------------------------------

    ui.score_btn.click(bind(ctx, score_problem), [ui.problems_state, ui.problem_dd, ui.teacher_box, ui.student_box,
                                                  ui.status_base], ui.status, **MODEL_QUEUE).then(
        on_view_, view_in, view_out).then(on_filter_, filter_in, [ui.table, ui.filter_msg]).then(
        on_charts_, *chart_io(ui))
    ui.score_all_btn.click(bind(ctx, score_everything), [ui.problems_state, ui.teacher_box, ui.student_box,
                                                         ui.status_base], ui.status, **MODEL_QUEUE).then(
        on_view_, view_in, view_out).then(on_filter_, filter_in, [ui.table, ui.filter_msg]).then(
        on_charts_, *chart_io(ui))

    # -- generation: streamed into the "generated" column, cancellable --------------------------------------------

    gen_event = ui.gen_btn.click(bind(ctx, generate), [ui.problems_state, ui.problem_dd, ui.teacher_box,
                                                       ui.student_box, ui.max_new, ui.temperature, ui.threshold],
                                 [ui.problems_state] + view_out, **MODEL_QUEUE)
    gen_event.then(on_view_, view_in, view_out).then(*hm_sync)

    # The flag stops the model thread within one token; `cancels` ends the streaming request (or drops it while
    # it waits in the queue). The column keeps the text written so far: the state was updated at every yield.
    ui.stop_btn.click(bind(ctx, stop), None, None, cancels=[gen_event], queue=False).then(
        on_view_, view_in, view_out).then(*hm_sync)


def wire_export(ctx: AppContext) -> None:
    ui = ctx.ui
    ui.export_btn.click(bind(ctx, on_export), [ui.problems_state, ui.teacher_box, ui.student_box], ui.export_files)
