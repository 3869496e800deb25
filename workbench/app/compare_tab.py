"""The Compare tab: what the data is (a note), the problem table (search, filter, sort), one problem's
explanations side by side with their steps aligned, scoring (progress beside the buttons), streamed generations
with Stop (each a new column: generated, generated-2, ...), the dataset charts and the exports.

Rendering (table_df, charts, problem_view) is also what the data panel shows after a load, and what a (re)loaded
page shows from the shared score cache (on_view, on_filter and refresh_from_cache, chained after the page's load
event by `wire_load`);
every handler takes the AppContext first, then the event's inputs (see context.bind).
"""

from __future__ import annotations

import threading
import time

import gradio as gr

from workbench import compare, data, formats, viz
from workbench.errors import WorkbenchError
from workbench.formats import parse_completion
from workbench.generate import stream_explanation

from . import heatmap_tab
from .common import (
    LATEX,
    MAX_SOURCES,
    MODEL_QUEUE,
    _error_md,
    _find,
    _labels,
    _sources_of,
    _toast,
    generated_index,
    generated_name,
    letter_order,
    ordered_sources,
    reward_config_line,
)
from .context import AppContext, bind

CHART_METRICS = ["reward", "r_ss", "r_kl", "kl_mean", "tokens", "steps", "markers"]
# problem_view's outputs, in this order: the problem column, then per source column its visibility, header, body
N_VIEW = 1 + 3 * MAX_SOURCES


# ---------------------------------------------------------------------------------------------- rendering


def table_sources(problems) -> list[str]:
    """The sources the table has columns for (at most MAX_SOURCES, generated samples last)."""
    return ordered_sources(compare.source_names(problems))[:MAX_SOURCES]


def table_columns(columns, sources) -> list[str]:
    """The table's column order: id, then every source's reward (reachable on a narrow screen: id is pinned and
    the rewards come next), the question and topic, then the other metrics."""
    first = ["id"] + [compare.metric_column(s, "reward") for s in sources] + ["question", "topic"]
    first = [c for c in first if c in columns]
    return first + [c for c in columns if c not in first]


def table_df(ctx: AppContext, problems, teacher_name, student_name, query="", regex=False, fields=("question",),
             metric=None, lo=None, hi=None, sort_by=None, descending=True):
    sources = table_sources(problems)
    df = compare.problem_table(problems, ctx.tok(teacher_name), ctx.rewards_lookup(teacher_name, student_name),
                               sources=sources)
    df = df[table_columns(list(df.columns), sources)]
    fields = tuple("sources" if f == "explanations" else f for f in (fields or ["question"]))
    ids = compare.search_problems(problems, query, regex, fields)
    return compare.filter_table(df, ids, metric or None, lo, hi, sort_by or None, descending)


def metric_choices(problems):
    return [compare.metric_column(s, m) for s in table_sources(problems) for m in compare.METRIC_NAMES]


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
    labels = _labels(names, p)
    aligned = compare.align_steps({s: compare.split_steps(p["sources"][s]) for s in names}, threshold,
                                  order=letter_order(names))
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
            heads.append(viz.column_stats_markdown(labels[s], m, r) + column_notes(p, s))
            bodies.append(viz.render_steps_markdown(aligned[s], labels))
        else:
            vis.append(gr.update(visible=False))
            heads.append("")
            bodies.append("")
    return [problem_md] + vis + heads + bodies


