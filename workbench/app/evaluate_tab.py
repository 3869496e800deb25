"""The Evaluate tab: evaluation jobs run as processes (`workbench.eval.jobs`), shown by `workbench.eval.views`.

The tab runs no model in the app: it launches, cancels and resumes jobs, and polls their table (a gr.Timer that
runs only while the tab is selected: started when it is opened, stopped when another tab is; every EVAL_POLL_S
while a job is queued or running, every EVAL_IDLE_POLL_S otherwise), sending only what changed since the last poll
(gr.State `ev_sig`). The message under the form names a job and its state (`views.job_message_html`); the poll
keeps that state current, so a finished job never reads "queued". The polling handlers return a dict
component -> value, keyed by ctx.ui's components; every handler takes the AppContext first, then the event's
inputs (see context.bind).
"""

from __future__ import annotations

import html
import re

import gradio as gr

from workbench.errors import WorkbenchError
from workbench.eval import jobs as eval_jobs
from workbench.eval import views as eval_views
from workbench.sampling import ENGINES

from .context import AppContext, bind

EVAL_POLL_S = 2.0  # how often the Evaluate tab reads the job table while a job is queued or running
EVAL_IDLE_POLL_S = 10.0  # ... and while none is (a job launched elsewhere, e.g. from the command line, shows up)
_MSG_JOB = re.compile(r'data-ev-job="(\d+)" data-ev-state="([^"]*)" data-ev-action="([^"]*)"')


# ---------------------------------------------------------------------------------------------- handlers


def ev_refresh(ctx: AppContext, sig, job_id, show, idx, runs, metric, grader, msg=None):
    """Read the job table and send what changed since the last call (a dict of component -> value)."""
    try:
        return ev_read(ctx, sig, job_id, show, idx, runs, metric, grader, msg)
    except Exception as exc:  # a poll must never break the page: show what went wrong, poll again
        return {ctx.ui.ev_msg: eval_views.error_html(f"could not read the jobs: {type(exc).__name__}: {exc}")}


def poll_pace(jobs: list) -> float:
    """Seconds between two polls: EVAL_POLL_S while a job is queued or running, else EVAL_IDLE_POLL_S."""
    return EVAL_POLL_S if any(j.state in ("queued", "running") for j in jobs) else EVAL_IDLE_POLL_S


def current_message(msg, by_id: dict) -> str | None:
    """The message under the form again with its job's state now, when that state changed (else None)."""
    m = _MSG_JOB.search(msg or "")
    job = by_id.get(int(m.group(1))) if m else None
    if job is None or job.state == html.unescape(m.group(2)):
        return None
    return eval_views.job_message_html(job, html.unescape(m.group(3)))


def ev_read(ctx: AppContext, sig, job_id, show, idx, runs, metric, grader, msg=None):
    ui = ctx.ui
    sig, out = dict(sig or {}), {}

    def changed(key, value) -> bool:
        if sig.get(key) == value:
            return False
        sig[key] = value
        return True

    try:
        jobs = eval_jobs.list_jobs()
    except WorkbenchError as exc:
        return {ui.ev_msg: eval_views.error_html(str(exc))}
    by_id = {j.id: j for j in jobs}
    if changed("pace", poll_pace(jobs)):
        out[ui.ev_timer] = gr.Timer(value=sig["pace"])
    message = current_message(msg, by_id)
    if message is not None:
        out[ui.ev_msg] = message
    table = eval_views.jobs_table(jobs)
    if changed("table", table.to_json()):
        out[ui.ev_jobs] = table
    job_id = int(job_id) if job_id not in (None, "") else None
    if job_id not in by_id:
        job_id = jobs[0].id if jobs else None
    if changed("choices", [eval_views.job_choices(jobs), job_id]):
        out[ui.ev_job] = gr.update(choices=eval_views.job_choices(jobs), value=job_id)
    job = by_id.get(job_id)
    if changed("detail", eval_views.job_html(job, jobs)):
        out[ui.ev_detail] = sig["detail"]
    if changed("buttons", [job_id, eval_views.can_cancel(job), eval_views.can_resume(job)]):
        out[ui.ev_cancel] = gr.update(interactive=eval_views.can_cancel(job))
        out[ui.ev_resume] = gr.update(interactive=eval_views.can_resume(job))
    if changed("log", eval_jobs.read_log(job_id, 6000) if job else ""):
        out[ui.ev_log] = sig["log"]
    records = eval_views.job_records(job)
    if changed("summary", eval_views.summary_markdown(eval_views.job_summary(job), job, records)):
        out[ui.ev_summary] = sig["summary"]
    if changed("records", [job_id, len(records), show]):
        out[ui.ev_records] = eval_views.records_table(records, show)
        if sig.get("sample_job") != job_id or idx is None or idx >= len(records):
            idx = eval_views.step_record(records, None, show)
            sig["sample_job"] = job_id
            out[ui.ev_idx] = idx
            out[ui.ev_sample] = eval_views.record_html(records[idx] if idx is not None else None, idx,
                                                       len(records))
    choices = eval_views.run_choices(jobs)
    if changed("runs", choices):
        known = set(sig.get("done", []))
        done = eval_views.default_runs(jobs)
        valid = {j for _, j in choices}
        runs = [r for r in (runs or []) if r in valid] + [j for j in done if j not in known and j not in (runs or [])]
        sig["done"] = done
        out[ui.ev_runs] = gr.update(choices=choices, value=runs)
        fig, df = eval_views.comparison(jobs, runs, metric, grader)
        out[ui.ev_chart], out[ui.ev_runs_table] = fig, df
        out[ui.ev_metric] = gr.update(choices=eval_views.metric_choices(eval_views.run_summaries(jobs, runs)))
    out[ui.ev_sig] = sig
    return out


