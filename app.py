"""RLT Workbench app: RLT explanations beside R1 traces, and per-token reward heatmaps.

    python app.py [--data PATH_OR_HUB_ID] [--teacher MODEL] [--student MODEL] [--host 127.0.0.1] [--port 7860]
                  [--auth USER:PASS | --no-auth] [--allow-dir DIR ...]
    workbench app ...                      (the same flags)

Exposure: on loopback (the default) no password is asked. A --host other than loopback, or --share, needs --auth
(or an explicit --no-auth, which prints a warning). Data files typed, uploaded or named in the Evaluate tab are read
only from the --allow-dir folders (default: the working directory), Gradio's upload folder, and the --data file.

`build_app()` lays out the UI and wires each control to one public function of the package: data loading
(`workbench.data`), text metrics, step alignment, tables and cached scoring (`workbench.compare`), heatmaps and
charts (`workbench.viz`), generation (`workbench.generate`), and evaluation jobs (`workbench.eval.jobs`, shown by
`workbench.eval.views`). No method logic lives here.

The Evaluate tab runs no model in the app: each evaluation is a job process recorded under $RLT_WORKBENCH_HOME,
which the tab polls (`gr.Timer`, from the first time it is opened), so jobs outlive the app and are listed again
after a restart.

Models load once per process and are shared by all sessions; every event that runs a model goes through one
queue slot (`concurrency_id="model"`), so concurrent users wait their turn instead of competing for memory.
"""

from __future__ import annotations

import os

# Before torch loads: OpenMP threads that spin while they wait slow CPU inference down badly when cores are shared.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import copy  # noqa: E402
import html  # noqa: E402
import ipaddress  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from workbench import compare, data, viz  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.eval import jobs as eval_jobs  # noqa: E402
from workbench.eval import views as eval_views  # noqa: E402
from workbench.formats import parse_completion  # noqa: E402
from workbench.generate import stream_explanation  # noqa: E402
from workbench.models import DEFAULT_MODEL  # noqa: E402
from workbench.sampling import ENGINES  # noqa: E402

MAX_SOURCES = 6  # explanation columns shown side by side
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "\\[", "right": "\\]", "display": True},
    {"left": "$", "right": "$", "display": False},
    {"left": "\\(", "right": "\\)", "display": False},
]
HEATMAP_METRICS = [("KL per token (teacher − student)", "kl"), ("teacher log-prob", "teacher_logprob"),
                   ("student log-prob", "student_logprob")]
CHART_METRICS = ["reward", "r_ss", "r_kl", "kl_mean", "tokens", "steps", "markers"]
MODEL_QUEUE = {"concurrency_limit": 1, "concurrency_id": "model"}
EVAL_POLL_S = 2.0  # how often the Evaluate tab reads the job table

APP_CSS = """
#wb-status .wb-error{background:#fdecea;border:1px solid #d55e00;border-radius:4px;padding:6px 10px;color:#611a15}
#wb-status{font-size:14px}
.wb-col{min-width:260px}
.wb-col .prose{font-size:14px}
"""


# ---------------------------------------------------------------------------------------------- helpers


def _error_md(message: str) -> str:
    return f'<div class="wb-error">⚠ <b>Error:</b> {html.escape(message)}</div>'


def _status_md(problems: list[dict], origin: str, teacher: str, student: str, note: str = "") -> str:
    counts = {s: sum(1 for p in problems if s in p["sources"]) for s in compare.source_names(problems)}
    srcs = ", ".join(f"{compare.source_label(s)} ({n})" for s, n in counts.items()) or "none"
    extra = f" · {note}" if note else ""
    return (f"**Data:** {len(problems)} problems from {html.escape(origin)} · explanation sources: {html.escape(srcs)}"
            f" · teacher `{teacher}` · student `{student}`{extra}")


def _find(problems: list[dict], pid: str | None) -> dict | None:
    for p in problems:
        if p["id"] == pid:
            return p
    return problems[0] if problems and pid is None else None


def _sources_of(problem: dict | None) -> list[str]:
    return compare.source_names([problem])[:MAX_SOURCES] if problem else []


def _labels(names) -> dict[str, str]:
    return {s: compare.source_label(s) for s in names}


def _toast(message) -> str:
    """Text for gr.Error / gr.Warning / gr.Info, which render their message as HTML: escaped, so a file's column
    names or a typed value are shown, never interpreted."""
    return html.escape(str(message))


def _parse_auth(spec: str | None):
    if not spec:
        return None
    user, sep, password = spec.partition(":")
    if not sep or not user or not password:
        raise WorkbenchError("--auth must be USER:PASS")
    return (user, password)


# ---------------------------------------------------------------------------------------------- exposure

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_loopback(host: str | None) -> bool:
    """True when `host` (the --host value) binds the loopback interface only: localhost, 127.x.x.x or ::1."""
    if host is None:
        host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    h = host.strip().strip("[]")
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def exposure_warning(args) -> str | None:
    """Check that an app reachable from other machines (--host other than loopback, or --share) asks for a password.

    Returns None when it is fine (loopback, or --auth given), a warning to print when the operator opted out with
    --no-auth, and raises WorkbenchError otherwise: without a password anyone who reaches the port can load data
    files from the allowed folders, run the models, and cancel or resume every evaluation job."""
    host, share = getattr(args, "host", "127.0.0.1"), bool(getattr(args, "share", False))
    if getattr(args, "auth", None) or (is_loopback(host) and not share):
        return None
    how = " and ".join(x for x in (None if is_loopback(host) else f"--host {host or repr(host)} (other machines)",
                                   "--share (a public gradio.live link)" if share else None) if x)
    risk = ("anyone who reaches it could load data files from the allowed folders, run the models and cancel or "
            "resume every evaluation job")
    if getattr(args, "no_auth", False):
        return f"warning: the app is exposed through {how} WITHOUT a password (--no-auth): {risk}"
    raise WorkbenchError(f"refusing to expose the app through {how} without a password: {risk}. Add --auth USER:PASS "
                         "(every visitor then logs in), or pass --no-auth to run it open anyway, on a network you trust")


