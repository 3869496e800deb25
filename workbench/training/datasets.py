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
from ..errors import WorkbenchError
from ..io import iter_jsonl

TRACE_KEYS = ("reasoning_trace", "explanation", "trace")


def trace_body(trace: str) -> str:
    """Explanation body from a trace: drop one leading "\\n\\n" (the prompt supplies it) or leading newlines."""
    if trace.startswith(formats.PAD):
        return trace[len(formats.PAD):]
    return trace.lstrip("\n")


def normalize_row(row: dict, index: int, tags: formats.Tags = formats.STRATOS) -> dict:
    """One dataset row -> {id, question, solution, reasoning_trace (body or None)}. Raises WorkbenchError."""
    if "conversations" in row and row["conversations"]:
        conv = row["conversations"]
        user = next((m for m in conv if (m.get("from") or m.get("role")) in ("user", "human")), None)
        asst = next((m for m in conv if (m.get("from") or m.get("role")) in ("assistant", "gpt")), None)
        if user is None or asst is None:
            raise WorkbenchError(f"row {index}: `conversations` needs a user and an assistant turn")
        question = user.get("value", user.get("content"))
        thought, solution = formats.split_student_response(asst.get("value", asst.get("content")) or "", tags)
        trace = thought
    else:
        question = row.get("question", row.get("prompt"))
        solution = row.get("solution")
        trace = next((row[k] for k in TRACE_KEYS if isinstance(row.get(k), str)), None)
        if trace is None and isinstance(row.get("completion"), str):
            trace = formats.PAD + formats.parse_completion(row["completion"], tags).body
    if isinstance(question, list):  # a conversational prompt: take the last user message
        question = next((m.get("content") for m in reversed(question) if m.get("role") == "user"), None)
    if not isinstance(question, str) or not question.strip():
        raise WorkbenchError(f"row {index}: no question (expected a `question` or `prompt` column, or `conversations`)")
    if not isinstance(solution, str) or not solution.strip():
        raise WorkbenchError(f"row {index}: no solution (expected a `solution` column, or solution tags in the answer)")
    out = {"id": row.get("id", index), "question": question, "solution": solution,
           "reasoning_trace": trace_body(trace) if isinstance(trace, str) else None}
    return out


def _read_file(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        for _n, obj, err in iter_jsonl(path):
            if err:
                raise WorkbenchError(err)
            rows.append(obj)
        return rows
    import datasets

    kind = {".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(suffix)
    if kind is None:
        raise WorkbenchError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .parquet or .csv")
    return list(datasets.load_dataset(kind, data_files=str(path), split="train"))


def load_raw(spec: str, split: str = "train") -> list[dict]:
    """Rows of a dataset as dicts, before normalisation."""
    if spec == "builtin:arith":
        from .problems import load_train_problems

        if split not in ("train", "heldout", "test", "all"):
            raise WorkbenchError(f"builtin:arith has splits 'train', 'heldout', 'test' and 'all', not {split!r}")
        return load_train_problems(split)
    if spec == "builtin:demo":
        from ..data import load_demo_set

        return [{**p, "reasoning_trace": p.get("rlt_explanation")} for p in load_demo_set()]
    path = Path(spec).expanduser()
    if path.is_file():
        return _read_file(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".jsonl", ".json", ".parquet", ".csv"))
        named = [p for p in files if p.stem.startswith(split)] or files
        if not named:
            raise WorkbenchError(f"dataset folder {spec!r} has no .jsonl/.json/.parquet/.csv file")
        return [r for p in named for r in _read_file(p)]
    if spec.startswith(("builtin:", ".", "/", "~")) or "/" not in spec:
        raise WorkbenchError(f"unknown dataset {spec!r}: not builtin:arith/builtin:demo, not a file, not a hub id")
    import datasets

    try:
        return list(datasets.load_dataset(spec, split=split))
    except Exception as exc:  # offline, missing split, no such repo
        raise WorkbenchError(
            f"could not load dataset {spec!r} split {split!r}: {str(exc).splitlines()[0] if str(exc) else exc!r}. "
            "Without network, download it elsewhere (`hf download --repo-type dataset ...`) and pass the file or folder."
        ) from None


def load_problems(spec: str, split: str = "train", max_samples: int | None = None, need_trace: bool = False,
                  tags: formats.Tags = formats.STRATOS) -> list[dict]:
    """Load and normalise a dataset. Rows without a usable question/solution (or trace, if needed) are skipped."""
    rows = load_raw(spec, split)
    out, skipped, first_error = [], 0, None
    for i, row in enumerate(rows):
        try:
            p = normalize_row(row, i, tags)
        except WorkbenchError as exc:
            skipped += 1
            first_error = first_error or str(exc)
            continue
        if need_trace and not (p["reasoning_trace"] or "").strip():
            skipped += 1
            first_error = first_error or f"row {i}: no reasoning trace (reasoning_trace / explanation / conversations)"
            continue
        out.append(p)
        if max_samples and len(out) >= max_samples:
            break
    if not out:
        raise WorkbenchError(f"dataset {spec!r} (split {split!r}) has no usable row; first problem: {first_error}")
    if skipped:
        import logging

        logging.getLogger(__name__).warning("skipped %d of %d rows of %s (%s)", skipped, len(rows), spec, first_error)
    return out