def ev_select(ctx: AppContext, sig, job_id, show, idx, runs, metric, grader, msg=None):
    """Show another job: forget what the job panel showed, so it is drawn afresh."""
    sig = {k: v for k, v in (sig or {}).items() if k in ("table", "runs", "done", "pace")}
    return ev_refresh(ctx, sig, job_id, show, None, runs, metric, grader, msg)


def ev_pick_row(ctx: AppContext, sig, show, runs, metric, grader, evt: gr.SelectData):
    row = evt.row_value or []
    if not row:
        return {}
    return ev_select(ctx, sig, row[0], show, None, runs, metric, grader)


def ev_launch_job(ctx: AppContext, model, bench, preset, limit, samples, max_new, temp, data_v, batch, engine):
    try:
        ctx.confined(data_v)
        job = eval_views.launch(model, bench, preset, limit, samples, max_new, temp, data_v, batch, engine)
        jobs = eval_jobs.list_jobs()
    except WorkbenchError as exc:
        return eval_views.error_html(str(exc)), gr.skip()
    return (eval_views.job_message_html(job, f"submitted: {job.title}"),
            gr.update(choices=eval_views.job_choices(jobs), value=job.id))


_DONE = {"cancel_job": "cancel requested", "resume_job": "resumed"}


def ev_act(action):
    """The handler of a job button: `action` (eval_jobs.cancel_job, resume_job) on the selected job id."""
    def act(job_id):
        if job_id in (None, ""):
            return eval_views.error_html("select a job first")
        try:
            job = action(int(job_id))
        except WorkbenchError as exc:
            return eval_views.error_html(str(exc))
        return eval_views.job_message_html(job, _DONE.get(getattr(action, "__name__", ""), "updated"))
    return act


def ev_show_sample(ctx: AppContext, job_id, show, idx, delta=0):
    try:
        job = eval_jobs.get_job(int(job_id)) if job_id not in (None, "") else None
    except WorkbenchError:
        job = None
    records = eval_views.job_records(job)
    if delta:
        idx = eval_views.step_record(records, idx, show, delta)
    idx = idx if idx is not None and 0 <= idx < len(records) else None
    return idx, eval_views.record_html(records[idx] if idx is not None else None, idx, len(records))


def ev_pick_record(ctx: AppContext, job_id, show, evt: gr.SelectData):
    row = evt.row_value or []
    return ev_show_sample(ctx, job_id, show, int(row[0]) if row else None)


def ev_filter(ctx: AppContext, sig, job_id, show, idx, runs, metric, grader, msg=None):
    sig = {k: v for k, v in (sig or {}).items() if k != "records"}
    sig.pop("sample_job", None)
    return ev_refresh(ctx, sig, job_id, show, None, runs, metric, grader, msg)


def ev_compare(ctx: AppContext, runs, metric, grader):
    try:
        jobs = eval_jobs.list_jobs()
        fig, df = eval_views.comparison(jobs, runs, metric, grader)
    except WorkbenchError as exc:
        return gr.skip(), gr.skip(), eval_views.error_html(str(exc))
    return fig, df, ""


def ev_open(ctx: AppContext, sig, job_id, show, idx, runs, metric, grader, msg=None):
    """Opening the tab reads the job table at once and starts the poll (nothing is read before), at the pace the
    jobs ask for (poll_pace)."""
    out = ev_refresh(ctx, sig, job_id, show, idx, runs, metric, grader, msg)
    pace = (out.get(ctx.ui.ev_sig) or sig or {}).get("pace", EVAL_POLL_S)
    out[ctx.ui.ev_timer] = gr.Timer(value=pace, active=True)
    return out


def ev_pause(ctx: AppContext):
    """Another tab was selected: stop the poll until the Evaluate tab is opened again."""
    return gr.Timer(active=False)


