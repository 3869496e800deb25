"""Problems for training: load a dataset by name and normalise every row to question / solution / reasoning_trace.

Accepted sources (`dataset:` in a recipe):
- `builtin:arith`: the generated arithmetic word problems shipped with the package (splits train / heldout, and a
  generated `test` split of 256 more);
- `builtin:demo`: the 14 demo problems (their RLT explanation serves as the trace);
- a local `.jsonl` / `.json` / `.parquet` / `.csv` file, or a folder of them;
- a hub dataset id such as `bespokelabs/Bespoke-Stratos-17k` (needs network or a local copy in the HF cache).

Accepted row formats:
- Bespoke-Stratos / Sky-T1: `conversations` = [{from: user, value: question}, {from: assistant, value:
  "<|begin_of_thought|>TRACE<|end_of_thought|>\\n\\n<|begin_of_solution|>SOLUTION<|end_of_solution|>"}];
- custom: `question` (or `prompt`), `solution`, optional `reasoning_trace` (or `explanation`, or `completion`: a raw
  teacher completion, whose body is taken).

A trace is stored as the explanation *body*: the text after `<|begin_of_explanation|>\\n\\n`. Stratos traces begin
with that `\\n\\n` padding themselves, so one leading `\\n\\n` is removed (the official code crashes on traces
without it; we accept both).
"""

from __future__ import annotations

from pathlib import Path

from .. import formats
from ..data import Loaded, dedupe_ids, is_hub_id, load_rows, normalize_problem, normalize_rows
from ..errors import WorkbenchError


def trace_body(trace: str) -> str:
    """Explanation body from a trace: drop one leading "\\n\\n" (the prompt supplies it) or leading newlines."""
    if trace.startswith(formats.PAD):
        return trace[len(formats.PAD):]
    return trace.lstrip("\n")


def normalize_row(row: dict, index: int | str, tags: formats.Tags = formats.STRATOS) -> dict:
    """One dataset row -> {id, question, solution, reasoning_trace (body or None)}. Raises WorkbenchError."""
    where = index if isinstance(index, str) else f"row {index}"
    p = normalize_problem(row, where, tags)
    trace = p["trace"] if p["trace"] is not None else p["explanation"]
    return {"id": p["id"] if p["id"] is not None else (index if isinstance(index, int) else None), "question": p["question"], "solution": p["solution"],
            "reasoning_trace": trace_body(trace) if isinstance(trace, str) else None}


def load_raw(spec: str, split: str = "train") -> Loaded:
    """Rows of a dataset (before normalisation) and the rows that could not be read."""
    if spec == "builtin:arith":
        from ..io import Row
        from .problems import load_train_problems

        if split not in ("train", "heldout", "test", "all"):
            raise WorkbenchError(f"builtin:arith has splits 'train', 'heldout', 'test' and 'all', not {split!r}")
        return Loaded([Row(f"row {k}", r) for k, r in enumerate(load_train_problems(split), 1)], [], spec)
    if spec == "builtin:demo":
        from ..data import load_demo_set
        from ..io import Row

        return Loaded([Row(f"row {k}", {**p, "reasoning_trace": p.get("rlt_explanation")})
                       for k, p in enumerate(load_demo_set(), 1)], [], spec)
    if spec.startswith("builtin:"):
        raise WorkbenchError(f"unknown dataset {spec!r}: the built-in ones are builtin:arith and builtin:demo")
    path = Path(spec).expanduser()
    if not path.exists() and not is_hub_id(spec):
        raise WorkbenchError(f"unknown dataset {spec!r}: not builtin:arith / builtin:demo, no such file or folder, "
                             "and not a hub id (org/name)")
    return load_rows(spec, split=split)


def load_problems(spec: str, split: str = "train", max_samples: int | None = None, need_trace: bool = False,
                  tags: formats.Tags = formats.STRATOS) -> list[dict]:
    """Load and normalise a dataset. Rows without a usable question/solution (or trace, if needed) are skipped
    and logged with their file, line and column; no usable row at all raises WorkbenchError."""

    def convert(row: dict, where: str) -> dict:
        p = normalize_row(row, where, tags)
        if need_trace and not (p["reasoning_trace"] or "").strip():
            raise WorkbenchError(f"{where}: no reasoning trace (reasoning_trace / explanation / conversations)")
        return p

    loaded = normalize_rows(load_raw(spec, split), convert)
    loaded.origin = f"dataset {spec!r} (split {split!r})"
    items = loaded.items[:max_samples] if max_samples else loaded.items
    for k, p in enumerate(items):
        p["id"] = str(k) if p["id"] is None else str(p["id"])
        del p["_loc"]
    dedupe_ids(items)
    return Loaded(items, loaded.skipped, loaded.origin).require("row").items
