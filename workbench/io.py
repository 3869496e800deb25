"""The one file layer: reading JSONL / JSON / CSV / Parquet tables, writing results atomically, appending with a lock.

Reading (`read_rows`): a problem with the *file* (missing, a folder, empty, unknown type, unreadable Parquet) raises
WorkbenchError; a problem with one *row* (bad JSON, nested too deeply, not an object, not UTF-8, too many CSV fields)
becomes an error row, so one bad line never aborts a file. Every message names the file, the line (or row) and,
where known, the column. JSONL lines end at "\\n" only: U+2028, U+0085 and other Unicode line breaks are ordinary
characters inside a JSON string (the workbench writes them itself). A UTF-8 byte-order mark is ignored.

Writing: `write_atomic` / `write_jsonl_atomic` write a temp file beside the target and rename it, so a reader never
sees half a file; `append_jsonl` appends under a lock; `exclusive(path)` holds a lock for a whole run, so two runs
never write one output; `check_output` says before any work when an output cannot be written.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import WorkbenchError

TABLE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


@dataclass
class Row:
    """One row of a table: its location ("line 12", "row 7"), the object, or the error that replaced it."""

    loc: str
    data: dict | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def number(self) -> int | None:
        """The line (or row) number."""
        tail = self.loc.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else None


# ================================================================================================== reading


def _type_name(v) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


# Rows nested deeper than this are refused with the same message in every process: json's own limit is the
# interpreter's recursion limit, which libraries raise (hypothesis, torch's compiler), so it would depend on what
# the process had imported before.
MAX_JSON_DEPTH = 500
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def first_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> int | None:
    """The offset in `text` where JSON nesting first exceeds `limit` levels, or None (strings are skipped; the cheap
    bracket count answers for almost every text)."""
    if text.count("[") + text.count("{") <= limit:
        return None
    depth, spans, k = 0, [m.span() for m in _JSON_STRING.finditer(text)], 0
    for m in _JSON_BRACKET.finditer(text):
        i = m.start()
        while k < len(spans) and spans[k][1] <= i:
            k += 1
        if k < len(spans) and spans[k][0] <= i:  # inside a string
            continue
        depth += 1 if m.group() in "[{" else -1
        if depth > limit:
            return i
    return None


def parse_json(text: str):
    """json.loads whose every failure is a ValueError with a readable message (deep nesting, huge numbers...)."""
    if first_too_deep(text) is not None:
        raise ValueError("column 1: not readable (nested too deeply)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"column {exc.colno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise ValueError("column 1: not readable (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ValueError(f"column 1: not readable ({exc})") from None


def _check_file(p: Path, kind: str | None = None) -> str:
    if p.is_dir():
        raise WorkbenchError(f"{p}: is a folder; give a .jsonl, .json, .parquet or .csv file")
    if not p.exists():
        raise WorkbenchError(f"{p}: no such file")
    suffix = kind or p.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise WorkbenchError(f"{p}: unknown file type {p.suffix or '(none)'!r}; use one of {', '.join(TABLE_SUFFIXES)}")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise WorkbenchError(f"{p}: cannot read it ({exc.strerror})") from None
    if size == 0:
        raise WorkbenchError(f"{p}: the file is empty")
    return suffix


def read_rows(path: str | Path, limit: int | None = None, kind: str | None = None) -> list[Row]:
    """The rows of a JSONL, JSON (array of objects), CSV or Parquet file; `limit` counts good rows; `kind` (e.g.
    ".jsonl") replaces the file name's suffix.

    Raises WorkbenchError only for a problem with the whole file; a bad row comes back as an error Row.
    """
    p = Path(path)
    suffix = _check_file(p, kind)
    if suffix == ".parquet":
        return _read_parquet(p, limit)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise WorkbenchError(f"{p}: cannot read it ({exc.strerror})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if suffix == ".jsonl":
        rows = list(_jsonl_rows(p, data, limit))
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise WorkbenchError(f"{p}: line {line}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                 "save it as UTF-8") from None
        rows = _json_rows(p, text, limit) if suffix == ".json" else _csv_rows(p, text, limit)
    if not rows:
        raise WorkbenchError(f"{p}: the file is empty (only whitespace)" if not data.strip() else f"{p}: the file has no rows")
    return rows


def _jsonl_rows(p: Path, data: bytes, limit: int | None) -> Iterator[Row]:
    good = 0
    for n, raw in enumerate(data.split(b"\n"), 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Row(f"line {n}", error=f"{p}: line {n}, column {exc.start + 1}: not UTF-8 text ({exc.reason})")
            continue
        try:
            obj = parse_json(line)
        except ValueError as exc:
            yield Row(f"line {n}", error=f"{p}: line {n}, {exc}")
            continue
        if not isinstance(obj, dict):
            yield Row(f"line {n}", error=f"{p}: line {n}, column 1: expected a JSON object, got {_type_name(obj)}")
            continue
        yield Row(f"line {n}", obj)
        good += 1
        if limit and good >= limit:
            return


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _where(text: str, i: int) -> tuple[int, int]:
    return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1


def _json_rows(p: Path, text: str, limit: int | None) -> list[Row]:
    """A JSON array of objects, decoded element by element so each row knows its line. A syntax error ends the
    file (there is no next element to find after it): the rows before it are kept and the error is the last row."""
    dec = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i >= len(text):
        return []
    if text[i] != "[":
        try:
            obj = parse_json(text)
        except ValueError as exc:
            raise WorkbenchError(f"{p}: {exc}") from None
        line, col = _where(text, i)
        raise WorkbenchError(f"{p}: line {line}, column {col}: expected a JSON array of objects, got {_type_name(obj)}"
                             " (use JSONL for one object per line)")
    rows: list[Row] = []
    good = 0
    deep = first_too_deep(text, MAX_JSON_DEPTH + 1)  # + 1: the array around the rows
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "]":
        return rows
    while True:
        line, col = _where(text, i)
        try:
            obj, end = dec.raw_decode(text, i)
            if deep is not None and i <= deep < end:
                raise RecursionError
        except json.JSONDecodeError as exc:
            rows.append(Row(f"line {exc.lineno}", error=f"{p}: line {exc.lineno}, column {exc.colno}: not valid JSON "
                            f"({exc.msg}); the rest of the file is not read"))
            return rows
        except (RecursionError, ValueError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            rows.append(Row(f"line {line}", error=f"{p}: line {line}, column {col}: not readable ({why}); "
                            "the rest of the file is not read"))
            return rows
        if isinstance(obj, dict):
            rows.append(Row(f"line {line}", obj))
            good += 1
            if limit and good >= limit:
                return rows
        else:
            rows.append(Row(f"line {line}", error=f"{p}: line {line}, column {col}: expected a JSON object, "
                            f"got {_type_name(obj)}"))
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "]":
            j = _skip_ws(text, i + 1)
            if j < len(text):
                line, col = _where(text, j)
                rows.append(Row(f"line {line}", error=f"{p}: line {line}, column {col}: not valid JSON (extra data after "
                                "the JSON array)"))
            return rows
        line, col = _where(text, i)
        rows.append(Row(f"line {line}", error=f"{p}: line {line}, column {col}: not valid JSON (expected ',' or ']' "
                        "after an array element); the rest of the file is not read"))
        return rows


def _csv_rows(p: Path, text: str, limit: int | None) -> list[Row]:
    import io

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise WorkbenchError(f"{p}: line 1: not valid CSV ({exc})") from None
    if not header or not any(h.strip() for h in header):
        raise WorkbenchError(f"{p}: line 1: no header row")
    rows: list[Row] = []
    good = 0
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rows.append(Row(f"line {start}", error=f"{p}: line {start}: not valid CSV ({exc})"))
            if reader.line_num < start:  # the reader cannot move past it
                break
            continue
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            rows.append(Row(f"line {start}", error=f"{p}: line {start}: {len(fields)} fields, but the header has "
                            f"{len(header)}"))
            continue
        rows.append(Row(f"line {start}", dict(zip(header, fields))))
        good += 1
        if limit and good >= limit:
            break
    return rows


def _read_parquet(p: Path, limit: int | None) -> list[Row]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise WorkbenchError(f"{p}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    if limit:
        table = table.slice(0, limit)
    if table.num_rows == 0:
        raise WorkbenchError(f"{p}: the file has no rows")
    return [Row(f"row {k}", r) for k, r in enumerate(table.to_pylist(), 1)]


def read_jsonl(path: str | Path) -> list[Row]:
    """The rows of a JSONL file whatever its name (e.g. `records.jsonl.bak`); see `read_rows`."""
    return read_rows(path, kind=".jsonl")


def as_integer(v) -> int | None:
    """v as an int when it is one (an int, an integral finite float, or up to 18 digits as text), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if math.isfinite(v) and v.is_integer() else None
    if isinstance(v, str) and v.strip().lstrip("-").isdigit() and len(v.strip()) <= 19:
        return int(v)
    return None