# ---------------------------------------------------------------------------------------------- layout and events


def layout(ctx: AppContext) -> None:
    """The tab's components (inside gr.Tabs), added to ctx.ui."""
    ui = ctx.ui
    with gr.Tab("Evaluate", id="evaluate", elem_id="wb-tab-evaluate") as ui.ev_tab:
        with gr.Row(equal_height=True):
            ui.ev_model = gr.Textbox(label="Model (alias, folder or hub id)", value=ctx.student, scale=2,
                                     elem_id="wb-ev-model")
            ui.ev_bench = gr.Dropdown(eval_views.benchmark_choices(), value="countdown", label="Benchmark",
                                      allow_custom_value=True, scale=2, elem_id="wb-ev-bench")
            ui.ev_preset = gr.Dropdown(eval_views.preset_choices(), value=eval_views.DEFAULT_PRESET,
                                       label="Preset", scale=2, elem_id="wb-ev-preset")
            ui.ev_limit = gr.Number(10, label="limit: problems (0 = all)", precision=0, minimum=0, scale=1,
                                    elem_id="wb-ev-limit")
            ui.ev_samples = gr.Number(0, label="samples per problem (0 = preset's)", precision=0, minimum=0,
                                      scale=1, elem_id="wb-ev-samples")
            ui.ev_max_new = gr.Number(0, label="max new tokens (0 = preset's)", precision=0, minimum=0,
                                      scale=1, elem_id="wb-ev-max-new")
            ui.ev_launch = gr.Button("Launch evaluation", variant="primary", scale=1, elem_id="wb-ev-launch")
        with gr.Accordion("More settings", open=False):
            with gr.Row():
                ui.ev_temp = gr.Textbox("", label="temperature (empty = preset's)", scale=1,
                                        elem_id="wb-ev-temp")
                ui.ev_data = gr.Textbox(label="Data instead of the benchmark's source: a .jsonl/.parquet file, "
                                        "a dataset folder or a hub id", scale=3, elem_id="wb-ev-data")
                ui.ev_batch = gr.Number(8, label="batch size", precision=0, minimum=1, scale=1,
                                        elem_id="wb-ev-batch")
                ui.ev_engine = gr.Dropdown(list(ENGINES), value="auto", scale=1, elem_id="wb-ev-engine",
                                           label="sampling engine (auto: vLLM when installed)")
        ui.ev_msg = gr.HTML("", elem_id="wb-ev-msg", js_on_load=None)
        ui.ev_jobs = gr.Dataframe(eval_views.jobs_table([]), interactive=False, max_height=260, wrap=False,
                                  elem_id="wb-ev-jobs", label="Jobs, newest first (click a row to open it; "
                                  "they run as processes and survive an app restart)")
        with gr.Row(equal_height=True):
            ui.ev_job = gr.Dropdown([], value=None, label="Job", scale=4, elem_id="wb-ev-job-pick")
            ui.ev_cancel = gr.Button("Cancel job", variant="stop", interactive=False, scale=1,
                                     elem_id="wb-ev-cancel")
            ui.ev_resume = gr.Button("Resume job", interactive=False, scale=1, elem_id="wb-ev-resume")
        ui.ev_detail = gr.HTML(eval_views.job_html(None), elem_id="wb-ev-job", js_on_load=None)
        with gr.Accordion("Job log", open=False):
            ui.ev_log = gr.Textbox("", lines=8, max_lines=16, show_label=False, interactive=False,
                                   autoscroll=True, elem_id="wb-ev-log")
        ui.ev_summary = gr.Markdown("", elem_id="wb-ev-summary")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                ui.ev_show = gr.Dropdown(eval_views.RECORD_FILTERS, value="all", label="Show",
                                         elem_id="wb-ev-show")
                ui.ev_records = gr.Dataframe(eval_views.records_table([]), interactive=False, max_height=420,
                                             wrap=False, elem_id="wb-ev-records",
                                             label="Samples (click one to open it)")
            with gr.Column(scale=6):
                with gr.Row():
                    ui.ev_prev = gr.Button("◀ previous sample", size="sm", elem_id="wb-ev-prev")
                    ui.ev_next = gr.Button("next sample ▶", size="sm", elem_id="wb-ev-next")
                ui.ev_sample = gr.HTML(eval_views.record_html(None), elem_id="wb-ev-sample", js_on_load=None)
        with gr.Accordion("Compare runs", open=True):
            with gr.Row():
                ui.ev_runs = gr.Dropdown([], value=[], multiselect=True, scale=4, elem_id="wb-ev-runs",
                                         label="Runs to compare (finished evaluations are added as they finish)")
                ui.ev_metric = gr.Dropdown(["pass@1"], value="pass@1", label="Metric", scale=1)
                ui.ev_grader = gr.Radio([("workbench (Math-Verify)", "workbench"), ("SkyThought", "skythought")],
                                        value="workbench", label="Grader", scale=1)
            ui.ev_chart = gr.Plot(label="Accuracy per benchmark and model (± 1 standard error)",
                                  elem_id="wb-ev-chart")
            ui.ev_runs_table = gr.Dataframe(interactive=False, wrap=False, elem_id="wb-ev-runs-table",
                                            label="Runs")
        ui.ev_timer = gr.Timer(EVAL_POLL_S, active=False)  # runs while the tab is selected (ev_open, ev_pause)
        ui.ev_sig = gr.State({})  # what the tab shows now, so a poll only sends what changed
        ui.ev_idx = gr.State(None)  # the index of the sample shown in the drill-down


