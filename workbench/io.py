"""Small file helpers: JSONL reading with line-numbered errors, atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import WorkbenchError


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """Yield (line_number, object, error) for each non-blank line; error names what is wrong with the line."""
    p = Path(path)
    if not p.is_file():
        raise WorkbenchError(f"{p}: no such file")
    try:
        fh = p.open(encoding="utf-8")
        with fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield n, None, f"{p}:{n}: not valid JSON ({exc.msg} at column {exc.colno})"
                    continue
                if not isinstance(obj, dict):
                    yield n, None, f"{p}:{n}: expected a JSON object, got {type(obj).__name__}"
                    continue
                yield n, obj, None
    except UnicodeDecodeError as exc:
        raise WorkbenchError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, text: str) -> None:
    """Write text to a temp file beside `path`, then rename: readers never see a half-written file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
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


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
