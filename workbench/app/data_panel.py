"""The "Data and models" panel above the tabs: load problems (a path, a hub id, an upload, or "cpu-teacher": the
workbench's own teacher before and after RL training), add a file of teacher explanations as a new source, the
teacher, student and generation settings every tab reads, and the reward configuration the app scores with (a
recipe or a run folder's recipe.yaml; it applies to every visitor, the models being shared).

Files named or uploaded here are read only from the allowed folders (ctx.confined); "demo" and "cpu-teacher" are
the project's own data. Every handler takes the AppContext first, then the event's inputs (see context.bind).
"""

from __future__ import annotations

import copy
import html
from pathlib import Path

import gradio as gr

from workbench import data
from workbench.errors import WorkbenchError

from . import compare_tab, heatmap_tab
from .common import MODEL_QUEUE, _error_md, _status_md, _toast, reward_config_line
from .compare_tab import metric_choices, table_df
from .context import AppContext, bind, load_data

# ---------------------------------------------------------------------------------------------- handlers


def on_load(ctx: AppContext, spec, upload, teacher_name, student_name, base, steps=None):
    """Load problems: (problems, table, problem picker, metric filter, sort, status line, step picker, the source
    loaded, status). A training run's completions log shows the samples of `steps` (default: its first and last
    logged step) and the step picker; any other data hides it."""
    src = upload if upload else ((spec or "").strip() or "demo")
    try:
        if src != data.TRAINED_TEACHER:  # the recorded run of the project itself, not a file of the user's
            ctx.confined(src)
        report, run_steps, chosen = load_data(src, ctx.limit, steps, tokenizer=ctx.tok(teacher_name))
    except WorkbenchError as exc:
        gr.Warning(_toast(exc), duration=15)
        return [gr.skip()] * 8 + [base + "\n\n" + _error_md(str(exc))]
    new = report.items
    if report.skipped:  # bad rows are skipped, not fatal: say which
        gr.Warning(_toast(report.note()), duration=15)
    name = Path(src).name if upload else src
    choices = [p["id"] for p in new]
    note = report.note()
    if run_steps:
        note = run_note(run_steps, chosen) + (f"; {note}" if note else "")
    line = _status_md(new, name, teacher_name, student_name, html.escape(note))
    step_update = (gr.update(choices=run_steps, value=chosen, visible=True) if run_steps
                   else gr.update(choices=[], value=[], visible=False))
    return (new, table_df(ctx, new, teacher_name, student_name),
            gr.update(choices=choices, value=choices[0] if choices else None),
            gr.update(choices=metric_choices(new), value=None),
            gr.update(choices=["id"] + metric_choices(new), value=None), line, step_update, src, line)


def run_note(run_steps: list[int], chosen: list[int]) -> str:
    """The status line's note for a training run's completions log: the steps shown, of how many."""
    at = f"step {chosen[0]}" if len(chosen) == 1 else f"steps {', '.join(map(str, chosen[:-1]))} and {chosen[-1]}"
    return f"training run's samples at {at} (of {len(run_steps)} logged; pick others under Training steps)"


def on_steps(ctx: AppContext, src, steps, teacher_name, student_name, base):
    """Other steps of the loaded run's completions log: on_load's outputs."""
    return on_load(ctx, src, None, teacher_name, student_name, base, list(steps or []))


def on_load_teacher(ctx: AppContext, teacher_name, student_name, base):
    """The workbench's own teacher before and after RL training (data spec "cpu-teacher"): on_load's outputs."""
    return on_load(ctx, data.TRAINED_TEACHER, None, teacher_name, student_name, base)


def on_data_note(ctx: AppContext, problems, student_name):
    return compare_tab.data_note(problems, student_name)


RECORDED_RUN = "cpu-teacher"  # in the recipe box: the recorded CPU run's folder (results/cpu/teacher_rlt)


def on_recipe(ctx: AppContext, spec):
    """Score with the reward configuration of a recipe or a run folder (its recipe.yaml), "cpu-teacher" (the
    recorded CPU run's), or the defaults (empty): the new summary line. The change applies to every session, and
    scores of another configuration are no longer shown (the score cache is keyed by the configuration)."""
    from workbench.rewards import RewardConfig
    from workbench.training.config import reward_config

    text = (spec or "").strip()
    try:
        if not text:
            config, source = RewardConfig(), None
        elif text == RECORDED_RUN:
            run = data.repo_path_of_run()
            config, source = reward_config(run), data.TRAINED_TEACHER_RUN
        else:
            ctx.confined(text)
            config, source = reward_config(Path(text).expanduser()), text
    except WorkbenchError as exc:
        gr.Warning(_toast(exc), duration=15)
        return reward_config_line(ctx.reward_config, ctx.reward_source) + "\n\n" + _error_md(str(exc))
    ctx.set_reward_config(config, source)
    gr.Info(_toast("the app now scores with " + (f"the reward configuration of {source}" if source else
                                                 "the default reward configuration") + " (for every visitor)"))
    return reward_config_line(config, source)


def on_join(ctx: AppContext, problems, upload, name, teacher_name, student_name, base):
    """Add a file of explanations as a source: (problems, table, status line, status)."""
    if not upload:
        return gr.skip(), gr.skip(), gr.skip(), base + "\n\n" + _error_md("choose a file of teacher explanations first")
    source = (name or "").strip() or Path(upload).stem
    try:
        ctx.confined(upload)
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
    return new, table_df(ctx, new, teacher_name, student_name), line, line


