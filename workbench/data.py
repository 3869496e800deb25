"""Problems and explanations: the shipped demo set and conversions between formats."""

from __future__ import annotations

import json
from importlib import resources

DEMO_FIELDS = ("id", "topic", "difficulty", "question", "solution", "rlt_explanation", "r1_trace", "illustrative")


def load_demo_set() -> list[dict]:
    """The illustrative demo problems shipped with the package (written for the project, not from a benchmark).

    Each has question, reference solution, an RLT-style explanation and an R1-style trace with hesitations.
    """
    text = resources.files("workbench").joinpath("data/demo_set.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def demo_score_items(problems: list[dict] | None = None) -> list[dict]:
    """Score items for the demo: each problem's RLT explanation and its R1 trace, as explanation bodies."""
    problems = load_demo_set() if problems is None else problems
    items = []
    for p in problems:
        for source, key in (("rlt", "rlt_explanation"), ("r1", "r1_trace")):
            if p.get(key):
                items.append({"id": f"{p['id']}:{source}", "problem": p["id"], "source": source,
                              "question": p["question"], "solution": p["solution"], "explanation": p[key]})
    return items


# ================================================================================================================
# Problems for the app and the notebooks: the demo set, Bespoke-Stratos files or hub ids, custom problem files,
# and files of teacher explanations joined to the problems by question text.
#
# Every loader returns problems in one normalised shape:
#     {"id": str, "question": str, "solution": str,
#      "sources": {name: explanation body},          e.g. "rlt" (RLT explanation), "r1" (R1 trace), "gen-run" ...
#      "completions": {name: raw teacher completion}, only for sources that came as raw completions (end tag kept)
#      "meta": {...}}                                 e.g. topic, difficulty, file and line of the row
# A bad file raises WorkbenchError naming the file, the line (or row for Parquet) and the column.
# ================================================================================================================

import csv  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

from .errors import WorkbenchError  # noqa: E402

TABLE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
QUESTION_COLUMNS = ("question", "prompt")  # the official code reads `prompt`; accept both


def demo_problems() -> list[dict]:
    """The demo set in the normalised problem shape: sources "rlt" (RLT explanation) and "r1" (R1 trace)."""
    out = []
    for p in load_demo_set():
        sources = {k: p[f] for k, f in (("rlt", "rlt_explanation"), ("r1", "r1_trace")) if p.get(f)}
        meta = {k: p[k] for k in ("topic", "difficulty", "illustrative") if k in p}
        out.append({"id": p["id"], "question": p["question"], "solution": p["solution"], "sources": sources,
                    "completions": {}, "meta": meta})
    return out


def _json_error(path: Path, text: str, exc: json.JSONDecodeError, line_offset: int = 0) -> WorkbenchError:
    return WorkbenchError(f"{path}: line {exc.lineno + line_offset}, column {exc.colno}: not valid JSON ({exc.msg})")


def read_rows(path: str | Path, limit: int | None = None) -> list[tuple[str, dict]]:
    """Read a JSONL, JSON (array of objects), Parquet or CSV file into (location, row) pairs.

    The location ("line 12", or "row 7" for Parquet) goes into every error message about the row. Raises
    WorkbenchError for a missing, empty or unreadable file, naming the file, line and column.
    """
    p = Path(path)
    if not p.exists():
        raise WorkbenchError(f"{p}: no such file")
    if p.is_dir():
        raise WorkbenchError(f"{p}: is a folder; give a .jsonl, .json, .parquet or .csv file")
    suffix = p.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise WorkbenchError(f"{p}: unknown file type {p.suffix or '(none)'!r}; use one of {', '.join(TABLE_SUFFIXES)}")
    if p.stat().st_size == 0:
        raise WorkbenchError(f"{p}: the file is empty")
    if suffix == ".parquet":
        return _read_parquet(p, limit)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise WorkbenchError(f"{p}: line {line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise WorkbenchError(f"{p}: the file is empty (only whitespace)")
    rows = {".jsonl": _read_jsonl_text, ".json": _read_json_text, ".csv": _read_csv_text}[suffix](p, text, limit)
    if not rows:
        raise WorkbenchError(f"{p}: the file has no rows")
    return rows


def _read_jsonl_text(p: Path, text: str, limit: int | None) -> list[tuple[str, dict]]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkbenchError(f"{p}: line {n}, column {exc.colno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise WorkbenchError(f"{p}: line {n}, column 1: expected a JSON object, got {_type_name(obj)}")
        rows.append((f"line {n}", obj))
        if limit and len(rows) >= limit:
            break
    return rows


def _read_json_text(p: Path, text: str, limit: int | None) -> list[tuple[str, dict]]:
    """A JSON array of objects, decoded element by element so each row knows its line."""
    dec = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if text[i] != "[":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _json_error(p, text, exc) from None
        line = text.count("\n", 0, i) + 1
        col = i - (text.rfind("\n", 0, i) + 1) + 1
        raise WorkbenchError(f"{p}: line {line}, column {col}: expected a JSON array of objects, got {_type_name(obj)}"
                             " (use JSONL for one object per line)")
    rows: list[tuple[str, dict]] = []
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "]":
        return rows
    while True:
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise _json_error(p, text, exc) from None
        line = text.count("\n", 0, i) + 1
        if not isinstance(obj, dict):
            col = i - (text.rfind("\n", 0, i) + 1) + 1
            raise WorkbenchError(f"{p}: line {line}, column {col}: expected a JSON object, got {_type_name(obj)}")
        rows.append((f"line {line}", obj))
        if limit and len(rows) >= limit:
            return rows
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "]":
            if _skip_ws(text, i + 1) < len(text):
                j = _skip_ws(text, i + 1)
                raise _position_error(p, text, j, "extra data after the JSON array")
            return rows
        raise _position_error(p, text, i, "expected ',' or ']' after an array element")


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _position_error(p: Path, text: str, i: int, msg: str) -> WorkbenchError:
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return WorkbenchError(f"{p}: line {line}, column {col}: not valid JSON ({msg})")


def _read_csv_text(p: Path, text: str, limit: int | None) -> list[tuple[str, dict]]:
    import io

    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise WorkbenchError(f"{p}: line 1: not valid CSV ({exc})") from None
    if not header:
        raise WorkbenchError(f"{p}: line 1: no header row")
    rows = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise WorkbenchError(f"{p}: line {reader.line_num}: not valid CSV ({exc})") from None
        if None in row:
            raise WorkbenchError(f"{p}: line {start}: {len(header) + len(row[None])} fields, but the header has {len(header)}")
        rows.append((f"line {start}", dict(row)))
        if limit and len(rows) >= limit:
            break
    return rows


def _read_parquet(p: Path, limit: int | None) -> list[tuple[str, dict]]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise WorkbenchError(f"{p}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    if limit:
        table = table.slice(0, limit)
    rows = table.to_pylist()
    if not rows:
        raise WorkbenchError(f"{p}: the Parquet file has no rows")
    return [(f"row {k}", r) for k, r in enumerate(rows, 1)]


def _type_name(v) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def _text_field(p: Path, loc: str, row: dict, names: tuple[str, ...], required: bool = True) -> str | None:
    """The first of `names` present in row, checked to be non-empty text."""
    for name in names:
        if name in row and row[name] is not None:
            v = row[name]
            if not isinstance(v, str):
                raise WorkbenchError(f"{p}: {loc}, column {name!r}: expected a string, got {_type_name(v)} "
                                     f"({json.dumps(v, default=str)[:40]}); write it as text")
            if required and not v.strip():
                raise WorkbenchError(f"{p}: {loc}, column {name!r}: is empty")
            return v
    if required:
        alts = " or ".join(repr(n) for n in names)
        raise WorkbenchError(f"{p}: {loc}: missing column {alts} (the row has: {', '.join(map(str, row)) or 'nothing'})")
    return None


def _stratos_row(p: Path, loc: str, row: dict) -> tuple[str, str, str | None]:
    """(question, solution, thought) of a Bespoke-Stratos row: conversations = [user, assistant]."""
    from . import formats

    conv = row.get("conversations")
    if not isinstance(conv, list) or len(conv) < 2:
        raise WorkbenchError(f"{p}: {loc}, column 'conversations': expected a list of at least 2 turns "
                             f"(user, assistant), got {_type_name(conv)}")
    turns = []
    for t in conv:
        if not isinstance(t, dict):
            raise WorkbenchError(f"{p}: {loc}, column 'conversations': each turn must be an object, got {_type_name(t)}")
        role = t.get("from", t.get("role"))
        value = t.get("value", t.get("content"))
        if not isinstance(value, str):
            raise WorkbenchError(f"{p}: {loc}, column 'conversations': turn {role!r} has no text ('value' or 'content')")
        turns.append((role, value))
    users = [v for r, v in turns if r in ("user", "human")]
    assistants = [v for r, v in turns if r in ("assistant", "gpt")]
    if not users or not assistants:
        raise WorkbenchError(f"{p}: {loc}, column 'conversations': needs a user and an assistant turn")
    thought, solution = formats.split_student_response(assistants[0])
    if solution is None or not solution.strip():
        raise WorkbenchError(f"{p}: {loc}, column 'conversations': the assistant turn has no "
                             f"{formats.SOLUTION_START}...{formats.SOLUTION_END} part")
    # the solution exactly as it stands between the tags (Bespoke-Stratos pads it with "\n\n"): the training path
    # (training/datasets.py) and the official code keep that padding, so the teacher prompt is the same everywhere
    return users[0], solution, (thought.strip() if thought and thought.strip() else None)


def problems_from_rows(rows: list[tuple[str, dict]], path: str | Path) -> list[dict]:
    """Normalise rows of a problem file: Bespoke-Stratos rows (`conversations`) or custom rows (`question` or
    `prompt`, `solution`, optional `reasoning_trace` as the R1 trace and optional `rlt_explanation`)."""
    p = Path(path)
    out = []
    for k, (loc, row) in enumerate(rows, 1):
        if "conversations" in row:
            q, s, thought = _stratos_row(p, loc, row)
            sources = {"r1": thought} if thought else {}
        else:
            q = _text_field(p, loc, row, QUESTION_COLUMNS)
            s = _text_field(p, loc, row, ("solution",))
            sources = {}
            trace = _text_field(p, loc, row, ("reasoning_trace",), required=False)
            if trace and trace.strip():
                sources["r1"] = trace.strip()
            expl = _text_field(p, loc, row, ("rlt_explanation",), required=False)
            if expl and expl.strip():
                sources["rlt"] = expl.strip()
        rid = row.get("id")
        pid = str(rid) if isinstance(rid, (str, int)) and str(rid).strip() else f"{p.stem}-{k}"
        meta = {key: row[key] for key in ("topic", "difficulty", "level", "type", "source") if
                isinstance(row.get(key), (str, int, float))}
        meta.update(file=str(p), location=loc)
        out.append({"id": pid, "question": q, "solution": s, "sources": sources, "completions": {}, "meta": meta})
    _dedupe_ids(out)
    return out


def _dedupe_ids(problems: list[dict]) -> None:
    seen: dict[str, int] = {}
    for pr in problems:
        n = seen.get(pr["id"], 0)
        seen[pr["id"]] = n + 1
        if n:
            pr["id"] = f"{pr['id']}#{n + 1}"


def load_problem_file(path: str | Path, limit: int | None = None) -> list[dict]:
    """Problems from a JSONL/JSON/Parquet/CSV file: Bespoke-Stratos rows or question/solution/reasoning_trace."""
    return problems_from_rows(read_rows(path, limit), path)


def _looks_like_hub_id(spec: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", spec)) and not os.path.exists(spec)


def load_stratos(source: str, limit: int | None = None, split: str = "train") -> list[dict]:
    """Bespoke-Stratos-format problems from a file or a hub id (e.g. bespokelabs/Bespoke-Stratos-17k).

    The thought part of each assistant turn is the DeepSeek-R1 trace (source "r1"). Hub ids are read with
    `datasets` from the local cache (HF_HUB_OFFLINE=1) or the Hub.
    """
    if not _looks_like_hub_id(source):
        return load_problem_file(source, limit)
    try:
        import datasets

        ds = datasets.load_dataset(source, split=split)
    except Exception as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise WorkbenchError(
            f"could not load dataset {source!r} ({'HF_HUB_OFFLINE=1 is set' if offline else 'is the Hub reachable?'}): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. Download it on a machine with network "
            f"access and pass the JSONL/Parquet file instead."
        ) from None
    if limit:
        ds = ds.select(range(min(limit, len(ds))))
    rows = [(f"row {k}", dict(r)) for k, r in enumerate(ds, 1)]
    if not rows:
        raise WorkbenchError(f"dataset {source!r} (split {split!r}) has no rows")
    return problems_from_rows(rows, source)


def load_problems(spec: str | None = None, limit: int | None = None) -> list[dict]:
    """Problems from "demo" (or None), a file (Bespoke-Stratos or custom columns), or a hub id."""
    if spec is None or spec.strip() in ("", "demo"):
        problems = demo_problems()
        return problems[:limit] if limit else problems
    spec = os.path.expanduser(spec.strip())
    if _looks_like_hub_id(spec):
        return load_stratos(spec, limit)
    return load_problem_file(spec, limit)


def load_explanation_file(path: str | Path) -> list[dict]:
    """Teacher explanations: rows with `question` (or `prompt`) and `explanation` (the body) or `completion`
    (raw teacher output, cut at the first end tag; kept so a missing tag is penalised when scored)."""
    from . import formats

    p = Path(path)
    out = []
    for loc, row in read_rows(p):
        q = _text_field(p, loc, row, QUESTION_COLUMNS)
        completion = _text_field(p, loc, row, ("completion",), required=False)
        if completion is not None:
            body = formats.parse_completion(completion).body.strip()
        else:
            body = _text_field(p, loc, row, ("explanation",), required=False)
            if body is None:
                raise WorkbenchError(f"{p}: {loc}: missing column 'explanation' or 'completion' "
                                     f"(the row has: {', '.join(map(str, row))})")
            body = body.strip()
        if not body:
            raise WorkbenchError(f"{p}: {loc}, column {'completion' if completion is not None else 'explanation'!r}: is empty")
        out.append({"question": q, "explanation": body, "completion": completion, "location": loc})
    return out


def normalize_question(text: str) -> str:
    """Join key for explanations: the question with runs of whitespace collapsed."""
    return " ".join(text.split())


def join_explanations(problems: list[dict], explanations: list[dict], source: str,
                      path: str | Path = "explanations") -> dict:
    """Add explanations to the problems (in place) as source `source`, matched by question text.

    Returns a report {"matched", "unmatched" (locations), "duplicates"}. Raises WorkbenchError when no
    explanation matches a problem, so a wrong file is noticed.
    """
    if not source or not source.strip():
        raise WorkbenchError("give the explanation source a name")
    by_q: dict[str, list[dict]] = {}
    for pr in problems:
        by_q.setdefault(normalize_question(pr["question"]), []).append(pr)
    matched, unmatched, duplicates, done = 0, [], 0, set()
    for e in explanations:
        key = normalize_question(e["question"])
        targets = by_q.get(key)
        if not targets:
            unmatched.append(e.get("location", "?"))
            continue
        if key in done:
            duplicates += 1
            continue
        done.add(key)
        for pr in targets:
            pr["sources"][source] = e["explanation"]
            if e.get("completion") is not None:
                pr.setdefault("completions", {})[source] = e["completion"]
            else:
                pr.setdefault("completions", {}).pop(source, None)
            matched += 1
    if not matched:
        raise WorkbenchError(
            f"{path}: none of its {len(explanations)} explanations matches a loaded problem (joined by question "
            "text with whitespace collapsed); is it for the same data set?"
        )
    return {"matched": matched, "unmatched": unmatched, "duplicates": duplicates}