def column_notes(p: dict, source: str) -> str:
    """Lines under a column's stats: the reward a training run recorded for it (cpu-teacher), and how a generated
    sample was made (teacher, temperature, seed) or that it was stopped."""
    meta = p.get("meta") or {}
    out = []
    recorded = (meta.get("recorded") or {}).get(source)
    logged = (meta.get("logged") or {}).get(source)
    if logged:  # a training run's completions log: what the run logged with this sample
        nums = " · ".join(f"{k} {viz.fmt(logged[k])}" for k in ("reward", "advantage", "r_ss", "r_kl")
                          if isinstance(logged.get(k), (int, float)))
        out.append(f"logged in training at step {logged.get('step', '?')}: {nums} (that step's policy as teacher, "
                   "the run's reward configuration)")
    elif isinstance(recorded, (int, float)):
        out.append(f"recorded in training: reward {viz.fmt(recorded)} (the trained teacher, the run's reward "
                   "configuration)")
    info = (meta.get("generated") or {}).get(source)
    if info:
        how = (f"sampled from `{viz.escape_markdown_text(str(info.get('teacher', '?'))).replace('`', '')}` at "
               f"temperature {info.get('temperature', '?')}, seed {info.get('seed', '?')}")
        out.append(how + (" · **stopped** before its end: the text is cut" if info.get("stopped") else ""))
    return "".join(f"\n\n{line}" for line in out)


def data_note(problems, student_name: str | None = None) -> str:
    """What the loaded texts are and what the reward student can judge: for the demo set (illustrative texts written
    for the project), for the workbench's own teacher before and after RL (real samples), and for any data."""
    recorded = [((p.get("meta") or {}).get("recorded") or {}) for p in problems]
    judge = ("**What the reward can judge.** The rewards come from a small reward student (by default the "
             "embedded 135M SmolLM2): it rewards wording it finds predictable, so fluent, self-checking prose can "
             "score well whether or not it teaches better; it is a noisy judge of teaching quality, best read over "
             "many problems, not one. The paper's claims are for a 7B teacher and 7B reward student.")
    if any(((p.get("meta") or {}).get("illustrative")) for p in problems):
        what = ("**About these texts.** The demo set's explanations and traces are illustrative: written for this "
                "project to show the two styles (RLT-style explanations, R1-style traces), not outputs of the "
                "paper's models. That the R1-style traces often score higher here is a fact about this small "
                "judge, not a result about RLT. For real generations, press the button on the right.")
    elif any((p.get("meta") or {}).get("logged") for p in problems):
        per_step: dict[int, list[float]] = {}
        for p in problems:
            for v in ((p.get("meta") or {}).get("logged") or {}).values():
                if isinstance(v.get("reward"), (int, float)):
                    per_step.setdefault(v["step"], []).append(v["reward"])
        nums = "; ".join(f"step {s}: mean logged reward {viz.fmt(sum(v) / len(v))} over the {len(v)} samples shown"
                         for s, v in sorted(per_step.items()))
        what = ("**About these texts.** Samples a training run logged (its completions log), a column per step and "
                f"sample. {nums}. A logged reward was computed with that step's policy as teacher and the run's "
                "reward configuration; a score here uses the app's teacher and reward configuration (load the run's "
                "folder in “Data and models” as the reward configuration to use its own).")
    elif any(r for r in recorded):
        mean = {}
        for s in ("before", "after"):
            vals = [r[s] for r in recorded if isinstance(r.get(s), (int, float))]
            if vals:
                mean[s] = (sum(vals) / len(vals), len(vals))
        nums = "; ".join(f"{s} RL: mean recorded reward {viz.fmt(m)} over {n} problems" for s, (m, n) in mean.items())
        what = ("**About these texts.** Real samples of the workbench's own 135M teacher before and after RL "
                "training (recipes/cpu/teacher_rlt.yaml, recorded on a 2-core CPU): the first held-out sample of each "
                f"problem, no picking. {nums}. The recorded rewards used the trained teacher and the run's reward "
                "configuration; a score here uses the app's teacher and reward configuration (load the run's "
                "recipe, results/cpu/teacher_rlt, in “Data and models” to use its configuration).")
    else:
        what = "**About these texts.** Loaded from your data."
    return what + "\n\n" + judge


def run_plot(ctx: AppContext, src, teacher_name=None):
    """(accordion update, figure) of a training run's completions log over all its logged steps; hidden for other
    data."""
    from workbench import runlog

    path = data.run_log_path(src)
    if path is None:
        return gr.update(visible=False), None
    try:
        log = runlog.cached_run_log(path, fallback_tokenizer=ctx.tok(teacher_name) if teacher_name else ctx.tokenizer0)
    except WorkbenchError:
        return gr.update(visible=False), None  # on_load has said what is wrong
    return gr.update(visible=True), viz.run_figure(log)


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