# ---------------------------------------------------------------------------------------------- layout and events


def layout(ctx: AppContext) -> None:
    """The panel's components, added to ctx.ui."""
    ui = ctx.ui
    with gr.Accordion("Data and models", open=False):
        with gr.Row():
            ui.data_box = gr.Textbox(label="Problems: 'demo', 'cpu-teacher' (our teacher before / after RL), a file "
                                     "path, a hub id, or a training run's folder (its completions log)",
                                     value=ctx.data_spec or "demo", scale=3)
            ui.loaded_src = gr.State(ctx.data_spec or "demo")  # what the problems came from (the step picker rereads it)
            ui.data_file = gr.File(label="…or upload a problem file (.jsonl .json .parquet .csv)",
                                   file_types=list(data.TABLE_SUFFIXES), scale=2, elem_id="wb-data-file", height=110)
            ui.load_btn = gr.Button("Load problems", scale=1, elem_id="wb-load")
        with gr.Row():
            ui.expl_file = gr.File(label="Teacher explanations: question + explanation (or raw completion)",
                                   file_types=list(data.TABLE_SUFFIXES), scale=3, elem_id="wb-expl-file", height=110)
            ui.expl_name = gr.Textbox(label="Source name", placeholder="e.g. my-teacher (default: file name)", scale=1)
            ui.join_btn = gr.Button("Add explanations", scale=1, elem_id="wb-join")
        with gr.Row():
            ui.teacher_box = gr.Textbox(label="Teacher (alias, folder or hub id)", value=ctx.teacher)
            ui.student_box = gr.Textbox(label="Student (alias, folder or hub id)", value=ctx.student)
            ui.max_new = gr.Slider(16, 4096, value=ctx.max_new_tokens, step=16, label="max new tokens (generate)",
                                   elem_id="wb-max-new")
            ui.temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="temperature (0 = greedy)")
        with gr.Row():
            ui.recipe_box = gr.Textbox(label="Reward configuration: a recipe (.yaml) or a run folder (its recipe.yaml)",
                                       placeholder="e.g. results/cpu/teacher_rlt · 'cpu-teacher': the recorded CPU "
                                       "run's · empty: the defaults", value="", scale=3,
                                       elem_id="wb-recipe")
            ui.recipe_btn = gr.Button("Score with this configuration", scale=1, elem_id="wb-recipe-load")
        ui.reward_line = gr.Markdown(reward_config_line(ctx.reward_config, ctx.reward_source),
                                     elem_id="wb-reward-config")


def wire(ctx: AppContext) -> None:
    """Load and join, then redraw the Compare tab and the heatmap picker."""
    ui = ctx.ui
    on_view_, on_charts_ = bind(ctx, compare_tab.on_view), bind(ctx, compare_tab.on_charts)
    view_in, view_out = compare_tab.view_inputs(ui), compare_tab.view_outputs(ui)
    hm_sync = heatmap_tab.picker_sync(ctx)

    load_out = [ui.problems_state, ui.table, ui.problem_dd, ui.metric_dd, ui.sort_dd, ui.status_base, ui.step_dd,
                ui.loaded_src, ui.status]
    note_ = bind(ctx, on_data_note), [ui.problems_state, ui.student_box], ui.data_note
    run_plot_ = bind(ctx, compare_tab.run_plot), [ui.loaded_src, ui.teacher_box], [ui.run_acc, ui.run_plot]
    filter_ = bind(ctx, compare_tab.on_filter), compare_tab.filter_inputs(ui), [ui.table, ui.filter_msg]

    def redraw(loaded, run_plot: bool = True):
        """After a load: the problem's columns, the heatmap picker, the table under the search still in its box, the
        charts, the data note and (for new data, not other steps of the same log) the run plot."""
        ev = loaded.then(on_view_, view_in, view_out).then(*hm_sync).then(*filter_).then(
            on_charts_, *compare_tab.chart_io(ui)).then(*note_)
        return ev.then(*run_plot_) if run_plot else ev

    redraw(ui.load_btn.click(bind(ctx, on_load), [ui.data_box, ui.data_file, ui.teacher_box, ui.student_box,
                                                   ui.status_base], load_out))
    redraw(ui.step_dd.input(bind(ctx, on_steps), [ui.loaded_src, ui.step_dd, ui.teacher_box, ui.student_box,
                                                   ui.status_base], load_out), run_plot=False)
    redraw(ui.teacher_btn.click(bind(ctx, on_load_teacher), [ui.teacher_box, ui.student_box, ui.status_base],
                                load_out).then(lambda: data.TRAINED_TEACHER, None, ui.data_box))

    # the reward configuration: shared by every session, changed between model runs (the model queue)
    ui.recipe_btn.click(bind(ctx, on_recipe), ui.recipe_box, ui.reward_line, **MODEL_QUEUE).then(
        on_view_, view_in, view_out).then(*filter_).then(on_charts_, *compare_tab.chart_io(ui))

    ui.join_btn.click(bind(ctx, on_join), [ui.problems_state, ui.expl_file, ui.expl_name, ui.teacher_box,
                                           ui.student_box, ui.status_base],
                      [ui.problems_state, ui.table, ui.status_base, ui.status]).then(
        on_view_, view_in, view_out).then(*hm_sync).then(
        lambda p: (gr.update(choices=metric_choices(p)), gr.update(choices=["id"] + metric_choices(p))),
        ui.problems_state, [ui.metric_dd, ui.sort_dd]).then(on_charts_, *compare_tab.chart_io(ui)).then(*note_)
