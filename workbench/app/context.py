"""What the handlers of every tab share: the models and the reward configuration they score with, the start data,
the export folder, the allowed folders, the stop flags of running generations, and the page's components
(`AppContext`); `bind`, which turns a handler `fn(ctx, *inputs)` into the function an event calls.

Handlers are module-level functions of the tab modules that take the context first and then the event's inputs,
so they can be called (and tested) without a browser: `compare_tab.on_view(ctx, problems, pid, 0.5, t, s)`.
"""

from __future__ import annotations

import inspect
import os
import tempfile
import threading
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import compare, data
from workbench.errors import WorkbenchError
from workbench.models import DEFAULT_MODEL

from .security import allowed_folders, check_data_path


class UI(types.SimpleNamespace):
    """The page's components by name (`problems_state`, `problem_dd`, `hm_text`, `ev_job` ...): each part's
    `layout()` adds its own, each part's `wire()` reads those of the others it listens to or updates."""


@dataclass
class AppContext:
    """One per built app, shared by all sessions (per-session data lives in gr.State components, not here)."""

    models: compare.SharedModels
    teacher: str = DEFAULT_MODEL  # the start values of the teacher and student boxes
    student: str = DEFAULT_MODEL
    max_new_tokens: int = 256
    limit: int | None = None  # at most this many problems per load
    export_dir: str = ""  # where exports are written (and served from: launch's allowed_paths)
    folders: list[Path] = field(default_factory=list)  # where the UI may read data files (allowed_folders)
    operator_files: tuple[Path, ...] = ()  # the --data file, readable wherever it lies
    problems: list[dict] = field(default_factory=list)  # the start set (each session's problems_state copies it)
    data_spec: str | None = None
    origin: str = "the demo set"  # how the status line names the start set
    start_error: str | None = None  # what went wrong loading the start set or the teacher's tokenizer
    tokenizer0: Any = None  # the start teacher's tokenizer: the fallback when a typed teacher has none
    stop_events: dict[str, threading.Event] = field(default_factory=dict)  # session hash -> its generation's stop flag
    # session hash -> (problem, source) its generation writes into: Stop marks that sample as stopped
    streams: dict[str, tuple[dict, str]] = field(default_factory=dict)
    # session hash -> the problem its Compare columns show (a stream writes into the columns only while it is shown)
    viewing: dict[str, str] = field(default_factory=dict)
    reward_source: str | None = None  # where the reward configuration came from (a recipe, a run folder); None: defaults
    run_steps: list[int] | None = None  # the start data is a training run's completions log: its logged steps
    run_chosen: list[int] | None = None  # ... and the steps shown at the start
    ui: UI = field(default_factory=UI)

    def confined(self, spec) -> None:
        """Refuse (WorkbenchError) a data path from the UI outside the allowed folders (see check_data_path)."""
        check_data_path(spec, self.folders, self.operator_files)

    def tok(self, teacher_name: str):
        try:
            return self.models.tokenizer(teacher_name)
        except WorkbenchError:
            return self.tokenizer0

    def rewards_lookup(self, teacher_name: str, student_name: str):
        return lambda p, s: self.models.cached(teacher_name, student_name, compare.score_item(p, s))

    @property
    def reward_config(self):
        """The RewardConfig every score of this app is computed with (the models' config)."""
        from workbench.rewards import RewardConfig

        config = getattr(self.models, "config", None)
        return config if config is not None else RewardConfig()

    def set_reward_config(self, config, source: str | None = None) -> None:
        """Score with `config` from now on, for every session (the models are shared). Cached scores are keyed by
        the configuration (compare.ScoreCache), so those of the previous one are no longer shown, and come back if
        it is chosen again; the scorers, which hold their configuration, are made again on their next use."""
        lock = getattr(self.models, "_lock", None) or threading.RLock()
        with lock:
            self.models.config = config
            scorers = getattr(self.models, "_scorers", None)
            if isinstance(scorers, dict):
                scorers.clear()
        self.reward_source = source