def on_view(ctx: AppContext, problems, pid, thr, teacher_name, student_name, request: gr.Request = None):
    """The problem's columns; remembers which problem this session shows (a running generation writes into the
    columns only while its own problem is shown)."""
    if request is not None:
        ctx.viewing[request.session_hash] = pid
    return problem_view(ctx, problems, pid, thr, teacher_name, student_name)


def refresh_from_cache(ctx: AppContext, problems, teacher_name, student_name, metric):
    """The charts with every reward already in the shared score cache, and the reward configuration line:
    [distribution, scatter, reward line]; the last step of what a (re)loaded page, or a new visitor, runs
    (`wire_load`: the problem's columns and the table come first, each from its own handler)."""
    dist, scatter = charts(ctx, problems, teacher_name, student_name, metric or "reward")
    return [dist, scatter, reward_config_line(ctx.reward_config, ctx.reward_source)]


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
    items = [compare.score_item(p, s) for p in problems for s in _sources_of(p)]
    progress(0, desc=f"loading {teacher_name} / {student_name}")
    try:
        results = ctx.models.score(teacher_name, student_name, items, progress=True)
    except WorkbenchError as exc:
        raise gr.Error(_toast(exc), duration=None) from None
    bad = sum(r.error is not None for r in results)
    return base if not bad else base + "\n\n" + _error_md(
        f"{bad} of {len(items)} explanations could not be scored (their reward stays empty in the table)")


def scoring_started(ctx: AppContext):
    """Before a score: both score buttons off (a second click would only queue the same work) and a line beside
    them, where the progress bar shows (show_progress_on)."""
    return gr.Button(interactive=False), gr.Button(interactive=False), "scoring… (the first score loads the models)"


def scoring_done(ctx: AppContext, problems, pid, teacher_name, student_name):
    """After a score, whether it worked or not: the buttons back, and how many explanations now have a reward."""
    lookup = ctx.rewards_lookup(teacher_name, student_name)

    def count(ps):
        pairs = [(p, s) for p in ps for s in _sources_of(p)]
        ok = sum(1 for p, s in pairs if getattr(lookup(p, s), "error", "none") is None)
        return ok, len(pairs)

    p = _find(problems, pid)
    here = count([p]) if p is not None else (0, 0)
    everywhere = count(problems)
    msg = (f"rewards: {here[0]} of {here[1]} explanations of this problem, {everywhere[0]} of {everywhere[1]} "
           "in the data (the status line above names any that failed)")
    return gr.Button(interactive=True), gr.Button(interactive=True), msg


def next_sample_name(p: dict) -> tuple[str, bool]:
    """The source a new generation writes into, and whether it replaces a sample: the next free generated-k while a
    column is free, else the newest generated sample (so a full problem still shows the new one)."""
    names = compare.source_names([p])
    gen = sorted((n for n in names if generated_index(n) is not None), key=generated_index)
    if len(names) < MAX_SOURCES:
        k = (generated_index(gen[-1]) + 1) if gen else 1
        return generated_name(k), False
    if gen:
        return gen[-1], True
    raise gr.Error(f"this problem already shows {MAX_SOURCES} explanations: load it with fewer sources to "
                   "generate one more")


def _mark_stopped(p: dict, name: str) -> None:
    info = ((p.get("meta") or {}).get("generated") or {}).get(name)
    if info is not None:
        info["stopped"] = True


def _drop_if_empty(p: dict, name: str) -> None:
    if not (p["sources"].get(name) or "").strip():
        p["sources"].pop(name, None)
        (p.get("completions") or {}).pop(name, None)
        ((p.get("meta") or {}).get("generated") or {}).pop(name, None)