def allowed_folders(allow_dirs: list[str] | None = None) -> list[Path]:
    """The folders data may be loaded from through the UI: the --allow-dir folders (default: the working
    directory), and always the folder Gradio keeps uploads in. Resolved, so symbolic links cannot lead out."""
    from gradio.utils import get_upload_folder

    dirs = []
    for d in ([os.getcwd()] if allow_dirs is None else allow_dirs):
        path = Path(os.path.expanduser(str(d))).resolve()
        if not path.is_dir():
            raise WorkbenchError(f"--allow-dir {d}: not a folder")
        dirs.append(path)
    dirs.append(Path(get_upload_folder()).resolve())
    return list(dict.fromkeys(dirs))


def check_data_path(spec: str | None, folders: list[Path], also: tuple[Path, ...] = ()) -> None:
    """Refuse (WorkbenchError) a data path typed or uploaded in the UI unless it lies in one of `folders` (after
    resolving `..`, `~` and symbolic links) or is one of the files in `also` (the operator's --data). "demo", an
    empty value and hub ids (owner/name that is no path here) are not files and pass."""
    text = (spec or "").strip()
    if text in ("", "demo"):
        return
    expanded = os.path.expanduser(text)
    if _HUB_ID.fullmatch(expanded) and not os.path.lexists(expanded):
        return
    real = Path(expanded).resolve()
    if real in also or any(real == f or real.is_relative_to(f) for f in folders):
        return
    raise WorkbenchError(f"{text}: not in a folder this app may read ({', '.join(map(str, folders))}); upload the "
                         "file instead, or ask whoever runs the app to start it with --allow-dir FOLDER")


# ---------------------------------------------------------------------------------------------- the app


