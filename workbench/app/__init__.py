"""RLT Workbench app: RLT explanations beside R1 traces, and per-token reward heatmaps.

    workbench app [--data PATH_OR_HUB_ID|cpu-teacher] [--teacher MODEL] [--student MODEL] [--recipe R] [--host ...] [--port N]
                  [--auth USER:PASS | --no-auth] [--allow-dir DIR ...]
    python app.py ...                      (in a clone: the same flags)

Exposure: on loopback (the default) no password is asked. A --host other than loopback, or --share, needs --auth
(or an explicit --no-auth, which prints a warning). Data files typed, uploaded or named in the Evaluate tab are read
only from the --allow-dir folders (default: the working directory), Gradio's upload folder, and the --data file.

`build_app()` lays out the UI and wires each control to one public function of the package: data loading
(`workbench.data`), text metrics, step alignment, tables and cached scoring (`workbench.compare`), heatmaps and
charts (`workbench.viz`), generation (`workbench.generate`), and evaluation jobs (`workbench.eval.jobs`, shown by
`workbench.eval.views`). No method logic lives here.

The modules:
    page          build_app: the header, the status line, the data panel and the tabs, then their events
    context       AppContext (models, start data, export dir, allowed folders, stop flags, components) and bind
    data_panel    "Data and models": load problems, add explanations, teacher / student / generation settings
    compare_tab   the problem table, explanations side by side, scoring, generation with Stop, charts, export
    heatmap_tab   per-token heatmaps on one fixed scale, two sources side by side, reward breakdown, edit and
                  re-score, "which steps teach" (step attribution), a link to the view, HTML export
    evaluate_tab  evaluation jobs: launch, poll, cancel, resume, samples, run comparison
    common        layout constants and helpers every tab uses (status line, error box, toasts)
    theme         the style sheet
    security      loopback and --auth checks, the folders the UI may read
    launch        launch_from_args (`workbench app`) and main (`python app.py`)

Handlers are module-level functions `fn(ctx, *inputs)`: call them directly to test them (tests/test_app_handlers.py).

The Evaluate tab runs no model in the app: each evaluation is a job process recorded under $RLT_WORKBENCH_HOME,
which the tab polls (`gr.Timer`, only while the tab is selected: every 2 s while a job is active, else 10 s), so
jobs outlive the app and are listed again after a restart.

Links: `?problem=ID&source=NAME&tab=compare|heatmap|evaluate` opens the app on that problem, source and tab.

Models load once per process and are shared by all sessions; every event that runs a model goes through one
queue slot (`concurrency_id="model"`), so concurrent users wait their turn instead of competing for memory.
"""

from __future__ import annotations

import os

# Before torch loads: OpenMP threads that spin while they wait slow CPU inference down badly when cores are shared.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .common import (  # noqa: E402
    LATEX,
    MAX_SOURCES,
    MODEL_QUEUE,
    _error_md,
    _find,
    _labels,
    _sources_of,
    _status_md,
    _toast,
)
from .compare_tab import CHART_METRICS  # noqa: E402
from .context import AppContext, bind, make_context  # noqa: E402
from .evaluate_tab import EVAL_POLL_S  # noqa: E402
from .heatmap_tab import HEATMAP_METRICS  # noqa: E402
from .launch import launch_from_args, main  # noqa: E402
from .page import build_app  # noqa: E402
from .security import _parse_auth, allowed_folders, check_data_path, exposure_warning, is_loopback  # noqa: E402
from .theme import APP_CSS  # noqa: E402

# the names `app.py` re-exports (tests import them from there); the underscored helpers keep their old names
__all__ = [
    "APP_CSS", "AppContext", "CHART_METRICS", "EVAL_POLL_S", "HEATMAP_METRICS", "LATEX", "MAX_SOURCES", "MODEL_QUEUE",
    "_error_md", "_find", "_labels", "_parse_auth", "_sources_of", "_status_md", "_toast", "allowed_folders", "bind",
    "build_app", "check_data_path", "exposure_warning", "is_loopback", "launch_from_args", "main", "make_context",
]
