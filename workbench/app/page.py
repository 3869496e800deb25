"""The page: `build_app` lays out the header, the status line, the data panel and the tabs, then wires each part.

Each part is a module with `layout(ctx)` (its components, added to ctx.ui) and `wire(ctx)` (its events, calling
module-level handlers bound to the context): data_panel, compare_tab, heatmap_tab, evaluate_tab.
"""

from __future__ import annotations

import gradio as gr

from workbench import compare
from workbench.models import DEFAULT_MODEL

from . import compare_tab, data_panel, evaluate_tab, heatmap_tab
from .common import _error_md, _status_md
from .context import make_context
from .theme import page_style


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
    status_line = _status_md(ctx.problems, ctx.origin, teacher, student)  # the data line, without errors
    init_status = status_line + ("\n\n" + _error_md(ctx.start_error) if ctx.start_error else "")

    with gr.Blocks(title="RLT Workbench", fill_width=True) as demo:
        gr.HTML(page_style(), js_on_load=None, padding=False)
        gr.Markdown("## RLT Workbench — teacher explanations, R1 traces and the RLT reward, token by token")
        ui.status = gr.Markdown(init_status, elem_id="wb-status")
        ui.status_base = gr.State(status_line)
        ui.problems_state = gr.State(ctx.problems)
        ui.hm_state = gr.State({})

        data_panel.layout(ctx)
        with gr.Tabs():
            compare_tab.layout(ctx)
            heatmap_tab.layout(ctx)
            evaluate_tab.layout(ctx)

        compare_tab.wire(ctx)
        data_panel.wire(ctx)
        compare_tab.wire_export(ctx)
        heatmap_tab.wire(ctx)
        evaluate_tab.wire(ctx)
    demo.workbench_export_dir = ctx.export_dir  # type: ignore[attr-defined]
    demo.workbench_context = ctx  # type: ignore[attr-defined]
    return demo