def build_app(problems: list[dict] | None = None, *, data_spec: str | None = None, teacher: str = DEFAULT_MODEL,
              student: str = DEFAULT_MODEL, models: compare.SharedModels | None = None, max_new_tokens: int = 256,
              limit: int | None = None, export_dir: str | None = None,
              allow_dirs: list[str] | None = None) -> gr.Blocks:
    """Build the Gradio UI. `problems` (normalised, see workbench.data) wins over `data_spec` ("demo", a file or
    a hub id); a bad data_spec shows its error in the app, which starts on the demo set instead.

    Files loaded from the UI (typed paths, uploads, the Evaluate tab's data) must lie in `allow_dirs` (default:
    the working directory), Gradio's upload folder, or be the `data_spec` file itself (see check_data_path)."""
    models = models or compare.SharedModels()
    folders = allowed_folders(allow_dirs)
    operator_files = (Path(os.path.expanduser(data_spec.strip())).resolve(),) if (data_spec or "").strip() else ()

    def confined(spec):
        check_data_path(spec, folders, operator_files)

    export_dir = export_dir or tempfile.mkdtemp(prefix="rlt-workbench-")
    origin, start_error = data_spec or "the demo set", None
    if problems is None:
        try:
            loaded = data.load_problems_report(data_spec, limit)
            problems = loaded.items
            if loaded.skipped:
                start_error = loaded.note()
        except WorkbenchError as exc:
            start_error = str(exc)
            problems, origin = data.demo_problems(), "the demo set"
    try:
        tokenizer0 = models.tokenizer(teacher)
    except WorkbenchError as exc:
        tokenizer0 = None
        start_error = (start_error + "\n" if start_error else "") + str(exc)
    stop_events: dict[str, threading.Event] = {}

    def tok(teacher_name: str):
        try:
            return models.tokenizer(teacher_name)
        except WorkbenchError:
            return tokenizer0

    def rewards_lookup(teacher_name: str, student_name: str):
        return lambda p, s: models.cached(teacher_name, student_name, compare.score_item(p, s))

    # -- rendering (pure functions of the state) --------------------------------------------------------------

    def table_df(problems, teacher_name, student_name, query="", regex=False, fields=("question",), metric=None,
                 lo=None, hi=None, sort_by=None, descending=True):
        df = compare.problem_table(problems, tok(teacher_name), rewards_lookup(teacher_name, student_name),
                                   sources=compare.source_names(problems)[:MAX_SOURCES])
        fields = tuple("sources" if f == "explanations" else f for f in (fields or ["question"]))
        ids = compare.search_problems(problems, query, regex, fields)
        return compare.filter_table(df, ids, metric or None, lo, hi, sort_by or None, descending)

    def metric_choices(problems):
        return [compare.metric_column(s, m) for s in compare.source_names(problems)[:MAX_SOURCES]
                for m in compare.METRIC_NAMES]

    def charts(problems, teacher_name, student_name, metric):
        long = compare.long_table(problems, tok(teacher_name), rewards_lookup(teacher_name, student_name))
        labels = _labels(compare.source_names(problems))
        scored = "reward" in long and long["reward"].notna().any()
        shown = metric if (scored or metric not in ("reward", "r_ss", "r_kl", "kl_mean")) else "tokens"
        dist = viz.distribution_figure(long, shown, labels)
        if shown != metric:
            dist.update_layout(title=f"tokens by source (no {metric} yet: press “Score all problems”)")
        y = metric if metric not in ("tokens",) else "reward"
        return dist, viz.scatter_figure(long, "tokens", y if scored else "markers", labels)

    def problem_view(problems, pid, threshold, teacher_name, student_name):
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
                m = compare.text_metrics(p["sources"][s], tok(teacher_name))
                r = models.cached(teacher_name, student_name, compare.score_item(p, s))
                vis.append(gr.update(visible=True))
                heads.append(viz.column_stats_markdown(labels[s], m, r))
                bodies.append(viz.render_steps_markdown(aligned[s], labels))
            else:
                vis.append(gr.update(visible=False))
                heads.append("")
                bodies.append("")
        return [problem_md] + vis + heads + bodies

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

    # -- initial values ---------------------------------------------------------------------------------------

    first = problems[0]["id"] if problems else None
    init_df = table_df(problems, teacher, student)
    init_view = problem_view(problems, first, 0.5, teacher, student)
    init_charts = charts(problems, teacher, student, "reward")
    init_status = _status_md(problems, origin, teacher, student) + ("\n\n" + _error_md(start_error) if start_error else "")
    p0 = _find(problems, first)
    init_sources = [(compare.source_label(s), s) for s in _sources_of(p0)]

    with gr.Blocks(title="RLT Workbench", fill_width=True) as demo:
        gr.HTML(f"<style>{APP_CSS}{eval_views.EVAL_CSS}</style>", js_on_load=None, padding=False)
        gr.Markdown("## RLT Workbench — teacher explanations, R1 traces and the RLT reward, token by token")
        status = gr.Markdown(init_status, elem_id="wb-status")
        status_base = gr.State(_status_md(problems, origin, teacher, student))  # the data line, without errors
        problems_state = gr.State(problems)
        hm_state = gr.State({})

        with gr.Accordion("Data and models", open=False):
            with gr.Row():
                data_box = gr.Textbox(label="Problems: 'demo', a file path or a hub id", value=data_spec or "demo",
                                      scale=3)
                data_file = gr.File(label="…or upload a problem file (.jsonl .json .parquet .csv)",
                                    file_types=list(data.TABLE_SUFFIXES), scale=2, elem_id="wb-data-file", height=110)
                load_btn = gr.Button("Load problems", scale=1, elem_id="wb-load")
            with gr.Row():
                expl_file = gr.File(label="Teacher explanations: question + explanation (or raw completion)",
                                    file_types=list(data.TABLE_SUFFIXES), scale=3, elem_id="wb-expl-file", height=110)
                expl_name = gr.Textbox(label="Source name", placeholder="e.g. my-teacher (default: file name)", scale=1)
                join_btn = gr.Button("Add explanations", scale=1, elem_id="wb-join")
            with gr.Row():
                teacher_box = gr.Textbox(label="Teacher (alias, folder or hub id)", value=teacher)
                student_box = gr.Textbox(label="Student (alias, folder or hub id)", value=student)
                max_new = gr.Slider(16, 4096, value=max_new_tokens, step=16, label="max new tokens (generate)",
                                    elem_id="wb-max-new")
                temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="temperature (0 = greedy)")

        with gr.Tabs():
            # ================================================================================== Compare
            with gr.Tab("Compare", id="compare", elem_id="wb-tab-compare"):
                with gr.Row():
                    search = gr.Textbox(label="Search", placeholder="text, or a regular expression", scale=3,
                                        elem_id="wb-search")
                    regex = gr.Checkbox(label="regex", value=False, scale=0, min_width=80)
                    search_in = gr.Dropdown(["question", "solution", "explanations"], value=["question"],
                                            multiselect=True, label="search in", scale=2)
                    metric_dd = gr.Dropdown(metric_choices(problems), value=None, label="filter by metric", scale=2)
                    lo = gr.Textbox(label="min", placeholder="any", scale=1, min_width=80)
                    hi = gr.Textbox(label="max", placeholder="any", scale=1, min_width=80)
                    sort_dd = gr.Dropdown(["id"] + metric_choices(problems), value=None, label="sort by", scale=2)
                    desc = gr.Checkbox(label="descending", value=True, scale=0, min_width=100)
                filter_msg = gr.Markdown("", elem_id="wb-filter-msg")
                table = gr.Dataframe(init_df, interactive=False, max_height=300, elem_id="wb-table",
                                     label="Problems (click a row to open it)", wrap=False, pinned_columns=1)
                with gr.Row():
                    problem_dd = gr.Dropdown([p["id"] for p in problems], value=first, label="Problem",
                                             elem_id="wb-problem", scale=2)
                    threshold = gr.Slider(0.2, 0.95, value=0.5, step=0.05, scale=2,
                                          label="step similarity threshold (cosine of content words)")
                    score_btn = gr.Button("Score these columns", elem_id="wb-score-cols", scale=1)
                    score_all_btn = gr.Button("Score all problems", scale=1, elem_id="wb-score-all")
                    gen_btn = gr.Button("Generate explanation", variant="primary", scale=1, elem_id="wb-generate")
                    stop_btn = gr.Button("Stop", variant="stop", scale=0, min_width=80, elem_id="wb-stop")
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=260, elem_classes=["wb-col"]):
                        problem_md = gr.Markdown(init_view[0], latex_delimiters=LATEX, elem_id="wb-col-problem",
                                                 max_height=720)
                    cols, heads, bodies = [], [], []
                    for k in range(MAX_SOURCES):
                        with gr.Column(visible=k < len(init_sources), min_width=260, elem_classes=["wb-col"],
                                       elem_id=f"wb-col-{k}") as col:
                            heads.append(gr.Markdown(init_view[1 + MAX_SOURCES + k], latex_delimiters=LATEX,
                                                     elem_id=f"wb-col-{k}-head"))
                            bodies.append(gr.Markdown(init_view[1 + 2 * MAX_SOURCES + k], latex_delimiters=LATEX,
                                                      max_height=720, elem_id=f"wb-col-{k}-body"))
                        cols.append(col)
                with gr.Accordion("Dataset charts", open=True):
                    chart_metric = gr.Dropdown(CHART_METRICS, value="reward", label="metric")
                    with gr.Row():
                        dist_plot = gr.Plot(init_charts[0], label="distribution per source")
                        scatter_plot = gr.Plot(init_charts[1], label="tokens vs metric")
                with gr.Accordion("Export", open=False):
                    export_btn = gr.Button("Export problem table (CSV + JSONL)", elem_id="wb-export")
                    export_files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                           elem_id="wb-export-files")

            # ================================================================================== Heatmap
            with gr.Tab("Heatmap", id="heatmap", elem_id="wb-tab-heatmap") as hm_tab:
                with gr.Row():
                    hm_source = gr.Dropdown(init_sources, value=init_sources[0][1] if init_sources else None,
                                            label="Explanation of the selected problem", scale=2, elem_id="wb-hm-source")
                    hm_metric = gr.Radio(HEATMAP_METRICS, value="kl", label="Colour explanation tokens by", scale=3,
                                         elem_id="wb-hm-metric")
                    hm_limit = gr.Number(value=0, label="scale limit in nats (0 = auto)", scale=1, minimum=0)
                    sol_mode = gr.Radio([("student log-prob", "logprob"), ("change since previous score", "delta_logprob")],
                                        value="logprob", label="Colour solution tokens by", scale=2)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        hm_text = gr.Textbox(label="Explanation text: edit a sentence, then press Score to see what "
                                             "changed", lines=6, max_lines=14, elem_id="wb-hm-text")
                        with gr.Row():
                            rescore_btn = gr.Button("Score", variant="primary", elem_id="wb-hm-score")
                            reset_btn = gr.Button("Reset text to the source")
                            export_hm_btn = gr.Button("Export heatmap (HTML)", elem_id="wb-hm-export")
                        hm_file = gr.File(label="Heatmap export", interactive=False, visible=False,
                                          elem_id="wb-hm-file")
                    with gr.Column(scale=2):
                        hm_breakdown = gr.HTML("", elem_id="wb-hm-breakdown", js_on_load=None)
                hm_expl = gr.HTML("", elem_id="wb-hm-expl", js_on_load=viz.HEATMAP_JS)
                hm_sol = gr.HTML("", elem_id="wb-hm-sol", js_on_load=viz.HEATMAP_JS)

            # ================================================================================== Evaluate
            with gr.Tab("Evaluate", id="evaluate", elem_id="wb-tab-evaluate") as ev_tab:
                with gr.Row(equal_height=True):
                    ev_model = gr.Textbox(label="Model (alias, folder or hub id)", value=student, scale=2,
                                          elem_id="wb-ev-model")
                    ev_bench = gr.Dropdown(eval_views.benchmark_choices(), value="countdown", label="Benchmark",
                                           allow_custom_value=True, scale=2, elem_id="wb-ev-bench")
                    ev_preset = gr.Dropdown(eval_views.preset_choices(), value=eval_views.DEFAULT_PRESET,
                                            label="Preset", scale=2, elem_id="wb-ev-preset")
                    ev_limit = gr.Number(10, label="limit: problems (0 = all)", precision=0, minimum=0, scale=1,
                                         elem_id="wb-ev-limit")
                    ev_samples = gr.Number(0, label="samples per problem (0 = preset's)", precision=0, minimum=0,
                                           scale=1, elem_id="wb-ev-samples")
                    ev_max_new = gr.Number(0, label="max new tokens (0 = preset's)", precision=0, minimum=0,
                                           scale=1, elem_id="wb-ev-max-new")
                    ev_launch = gr.Button("Launch evaluation", variant="primary", scale=1, elem_id="wb-ev-launch")
                with gr.Accordion("More settings", open=False):
                    with gr.Row():
                        ev_temp = gr.Textbox("", label="temperature (empty = preset's)", scale=1,
                                             elem_id="wb-ev-temp")
                        ev_data = gr.Textbox(label="Data instead of the benchmark's source: a .jsonl/.parquet file, "
                                             "a dataset folder or a hub id", scale=3, elem_id="wb-ev-data")
                        ev_batch = gr.Number(8, label="batch size", precision=0, minimum=1, scale=1,
                                             elem_id="wb-ev-batch")
                        ev_engine = gr.Dropdown(list(ENGINES), value="auto", scale=1, elem_id="wb-ev-engine",
                                                label="sampling engine (auto: vLLM when installed)")
                ev_msg = gr.HTML("", elem_id="wb-ev-msg", js_on_load=None)
                ev_jobs = gr.Dataframe(eval_views.jobs_table([]), interactive=False, max_height=260, wrap=False,
                                       elem_id="wb-ev-jobs", label="Jobs, newest first (click a row to open it; "
                                       "they run as processes and survive an app restart)")
                with gr.Row(equal_height=True):
                    ev_job = gr.Dropdown([], value=None, label="Job", scale=4, elem_id="wb-ev-job-pick")
                    ev_cancel = gr.Button("Cancel job", variant="stop", interactive=False, scale=1,
                                          elem_id="wb-ev-cancel")
                    ev_resume = gr.Button("Resume job", interactive=False, scale=1, elem_id="wb-ev-resume")
                ev_detail = gr.HTML(eval_views.job_html(None), elem_id="wb-ev-job", js_on_load=None)
                with gr.Accordion("Job log", open=False):
                    ev_log = gr.Textbox("", lines=8, max_lines=16, show_label=False, interactive=False,
                                        autoscroll=True, elem_id="wb-ev-log")
                ev_summary = gr.Markdown("", elem_id="wb-ev-summary")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5):
                        ev_show = gr.Dropdown(eval_views.RECORD_FILTERS, value="all", label="Show",
                                              elem_id="wb-ev-show")
                        ev_records = gr.Dataframe(eval_views.records_table([]), interactive=False, max_height=420,
                                                  wrap=False, elem_id="wb-ev-records",
                                                  label="Samples (click one to open it)")
                    with gr.Column(scale=6):
                        with gr.Row():
                            ev_prev = gr.Button("◀ previous sample", size="sm", elem_id="wb-ev-prev")
                            ev_next = gr.Button("next sample ▶", size="sm", elem_id="wb-ev-next")
                        ev_sample = gr.HTML(eval_views.record_html(None), elem_id="wb-ev-sample", js_on_load=None)
                with gr.Accordion("Compare runs", open=True):
                    with gr.Row():
                        ev_runs = gr.Dropdown([], value=[], multiselect=True, scale=4, elem_id="wb-ev-runs",
                                              label="Runs to compare (finished evaluations are added as they finish)")
                        ev_metric = gr.Dropdown(["pass@1"], value="pass@1", label="Metric", scale=1)
                        ev_grader = gr.Radio([("workbench (Math-Verify)", "workbench"), ("SkyThought", "skythought")],
                                             value="workbench", label="Grader", scale=1)
                    ev_chart = gr.Plot(label="Accuracy per benchmark and model (± 1 standard error)",
                                       elem_id="wb-ev-chart")
                    ev_runs_table = gr.Dataframe(interactive=False, wrap=False, elem_id="wb-ev-runs-table",
                                                 label="Runs")
                ev_timer = gr.Timer(EVAL_POLL_S, active=False)  # started when the tab is first opened
                ev_sig = gr.State({})  # what the tab shows now, so a poll only sends what changed
                ev_idx = gr.State(None)  # the index of the sample shown in the drill-down

        filter_inputs = [problems_state, teacher_box, student_box, search, regex, search_in, metric_dd, lo, hi,
                         sort_dd, desc]
        view_inputs = [problems_state, problem_dd, threshold, teacher_box, student_box]
        view_outputs = [problem_md] + cols + heads + bodies

        # -- compare: table, selection, columns -------------------------------------------------------------

        def on_filter(problems, teacher_name, student_name, query, rx, fields, metric, lo_v, hi_v, sort_by, descending):
            try:
                bounds = []
                for name, v in (("min", lo_v), ("max", hi_v)):
                    try:
                        bounds.append(float(v) if v and str(v).strip() else None)
                    except ValueError:
                        raise WorkbenchError(f"{name} must be a number, got {v!r}") from None
                return table_df(problems, teacher_name, student_name, query, rx, fields, metric, *bounds,
                                sort_by, descending), ""
            except WorkbenchError as exc:
                return gr.skip(), _error_md(str(exc))

        for comp in (search, regex, search_in, metric_dd, lo, hi, sort_dd, desc):
            comp.change(on_filter, filter_inputs, [table, filter_msg], show_progress="hidden", trigger_mode="always_last")

        def on_select_row(evt: gr.SelectData):
            row = evt.row_value or []
            return row[0] if row else gr.skip()

        def on_view(problems, pid, thr, teacher_name, student_name):
            return problem_view(problems, pid, thr, teacher_name, student_name)

        def hm_choices(problems, pid, current=None):
            """Sources of the selected problem for the heatmap picker, and the text of the picked one."""
            p = _find(problems, pid)
            names = _sources_of(p)
            pick = current if current in names else (names[0] if names else None)
            return (gr.update(choices=[(compare.source_label(s), s) for s in names], value=pick),
                    p["sources"].get(pick, "") if p and pick else "")

        hm_sync = ([problems_state, problem_dd, hm_source], [hm_source, hm_text])

        table.select(on_select_row, None, problem_dd).then(on_view, view_inputs, view_outputs).then(hm_choices, *hm_sync)
        problem_dd.input(on_view, view_inputs, view_outputs).then(hm_choices, *hm_sync)
        threshold.release(on_view, view_inputs, view_outputs)

        def on_charts(problems, teacher_name, student_name, metric):
            return charts(problems, teacher_name, student_name, metric)

        chart_metric.change(on_charts, [problems_state, teacher_box, student_box, chart_metric], [dist_plot, scatter_plot])

        # -- scoring --------------------------------------------------------------------------------------------

        def score_problem(problems, pid, teacher_name, student_name, base, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
            p = _find(problems, pid)
            if p is None:
                raise gr.Error("select a problem first")
            items = [compare.score_item(p, s) for s in _sources_of(p)]
            progress(0, desc=f"loading {teacher_name} / {student_name}")
            try:
                results = models.score(teacher_name, student_name, items, progress=True)
            except WorkbenchError as exc:
                raise gr.Error(_toast(exc), duration=None) from None
            errors = [f"{it['id']}: {r.error}" for it, r in zip(items, results) if r.error]
            return base + "\n\n" + _error_md("; ".join(errors)) if errors else base

        def score_everything(problems, teacher_name, student_name, base, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
            items = [compare.score_item(p, s) for p in problems for s in compare.source_names([p])[:MAX_SOURCES]]
            progress(0, desc=f"loading {teacher_name} / {student_name}")
            try:
                results = models.score(teacher_name, student_name, items, progress=True)
            except WorkbenchError as exc:
                raise gr.Error(_toast(exc), duration=None) from None
            bad = sum(r.error is not None for r in results)
            return base if not bad else base + "\n\n" + _error_md(
                f"{bad} of {len(items)} explanations could not be scored (their reward stays empty in the table)")

        score_btn.click(score_problem, [problems_state, problem_dd, teacher_box, student_box, status_base], status,
                        **MODEL_QUEUE).then(on_view, view_inputs, view_outputs).then(
            on_filter, filter_inputs, [table, filter_msg]).then(
            on_charts, [problems_state, teacher_box, student_box, chart_metric], [dist_plot, scatter_plot])
        score_all_btn.click(score_everything, [problems_state, teacher_box, student_box, status_base], status,
                            **MODEL_QUEUE).then(on_view, view_inputs, view_outputs).then(
            on_filter, filter_inputs, [table, filter_msg]).then(
            on_charts, [problems_state, teacher_box, student_box, chart_metric], [dist_plot, scatter_plot])

        # -- generation: streamed into the "generated" column, cancellable --------------------------------------

        def generate(problems, pid, teacher_name, student_name, n_tokens, temp, thr, request: gr.Request):
            p = _find(problems, pid)
            if p is None:
                raise gr.Error("select a problem first")
            key = request.session_hash if request is not None else "local"
            event = threading.Event()
            stop_events[key] = event
            try:
                model, tokenizer = models.model(teacher_name), models.tokenizer(teacher_name)
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
                    out = [gr.skip()] * len(view_outputs)
                    out[1 + slot] = gr.update(visible=True)
                    out[1 + MAX_SOURCES + slot] = (f"### {label}\n\nwriting… {len(text)} characters, "
                                                   f"{time.time() - started:.0f} s")
                    out[1 + 2 * MAX_SOURCES + slot] = viz.escape_markdown_html(parsed) + " ▌"
                    yield [problems] + out
            except WorkbenchError as exc:
                raise gr.Error(_toast(exc)) from None
            finally:
                stop_events.pop(key, None)
            if not p["sources"].get("generated", "").strip():
                p["sources"].pop("generated", None)
                p["completions"].pop("generated", None)
            yield [problems] + problem_view(problems, pid, thr, teacher_name, student_name)

        gen_event = gen_btn.click(generate, [problems_state, problem_dd, teacher_box, student_box, max_new, temperature,
                                             threshold], [problems_state] + view_outputs, **MODEL_QUEUE)
        gen_event.then(on_view, view_inputs, view_outputs).then(hm_choices, *hm_sync)

        def stop(request: gr.Request):
            ev = stop_events.get(request.session_hash if request is not None else "local")
            if ev is not None:
                ev.set()

        # The flag stops the model thread within one token; `cancels` ends the streaming request (or drops it while
        # it waits in the queue). The column keeps the text written so far: the state was updated at every yield.
        stop_btn.click(stop, None, None, cancels=[gen_event], queue=False).then(
            on_view, view_inputs, view_outputs).then(hm_choices, *hm_sync)

        # -- data loading ---------------------------------------------------------------------------------------

        def on_load(spec, upload, teacher_name, student_name, base):
            src = upload if upload else (spec or "demo")
            try:
                confined(src)
                report = data.load_problems_report(src, limit)
            except WorkbenchError as exc:
                gr.Warning(_toast(exc), duration=15)
                return [gr.skip()] * 6 + [base + "\n\n" + _error_md(str(exc))]
            new = report.items
            if report.skipped:  # bad rows are skipped, not fatal: say which
                gr.Warning(_toast(report.note()), duration=15)
            name = Path(src).name if upload else src
            choices = [p["id"] for p in new]
            line = _status_md(new, name, teacher_name, student_name, html.escape(report.note()))
            return (new, table_df(new, teacher_name, student_name),
                    gr.update(choices=choices, value=choices[0] if choices else None),
                    gr.update(choices=metric_choices(new), value=None),
                    gr.update(choices=["id"] + metric_choices(new), value=None), line, line)

        load_btn.click(on_load, [data_box, data_file, teacher_box, student_box, status_base],
                       [problems_state, table, problem_dd, metric_dd, sort_dd, status_base, status]).then(
            on_view, view_inputs, view_outputs).then(hm_choices, *hm_sync).then(
            on_charts, [problems_state, teacher_box, student_box, chart_metric], [dist_plot, scatter_plot])

        def on_join(problems, upload, name, teacher_name, student_name, base):
            if not upload:
                return gr.skip(), gr.skip(), gr.skip(), base + "\n\n" + _error_md("choose a file of teacher explanations first")
            source = (name or "").strip() or Path(upload).stem
            try:
                confined(upload)
                loaded = data.load_explanations_report(upload)
                rows = loaded.items
                new = copy.deepcopy(problems)
                report = data.join_explanations(new, rows, source, Path(upload).name)
                if loaded.skipped:
                    gr.Warning(_toast(loaded.note()), duration=15)
            except WorkbenchError as exc:
                gr.Warning(_toast(exc), duration=15)
                return gr.skip(), gr.skip(), gr.skip(), base + "\n\n" + _error_md(str(exc))
            note = (f"added {report['matched']} explanations as “{source}”"
                    + (f"; {len(report['unmatched'])} matched no question" if report["unmatched"] else ""))
            line = _status_md(new, "the loaded data", teacher_name, student_name, note)
            return new, table_df(new, teacher_name, student_name), line, line

        join_btn.click(on_join, [problems_state, expl_file, expl_name, teacher_box, student_box, status_base],
                       [problems_state, table, status_base, status]).then(on_view, view_inputs, view_outputs).then(hm_choices, *hm_sync).then(
            lambda p: (gr.update(choices=metric_choices(p)), gr.update(choices=["id"] + metric_choices(p))),
            problems_state, [metric_dd, sort_dd]).then(
            on_charts, [problems_state, teacher_box, student_box, chart_metric], [dist_plot, scatter_plot])

        # -- export ---------------------------------------------------------------------------------------------

        def on_export(problems, teacher_name, student_name):
            df = compare.long_table(problems, tok(teacher_name), rewards_lookup(teacher_name, student_name))
            wide = table_df(problems, teacher_name, student_name)
            paths = []
            try:
                for prefix, suffix, text in (("rlt-problems", ".csv", compare.table_to_csv(wide)),
                                             ("rlt-explanations", ".csv", compare.table_to_csv(df)),
                                             ("rlt-explanations", ".jsonl", compare.table_to_jsonl(df))):
                    path = viz.export_path(export_dir, prefix, "", suffix)
                    path.write_text(text, encoding="utf-8")
                    paths.append(str(path))
            except OSError as exc:
                raise gr.Error(_toast(f"could not write the export to {export_dir}: {exc}"), duration=None) from None
            return paths

        export_btn.click(on_export, [problems_state, teacher_box, student_box], export_files)

        # -- heatmap --------------------------------------------------------------------------------------------

        def on_pick_source(problems, pid, source):
            p = _find(problems, pid)
            return p["sources"].get(source, "") if p and source else ""

        def on_score_text(problems, pid, source, text, st, teacher_name, student_name, metric, limit_v, mode,
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
                (result,) = models.score(teacher_name, student_name, [item], progress=True)
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

        hm_outputs = [hm_state, hm_breakdown, hm_expl, hm_sol]
        hm_inputs = [problems_state, problem_dd, hm_source, hm_text, hm_state, teacher_box, student_box, hm_metric,
                     hm_limit, sol_mode]

        def maybe_score(problems, pid, source, text, st, teacher_name, student_name, metric, limit_v, mode,
                        progress=gr.Progress(track_tqdm=True)):  # noqa: B008
            """Score on opening the tab or picking a source, unless this very text is already shown."""
            if not text or (st and st.get("pid") == pid and st.get("text") == text and st.get("result")):
                return (st, *heatmap_views(st, metric, limit_v, mode))
            return on_score_text(problems, pid, source, text, st, teacher_name, student_name, metric, limit_v, mode,
                                 progress)

        hm_source.input(on_pick_source, [problems_state, problem_dd, hm_source], hm_text).then(
            maybe_score, hm_inputs, hm_outputs, **MODEL_QUEUE)
        hm_tab.select(maybe_score, hm_inputs, hm_outputs, **MODEL_QUEUE)
        rescore_btn.click(on_score_text, hm_inputs, hm_outputs, **MODEL_QUEUE)
        reset_btn.click(on_pick_source, [problems_state, problem_dd, hm_source], hm_text)

        def on_rerender(st, metric, limit_v, mode):
            return heatmap_views(st, metric, limit_v, mode)

        for comp in (hm_metric, sol_mode):
            comp.change(on_rerender, [hm_state, hm_metric, hm_limit, sol_mode], [hm_breakdown, hm_expl, hm_sol],
                        show_progress="hidden")
        hm_limit.change(on_rerender, [hm_state, hm_metric, hm_limit, sol_mode], [hm_breakdown, hm_expl, hm_sol],
                        show_progress="hidden", trigger_mode="always_last")

        def on_export_heatmap(problems, st, metric, limit_v, mode):
            if not st or not st.get("result"):
                raise gr.Error("score an explanation first")
            breakdown, expl, sol = heatmap_views(st, metric, limit_v, mode)
            p = _find(problems, st.get("pid"))
            question = "" if p is None else (
                f"<h2 style='font-size:16px'>Problem {html.escape(p['id'])}</h2><p><b>Question.</b> "
                f"{html.escape(p['question'])}</p><p><b>Reference solution.</b> {html.escape(p['solution'])}</p>")
            doc = viz.heatmap_document([question, breakdown, expl, sol], title=f"RLT reward heatmap · {st.get('label', '')}")
            try:  # the problem id is only a hint for the name: `a/b` or `../x` becomes a_b, x
                path = viz.export_path(export_dir, "rlt-heatmap", str(st.get("pid") or "x"), ".html")
                path.write_text(doc, encoding="utf-8")
            except OSError as exc:
                raise gr.Error(_toast(f"could not write the heatmap export to {export_dir}: {exc}"),
                               duration=None) from None
            gr.Info(_toast(f"heatmap saved as {path.name}: download it from the “Heatmap export” box below the "
                           "buttons"), duration=8)
            return gr.update(value=str(path), visible=True, label=f"Heatmap export: {path.name}")

        export_hm_btn.click(on_export_heatmap, [problems_state, hm_state, hm_metric, hm_limit, sol_mode], hm_file)

        # -- evaluate: jobs run as processes (workbench.eval.jobs); the tab polls their table ---------------------

        ev_form = [ev_model, ev_bench, ev_preset, ev_limit, ev_samples, ev_max_new, ev_temp, ev_data, ev_batch, ev_engine]
        ev_inputs = [ev_sig, ev_job, ev_show, ev_idx, ev_runs, ev_metric, ev_grader]
        ev_outputs = [ev_sig, ev_msg, ev_jobs, ev_job, ev_detail, ev_cancel, ev_resume, ev_log, ev_summary, ev_records,
                      ev_idx, ev_sample, ev_runs, ev_metric, ev_chart, ev_runs_table]

        def ev_refresh(sig, job_id, show, idx, runs, metric, grader):
            """Read the job table and send what changed since the last call (a dict of component -> value)."""
            try:
                return ev_read(sig, job_id, show, idx, runs, metric, grader)
            except Exception as exc:  # a poll must never break the page: show what went wrong, poll again
                return {ev_msg: eval_views.error_html(f"could not read the jobs: {type(exc).__name__}: {exc}")}

        def ev_read(sig, job_id, show, idx, runs, metric, grader):
            sig, out = dict(sig or {}), {}

            def changed(key, value) -> bool:
                if sig.get(key) == value:
                    return False
                sig[key] = value
                return True

            try:
                jobs = eval_jobs.list_jobs()
            except WorkbenchError as exc:
                return {ev_msg: eval_views.error_html(str(exc))}
            by_id = {j.id: j for j in jobs}
            table = eval_views.jobs_table(jobs)
            if changed("table", table.to_json()):
                out[ev_jobs] = table
            job_id = int(job_id) if job_id not in (None, "") else None
            if job_id not in by_id:
                job_id = jobs[0].id if jobs else None
            if changed("choices", [eval_views.job_choices(jobs), job_id]):
                out[ev_job] = gr.update(choices=eval_views.job_choices(jobs), value=job_id)
            job = by_id.get(job_id)
            if changed("detail", eval_views.job_html(job, jobs)):
                out[ev_detail] = sig["detail"]
            if changed("buttons", [job_id, eval_views.can_cancel(job), eval_views.can_resume(job)]):
                out[ev_cancel] = gr.update(interactive=eval_views.can_cancel(job))
                out[ev_resume] = gr.update(interactive=eval_views.can_resume(job))
            if changed("log", eval_jobs.read_log(job_id, 6000) if job else ""):
                out[ev_log] = sig["log"]
            records = eval_views.job_records(job)
            if changed("summary", eval_views.summary_markdown(eval_views.job_summary(job), job, records)):
                out[ev_summary] = sig["summary"]
            if changed("records", [job_id, len(records), show]):
                out[ev_records] = eval_views.records_table(records, show)
                if sig.get("sample_job") != job_id or idx is None or idx >= len(records):
                    idx = eval_views.step_record(records, None, show)
                    sig["sample_job"] = job_id
                    out[ev_idx] = idx
                    out[ev_sample] = eval_views.record_html(records[idx] if idx is not None else None, idx,
                                                            len(records))
            choices = eval_views.run_choices(jobs)
            if changed("runs", choices):
                known = set(sig.get("done", []))
                done = eval_views.default_runs(jobs)
                valid = {j for _, j in choices}
                runs = [r for r in (runs or []) if r in valid] + [j for j in done if j not in known and j not in (runs or [])]
                sig["done"] = done
                out[ev_runs] = gr.update(choices=choices, value=runs)
                fig, df = eval_views.comparison(jobs, runs, metric, grader)
                out[ev_chart], out[ev_runs_table] = fig, df
                out[ev_metric] = gr.update(choices=eval_views.metric_choices(eval_views.run_summaries(jobs, runs)))
            out[ev_sig] = sig
            return out

        def ev_select(sig, job_id, show, idx, runs, metric, grader):
            """Show another job: forget what the job panel showed, so it is drawn afresh."""
            sig = {k: v for k, v in (sig or {}).items() if k in ("table", "runs", "done")}
            return ev_refresh(sig, job_id, show, None, runs, metric, grader)

        def ev_pick_row(sig, show, runs, metric, grader, evt: gr.SelectData):
            row = evt.row_value or []
            if not row:
                return {}
            return ev_select(sig, row[0], show, None, runs, metric, grader)

        def ev_launch_job(model, bench, preset, limit, samples, max_new, temp, data_v, batch, engine):
            try:
                confined(data_v)
                job = eval_views.launch(model, bench, preset, limit, samples, max_new, temp, data_v, batch, engine)
                jobs = eval_jobs.list_jobs()
            except WorkbenchError as exc:
                return eval_views.error_html(str(exc)), gr.skip()
            return (f'<div class="wb-ev-meta">Job <b>#{job.id}</b> submitted: {html.escape(job.title)}</div>',
                    gr.update(choices=eval_views.job_choices(jobs), value=job.id))

        def ev_act(action):
            def act(job_id):
                if job_id in (None, ""):
                    return eval_views.error_html("select a job first")
                try:
                    job = action(int(job_id))
                except WorkbenchError as exc:
                    return eval_views.error_html(str(exc))
                return f'<div class="wb-ev-meta">Job <b>#{job.id}</b> is {html.escape(job.state)}.</div>'
            return act

        def ev_show_sample(job_id, show, idx, delta=0):
            try:
                job = eval_jobs.get_job(int(job_id)) if job_id not in (None, "") else None
            except WorkbenchError:
                job = None
            records = eval_views.job_records(job)
            if delta:
                idx = eval_views.step_record(records, idx, show, delta)
            idx = idx if idx is not None and 0 <= idx < len(records) else None
            return idx, eval_views.record_html(records[idx] if idx is not None else None, idx, len(records))

        def ev_pick_record(job_id, show, evt: gr.SelectData):
            row = evt.row_value or []
            return ev_show_sample(job_id, show, int(row[0]) if row else None)

        def ev_filter(sig, job_id, show, idx, runs, metric, grader):
            sig = {k: v for k, v in (sig or {}).items() if k != "records"}
            sig.pop("sample_job", None)
            return ev_refresh(sig, job_id, show, None, runs, metric, grader)

        def ev_compare(runs, metric, grader):
            try:
                jobs = eval_jobs.list_jobs()
                fig, df = eval_views.comparison(jobs, runs, metric, grader)
            except WorkbenchError as exc:
                return gr.skip(), gr.skip(), eval_views.error_html(str(exc))
            return fig, df, ""

        def ev_open(sig, job_id, show, idx, runs, metric, grader):
            """Opening the tab reads the job table at once and starts the poll (nothing is read before)."""
            return {**ev_refresh(sig, job_id, show, idx, runs, metric, grader), ev_timer: gr.Timer(active=True)}

        ev_tab.select(ev_open, ev_inputs, ev_outputs + [ev_timer], show_progress="hidden")
        ev_timer.tick(ev_refresh, ev_inputs, ev_outputs, show_progress="hidden")
        ev_job.input(ev_select, ev_inputs, ev_outputs, show_progress="hidden")
        ev_jobs.select(ev_pick_row, [ev_sig, ev_show, ev_runs, ev_metric, ev_grader], ev_outputs,
                       show_progress="hidden")
        ev_launch.click(ev_launch_job, ev_form, [ev_msg, ev_job]).then(ev_select, ev_inputs, ev_outputs,
                                                                         show_progress="hidden")
        ev_cancel.click(ev_act(eval_jobs.cancel_job), ev_job, ev_msg).then(ev_select, ev_inputs, ev_outputs,
                                                                           show_progress="hidden")
        ev_resume.click(ev_act(eval_jobs.resume_job), ev_job, ev_msg).then(ev_select, ev_inputs, ev_outputs,
                                                                           show_progress="hidden")
        ev_records.select(ev_pick_record, [ev_job, ev_show], [ev_idx, ev_sample], show_progress="hidden")
        ev_prev.click(lambda j, s, i: ev_show_sample(j, s, i, -1), [ev_job, ev_show, ev_idx], [ev_idx, ev_sample],
                      show_progress="hidden")
        ev_next.click(lambda j, s, i: ev_show_sample(j, s, i, 1), [ev_job, ev_show, ev_idx], [ev_idx, ev_sample],
                      show_progress="hidden")
        ev_show.input(ev_filter, ev_inputs, ev_outputs, show_progress="hidden")
        for comp in (ev_runs, ev_metric, ev_grader):
            comp.input(ev_compare, [ev_runs, ev_metric, ev_grader], [ev_chart, ev_runs_table, ev_msg],
                       show_progress="hidden")
    demo.workbench_export_dir = export_dir  # type: ignore[attr-defined]
    return demo


# ---------------------------------------------------------------------------------------------- launching


def launch_from_args(args) -> int:
    """Start the app from parsed `workbench app` arguments; blocks until Ctrl+C.

    Refuses (WorkbenchError) to bind anything but loopback, or to share, without --auth unless --no-auth is given
    (see exposure_warning); checks that before loading any model."""
    warning = exposure_warning(args)
    auth = _parse_auth(args.auth)  # a malformed --auth is an error before the models load
    if warning:
        print(warning, file=sys.stderr, flush=True)
    allow_dirs = getattr(args, "allow_dirs", None) or None
    allowed_folders(allow_dirs)  # a bad --allow-dir is an error before the models load
    models = compare.SharedModels(device=getattr(args, "device", "auto"))
    print(f"loading {args.teacher} (teacher) and {args.student} (student) once for all sessions …", file=sys.stderr)
    try:
        models.scorer(args.teacher, args.student)
    except WorkbenchError as exc:
        print(f"warning: {exc} (the app starts anyway; scoring will show this error)", file=sys.stderr)
    demo = build_app(data_spec=args.data, teacher=args.teacher, student=args.student, models=models,
                     max_new_tokens=args.max_new_tokens, limit=args.limit, allow_dirs=allow_dirs)
    demo.queue(default_concurrency_limit=8, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                prevent_thread_lock=True, allowed_paths=[demo.workbench_export_dir], quiet=True,
                ssr_mode=False)
    url = demo.local_url or f"http://{args.host}:{args.port}/"
    print(f"\nRLT Workbench is running at {url}", flush=True)
    print("data can be loaded from: " + ", ".join(map(str, allowed_folders(allow_dirs))) + " (more: --allow-dir DIR)",
          flush=True)
    if getattr(demo, "share_url", None):
        print(f"public share link: {demo.share_url}", flush=True)
    print("press Ctrl+C to stop", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python app.py [flags]` is `workbench app [flags]`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workbench.cli import main as cli_main

    return cli_main(["app", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