def generate(ctx: AppContext, problems, pid, teacher_name, student_name, n_tokens, temp, thr, request: gr.Request):
    """Stream a new sample into a new column (generated, generated-2, ...): yields [problems] + problem_view's
    outputs. The sample belongs to the problem it started on: its text is written into that problem, and into the
    columns only while this session shows that problem (ctx.viewing). Prompt and tags follow the reward
    configuration; the k-th sample uses seed k - 1, so two samples differ (at a temperature > 0) and each can be
    made again."""
    p = _find(problems, pid)
    if p is None:
        raise gr.Error("select a problem first")
    key = request.session_hash if request is not None else "local"
    try:
        model, tokenizer = ctx.models.model(teacher_name), ctx.models.tokenizer(teacher_name)
    except WorkbenchError as exc:
        raise gr.Error(_toast(exc), duration=None) from None
    name, replaced = next_sample_name(p)
    if replaced:
        gr.Warning(_toast(f"every column is in use: the new sample replaces “{_labels([name], p)[name]}”"))
    config = ctx.reward_config
    tags = formats.get_tags(config.tag_style)
    seed = generated_index(name) - 1
    event = threading.Event()
    ctx.stop_events[key] = event
    ctx.streams[key] = (p, name)
    p["sources"][name] = ""
    p.setdefault("completions", {})[name] = ""
    p.setdefault("meta", {}).setdefault("generated", {})[name] = {
        "teacher": teacher_name, "temperature": float(temp), "seed": seed, "stopped": False}
    names = _sources_of(p)
    slot = names.index(name) if name in names else None
    label = _labels([name], p)[name] + f" · {teacher_name}"
    started = time.time()
    try:
        for text in stream_explanation(model, tokenizer, p["question"], p["solution"],
                                       max_new_tokens=int(n_tokens), temperature=float(temp), stop_event=event,
                                       seed=seed, system_prompt=config.teacher_system_prompt, tags=tags):
            parsed = parse_completion(text, tags).body.strip()
            p["sources"][name], p["completions"][name] = parsed, text
            out = [gr.skip()] * N_VIEW
            if slot is not None and ctx.viewing.get(key, pid) == pid:
                out[1 + slot] = gr.update(visible=True)
                out[1 + MAX_SOURCES + slot] = (f"### {viz.escape_markdown_html(label)}\n\nwriting… {len(text)} "
                                               f"characters, {time.time() - started:.0f} s")
                out[1 + 2 * MAX_SOURCES + slot] = viz.escape_markdown_html(parsed) + " ▌"
            yield [problems] + out
    except WorkbenchError as exc:
        raise gr.Error(_toast(exc)) from None
    finally:  # also when Stop cancels the request and this generator is closed where it waits
        if ctx.stop_events.get(key) is event:  # a later generation of this session has its own flag: keep it
            ctx.stop_events.pop(key, None)
        if ctx.streams.get(key, (None, None))[0] is p and ctx.streams[key][1] == name:
            ctx.streams.pop(key, None)
        if event.is_set():
            _mark_stopped(p, name)
        _drop_if_empty(p, name)
    if ctx.viewing.get(key, pid) != pid:
        yield [problems] + [gr.skip()] * N_VIEW
        return
    yield [problems] + problem_view(ctx, problems, pid, thr, teacher_name, student_name)


def stop(ctx: AppContext, request: gr.Request):
    """Stop this session's generation: its flag stops the model within one token, and its sample is marked as
    stopped, whichever problem the page shows now (a sample with no text yet is dropped when the stream ends)."""
    key = request.session_hash if request is not None else "local"
    ev = ctx.stop_events.get(key)
    if ev is not None:
        ev.set()
        stream = ctx.streams.get(key)
        if stream is not None:
            _mark_stopped(*stream)