POLL_INPUTS = ("ev_sig", "ev_job", "ev_show", "ev_idx", "ev_runs", "ev_metric", "ev_grader", "ev_msg")
POLL_OUTPUTS = ("ev_sig", "ev_msg", "ev_jobs", "ev_job", "ev_detail", "ev_cancel", "ev_resume", "ev_log", "ev_summary",
                "ev_records", "ev_idx", "ev_sample", "ev_runs", "ev_metric", "ev_chart", "ev_runs_table", "ev_timer")


def poll_io(ctx: AppContext) -> tuple[list, list]:
    """(inputs, outputs) of the polling handlers (ev_refresh, ev_select, ev_filter, ev_open)."""
    ui = ctx.ui
    return [getattr(ui, n) for n in POLL_INPUTS], [getattr(ui, n) for n in POLL_OUTPUTS]


def wire(ctx: AppContext) -> None:
    ui = ctx.ui
    ev_form = [ui.ev_model, ui.ev_bench, ui.ev_preset, ui.ev_limit, ui.ev_samples, ui.ev_max_new, ui.ev_temp,
               ui.ev_data, ui.ev_batch, ui.ev_engine]
    ev_inputs, ev_outputs = poll_io(ctx)
    ev_select_, ev_refresh_ = bind(ctx, ev_select), bind(ctx, ev_refresh)

    ui.ev_tab.select(bind(ctx, ev_open), ev_inputs, ev_outputs, show_progress="hidden")
    # the poll runs only while this tab is shown: every other tab of the page stops it when selected
    for tab in getattr(getattr(ui, "tabs", None), "children", []):
        if isinstance(tab, gr.Tab) and tab is not ui.ev_tab:
            tab.select(bind(ctx, ev_pause), None, ui.ev_timer, show_progress="hidden", queue=False)
    ui.ev_timer.tick(ev_refresh_, ev_inputs, ev_outputs, show_progress="hidden")
    ui.ev_job.input(ev_select_, ev_inputs, ev_outputs, show_progress="hidden")
    ui.ev_jobs.select(bind(ctx, ev_pick_row), [ui.ev_sig, ui.ev_show, ui.ev_runs, ui.ev_metric, ui.ev_grader],
                      ev_outputs, show_progress="hidden")
    ui.ev_launch.click(bind(ctx, ev_launch_job), ev_form, [ui.ev_msg, ui.ev_job]).then(
        ev_select_, ev_inputs, ev_outputs, show_progress="hidden")
    ui.ev_cancel.click(ev_act(eval_jobs.cancel_job), ui.ev_job, ui.ev_msg).then(ev_select_, ev_inputs, ev_outputs,
                                                                                show_progress="hidden")
    ui.ev_resume.click(ev_act(eval_jobs.resume_job), ui.ev_job, ui.ev_msg).then(ev_select_, ev_inputs, ev_outputs,
                                                                                show_progress="hidden")
    ui.ev_records.select(bind(ctx, ev_pick_record), [ui.ev_job, ui.ev_show], [ui.ev_idx, ui.ev_sample],
                         show_progress="hidden")
    ui.ev_prev.click(lambda j, s, i: ev_show_sample(ctx, j, s, i, -1), [ui.ev_job, ui.ev_show, ui.ev_idx],
                     [ui.ev_idx, ui.ev_sample], show_progress="hidden")
    ui.ev_next.click(lambda j, s, i: ev_show_sample(ctx, j, s, i, 1), [ui.ev_job, ui.ev_show, ui.ev_idx],
                     [ui.ev_idx, ui.ev_sample], show_progress="hidden")
    ui.ev_show.input(bind(ctx, ev_filter), ev_inputs, ev_outputs, show_progress="hidden")
    for comp in (ui.ev_runs, ui.ev_metric, ui.ev_grader):
        comp.input(bind(ctx, ev_compare), [ui.ev_runs, ui.ev_metric, ui.ev_grader],
                   [ui.ev_chart, ui.ev_runs_table, ui.ev_msg], show_progress="hidden")
