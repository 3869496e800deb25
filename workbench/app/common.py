"""What every tab uses: layout constants, the status line, error boxes, toasts, and finding a problem."""

from __future__ import annotations

import html

from workbench import compare

MAX_SOURCES = 6  # explanation columns shown side by side
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "\\[", "right": "\\]", "display": True},
    {"left": "$", "right": "$", "display": False},
    {"left": "\\(", "right": "\\)", "display": False},
]
MODEL_QUEUE = {"concurrency_limit": 1, "concurrency_id": "model"}


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