def on_export(ctx: AppContext, problems, teacher_name, student_name, pid=None, thr=0.5):
    """Write the exports into the export folder and return their paths: every problem with its whole texts, metrics
    and rewards (compare.export_problems, CSV and JSONL), one row per explanation (compare.export_explanations,
    CSV and JSONL), and the problem shown, side by side (HTML page with aligned steps, and Markdown)."""
    tok, lookup = ctx.tok(teacher_name), ctx.rewards_lookup(teacher_name, student_name)
    sources = ordered_sources(compare.source_names(problems))
    wide = compare.export_problems(problems, tok, lookup, sources=sources)
    long = compare.export_explanations(problems, tok, lookup)
    files = [("rlt-problems", "", ".csv", lambda: compare.table_to_csv(wide)),
             ("rlt-problems", "", ".jsonl", lambda: compare.table_to_jsonl(wide)),
             ("rlt-explanations", "", ".csv", lambda: compare.table_to_csv(long)),
             ("rlt-explanations", "", ".jsonl", lambda: compare.table_to_jsonl(long))]
    p = _find(problems, pid)
    if p is not None:
        shown = _sources_of(p)
        labels = _labels(shown, p)
        files += [("rlt-problem", str(p["id"]), ".html",
                   lambda: compare.side_by_side_html(p, shown, labels=labels, rewards=lookup, tokenizer=tok,
                                                     threshold=float(thr or 0.5))),
                  ("rlt-problem", str(p["id"]), ".md",
                   lambda: compare.side_by_side_markdown(p, shown, labels=labels, rewards=lookup, tokenizer=tok))]
    paths = []
    try:  # a problem id is only a hint for the name: `a/b` or `../x` becomes a_b, x (viz.export_path)
        for prefix, name, suffix, text in files:
            path = viz.export_path(ctx.export_dir, prefix, name, suffix)
            path.write_text(text(), encoding="utf-8")
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
        with gr.Row(equal_height=False):
            ui.data_note = gr.Markdown(data_note(problems, student), elem_id="wb-data-note", scale=4)
            ui.teacher_btn = gr.Button("Load the workbench's own teacher before and after RL training (recorded "
                                       "on a 2-core CPU)", scale=1, min_width=200, size="sm",
                                       elem_id="wb-load-cpu-teacher")
        ui.step_dd = gr.Dropdown(ctx.run_steps or [], value=ctx.run_chosen or [], multiselect=True,
                                 visible=bool(ctx.run_steps), elem_id="wb-steps",
                                 label="Training steps (the run's completions log): their samples, a column per step "
                                       "and sample")
        with gr.Accordion("The run over training: mean logged reward, r_ss, r_kl and length per logged step",
                          open=False, visible=bool(ctx.run_steps)) as ui.run_acc:
            ui.run_plot = gr.Plot(run_plot(ctx, ctx.data_spec)[1] if ctx.run_steps else None, elem_id="wb-run-plot",
                                  show_label=False)
        with gr.Row():
            ui.search = gr.Textbox(label="Search", placeholder="text, or a regular expression", scale=3,
                                   elem_id="wb-search")
            ui.regex = gr.Checkbox(label="regex", value=False, scale=0, min_width=80)
            ui.search_in = gr.Dropdown(["question", "solution", "explanations"], value=["question"],
                                       multiselect=True, label="search in", scale=2)
        with gr.Row():  # a row of its own: at 1024 px one row cut the last box off
            ui.metric_dd = gr.Dropdown(metric_choices(problems), value=None, label="filter by metric", scale=2)
            ui.lo = gr.Textbox(label="min", placeholder="any", scale=1, min_width=80)
            ui.hi = gr.Textbox(label="max", placeholder="any", scale=1, min_width=80)
            ui.sort_dd = gr.Dropdown(["id"] + metric_choices(problems), value=None, label="sort by", scale=2)
            ui.desc = gr.Checkbox(label="descending", value=True, scale=0, min_width=130)
        ui.filter_msg = gr.Markdown("", elem_id="wb-filter-msg")
        ui.table = gr.Dataframe(init_df, interactive=False, max_height=300, elem_id="wb-table",
                                label="Problems (click a row to open it)", wrap=False, pinned_columns=1)
        with gr.Row():
            ui.problem_dd = gr.Dropdown([p["id"] for p in problems], value=first, label="Problem",
                                        elem_id="wb-problem", scale=2)
            ui.threshold = gr.Slider(0.2, 0.95, value=0.5, step=0.05, scale=2, min_width=220,
                                     label="step similarity threshold (cosine of content words)")
            ui.score_btn = gr.Button("Score these columns", elem_id="wb-score-cols", scale=1, min_width=120)
            ui.score_all_btn = gr.Button("Score all problems", scale=1, elem_id="wb-score-all", min_width=120)
            ui.gen_btn = gr.Button("Generate explanation", variant="primary", scale=1, elem_id="wb-generate",
                                   min_width=120)
            ui.stop_btn = gr.Button("Stop", variant="stop", scale=0, min_width=80, elem_id="wb-stop")
        ui.score_msg = gr.Markdown("", elem_id="wb-score-msg", min_height=0)
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
            gr.Markdown("Every problem with its whole texts, metrics and rewards (CSV + JSONL), one row per "
                        "explanation (CSV + JSONL), and the problem shown, side by side (HTML page + Markdown).")
            ui.export_btn = gr.Button("Export problems, explanations and this problem side by side",
                                      elem_id="wb-export")
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
    # .change, not .release: a value typed into the slider's number box fires no release
    ui.threshold.change(on_view_, view_in, view_out, show_progress="hidden", trigger_mode="always_last")

    ui.chart_metric.change(on_charts_, *chart_io(ui))

    # -- scoring --------------------------------------------------------------------------------------------------

    # Both buttons are off while a score runs; its progress shows on the line below them (show_progress_on), its
    # errors in the status line; `.then` runs whether the score worked or raised, so the buttons always come back.
    buttons = [ui.score_btn, ui.score_all_btn]
    started_, done_ = bind(ctx, scoring_started), bind(ctx, scoring_done)
    done_io = ([ui.problems_state, ui.problem_dd, ui.teacher_box, ui.student_box], buttons + [ui.score_msg])
    for btn, fn, inputs in (
            (ui.score_btn, score_problem, [ui.problems_state, ui.problem_dd, ui.teacher_box, ui.student_box,
                                           ui.status_base]),
            (ui.score_all_btn, score_everything, [ui.problems_state, ui.teacher_box, ui.student_box, ui.status_base])):
        btn.click(started_, None, buttons + [ui.score_msg], queue=False, show_progress="hidden").then(
            bind(ctx, fn), inputs, ui.status, show_progress_on=[ui.score_msg], **MODEL_QUEUE).then(
            done_, *done_io, show_progress="hidden").then(
            on_view_, view_in, view_out).then(on_filter_, filter_in, [ui.table, ui.filter_msg]).then(
            on_charts_, *chart_io(ui))

    # -- generation: each streamed into a new column (generated, generated-2, ...), cancellable ---------------------

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
    ui.export_btn.click(bind(ctx, on_export), [ui.problems_state, ui.teacher_box, ui.student_box, ui.problem_dd,
                                               ui.threshold], ui.export_files)


def wire_load(ctx: AppContext, loaded):
    """Chain the refresh after the page's load event (`loaded`, what `demo.load(...)` returned; it may have set the
    problem from the page's link): every page load, a reload or a second visitor, fills the problem's columns, the
    table and the charts from the shared score cache, so scores made before show. Returns the chained event.

    Three steps, each reading its boxes when it starts, not one handler given them all at the load: on a busy
    machine a visitor types a search or clicks a row before the page's refresh answers, and a table or a problem
    read before that would undo it (CI caught a click on the first row of a search opening another problem)."""
    ui = ctx.ui
    hidden = {"show_progress": "hidden"}
    return (loaded.then(bind(ctx, on_view), view_inputs(ui), view_outputs(ui), **hidden)
            .then(bind(ctx, on_filter), filter_inputs(ui), [ui.table, ui.filter_msg], **hidden)
            .then(bind(ctx, refresh_from_cache), [ui.problems_state, ui.teacher_box, ui.student_box, ui.chart_metric],
                  [ui.dist_plot, ui.scatter_plot, ui.reward_line], **hidden))