RUN_STEPS = "first,last"  # a training run's completions log opens on its first and last logged step


def load_data(spec: str | None, limit: int | None = None, steps=None, tokenizer=None):
    """(Loaded, the log's steps, the steps shown) for the data spec of the app: a training run's completions log
    (see workbench.runlog) gives the samples of `steps` (a list, or text such as "first,last"; RUN_STEPS when none),
    as many samples per step as there are columns; any other spec gives (Loaded, None, None)."""
    from .common import MAX_SOURCES

    path = data.run_log_path(spec)
    if path is None:
        return data.load_problems_report(spec, limit), None, None
    loaded, log, chosen = data.run_log_report(path, steps or RUN_STEPS, limit, columns=MAX_SOURCES,
                                              tokenizer=tokenizer)
    return loaded, log.steps, chosen


def make_context(problems: list[dict] | None = None, *, data_spec: str | None = None, teacher: str = DEFAULT_MODEL,
                 student: str = DEFAULT_MODEL, models: compare.SharedModels | None = None, max_new_tokens: int = 256,
                 limit: int | None = None, export_dir: str | None = None,
                 allow_dirs: list[str] | None = None) -> AppContext:
    """The context build_app starts from: `problems` wins over `data_spec`; a bad data_spec is recorded in
    start_error and the demo set is used instead; so is a teacher whose tokenizer cannot load. The app scores with
    `models.config` (launch sets it from --recipe, and `models.reward_source` to the recipe's path)."""
    models = models or compare.SharedModels()
    folders = allowed_folders(allow_dirs)
    operator_files = (Path(os.path.expanduser(data_spec.strip())).resolve(),) if (data_spec or "").strip() else ()
    export_dir = export_dir or tempfile.mkdtemp(prefix="rlt-workbench-")
    origin, start_error, tok_error = data_spec or "the demo set", None, None
    run_steps = run_chosen = None
    try:
        tokenizer0 = models.tokenizer(teacher)
    except WorkbenchError as exc:
        tokenizer0, tok_error = None, str(exc)
    if problems is None:
        try:
            loaded, run_steps, run_chosen = load_data(data_spec, limit, tokenizer=tokenizer0)
            problems = loaded.items
            if loaded.skipped:
                start_error = loaded.note()
        except WorkbenchError as exc:
            start_error = str(exc)
            problems, origin = data.demo_problems(), "the demo set"
    if tok_error:
        start_error = (start_error + "\n" if start_error else "") + tok_error
    return AppContext(models=models, teacher=teacher, student=student, max_new_tokens=max_new_tokens, limit=limit,
                      export_dir=export_dir, folders=folders, operator_files=operator_files, problems=problems,
                      data_spec=data_spec, origin=origin, start_error=start_error, tokenizer0=tokenizer0,
                      reward_source=getattr(models, "reward_source", None), run_steps=run_steps,
                      run_chosen=run_chosen)


def bind(ctx: AppContext, fn):
    """`fn(ctx, *inputs)` as the function an event calls, `event(*inputs)`: the same name (demo.fns, API names),
    the signature without `ctx`, and the annotations resolved, so Gradio still finds the gr.Progress, gr.Request
    and gr.SelectData parameters it fills in; a generator stays a generator (streaming, cancels=)."""
    hints = typing.get_type_hints(fn)  # fails here, at build time, rather than Gradio silently passing nothing
    sig = inspect.signature(fn)
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in list(sig.parameters.values())[1:]]
    if inspect.isgeneratorfunction(fn):
        def event(*args, **kwargs):
            return (yield from fn(ctx, *args, **kwargs))
    else:
        def event(*args, **kwargs):
            return fn(ctx, *args, **kwargs)
    event.__signature__ = sig.replace(parameters=params, return_annotation=inspect.Signature.empty)
    event.__annotations__ = {p.name: p.annotation for p in params if p.annotation is not inspect.Parameter.empty}
    event.__name__, event.__qualname__, event.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    event.__module__ = fn.__module__
    event.handler = fn  # type: ignore[attr-defined]
    return event