# The repository a workbench is installed from (`pip install -e .`): recipes/, results/ and outputs/ live there.
REPO_ROOT = Path(__file__).resolve().parent.parent


def repo_path(path: str | Path) -> Path:
    """A relative path of the repository (`recipes/cpu/...`, `outputs/...`) made independent of the working folder:
    as given when it exists from here, else under the repository the package runs from (a notebook's kernel starts
    in notebooks/, a user may run `workbench train` from anywhere). Absolute paths are returned as they are."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists() or not (REPO_ROOT / "recipes").is_dir():
        return p
    return REPO_ROOT / p


def finite_number(v) -> float | None:
    """v as a finite float, or None (for null, text, booleans, NaN and the infinities)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


# ================================================================================================== writing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path: str | Path, *, inputs: Iterable[str | Path] = (), what: str = "output") -> Path:
    """Say now, before any work, when `path` cannot be written: a folder, an unwritable folder, or one of `inputs`."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise WorkbenchError(f"{what} {p} is a folder; give a file name, e.g. {p / 'out.jsonl'}")
    for src in inputs:
        with contextlib.suppress(OSError):
            if p.exists() and Path(src).exists() and p.resolve() == Path(src).resolve():
                raise WorkbenchError(f"{what} {p} is also the input: it would replace it; give another file name")
    parent = p.parent if str(p.parent) else Path(".")
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise WorkbenchError(f"{what} {p}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise WorkbenchError(f"{what} {p}: no permission to write in {existing}; choose another place")
    return p


def write_atomic(path: str | Path, text: str) -> None:
    """Write text to a temp file beside `path`, then rename: readers never see a half-written file."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    except OSError as exc:
        raise WorkbenchError(f"cannot write {p}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are ordinary files (0644 by default)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def jsonl_text(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> None:
    write_atomic(path, jsonl_text(rows))


def _lock_path(path: str | Path) -> Path:
    p = Path(path).resolve()
    return p.parent / f".{p.name}.lock"  # one hidden lock file beside the output, shared by every process


_HELD: set[Path] = set()  # outputs this process holds with `exclusive`: its own appends need no second lock


@contextlib.contextmanager
def exclusive(path: str | Path, what: str = "another run"):
    """Hold a lock on `path` for a whole run; a second run on the same path is refused at once (not queued).

    The lock is an OS file lock: it dies with its process, so a killed run never leaves it held.
    """
    from filelock import FileLock, Timeout

    where = _lock_path(path)
    if where in _HELD:
        raise WorkbenchError(f"{path} is already being written by this process")
    lock = FileLock(str(where), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise WorkbenchError(f"{path} is being written by {what}; wait for it to finish or choose another output"
                             ) from None
    _HELD.add(where)
    try:
        yield
    finally:
        _HELD.discard(where)
        lock.release()


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Append rows to a JSONL file under its lock, flushed to disk: a reader sees whole lines only."""
    from filelock import FileLock

    text = jsonl_text(rows)
    if not text:
        return
    where = _lock_path(path)
    lock = contextlib.nullcontext() if where in _HELD else FileLock(str(where))
    with lock, open(path, "a", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
