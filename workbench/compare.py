"""Comparing explanations of the same problem: text metrics, steps and their alignment, the problem table,
search and filters, and reward scoring that is cached and shares its models across users of the app.

Everything here is plain data in, plain data out, so the app (`workbench/app/`) and the notebooks call the same
functions. Problems have the shape documented in `workbench.data` (id, question, solution, sources, ...).

Definitions used in the app and its exports:
- tokens: explanation tokens under the teacher's tokenizer (the text between the explanation tags).
- steps: paragraphs, i.e. the text split at blank lines (`split_steps`).
- markers: self-correction phrases such as "wait", "hmm", "let me double-check" (`MARKERS`, whole words,
  case-insensitive); R1 traces are full of them, good explanations rarely need them.
- step similarity: cosine similarity of the bags of content words and numbers of two steps (`step_similarity`);
  two steps of different columns "say the same" when each is the other's most similar step and the
  similarity is at least a threshold (0.5 by default).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import WorkbenchError

# ---------------------------------------------------------------------------------------------- sources

SOURCE_LABELS = {"rlt": "RLT explanation", "r1": "R1 trace", "generated": "Generated (teacher)",
                 "before": "Teacher before RL", "after": "Teacher after RL"}
SOURCE_ORDER = ("rlt", "r1")


def source_label(name: str) -> str:
    """Human name of an explanation source ("rlt" -> "RLT explanation"); other names are shown as they are."""
    return SOURCE_LABELS.get(name, name)


# The order in which sources are considered when steps are lettered (align_steps): the known sources first,
# any other in the order given, the freshly generated explanation last. A source added to a comparison later in
# this order never changes the letters (and colours) the others' steps already have.
STABLE_SOURCE_ORDER = ("rlt", "r1", "before", "after")


def stable_source_order(names: Iterable[str]) -> list[str]:
    """The names in the stable order (STABLE_SOURCE_ORDER first, others as given, "generated" last)."""
    names = list(dict.fromkeys(names))
    known = [s for s in STABLE_SOURCE_ORDER if s in names]
    rest = [s for s in names if s not in STABLE_SOURCE_ORDER and s != "generated"]
    return known + rest + (["generated"] if "generated" in names else [])


def source_names(problems: Iterable[dict]) -> list[str]:
    """Every source that occurs in the problems: rlt, r1 first, then the others in order of appearance, generated last."""
    seen: dict[str, None] = {}
    for p in problems:
        for s in p.get("sources", {}):
            seen.setdefault(s, None)
    names = [s for s in SOURCE_ORDER if s in seen] + [s for s in seen if s not in SOURCE_ORDER and s != "generated"]
    return names + (["generated"] if "generated" in seen else [])


# ---------------------------------------------------------------------------------------------- text metrics

# Self-correction markers: name -> regular expression (case-insensitive, whole words).
MARKERS: dict[str, str] = {
    "wait": r"\bwait\b",
    "hmm": r"\bhm+\b",
    "let me double-check": r"\blet me (?:double[- ]check|re-?check|check|verify|re-?do|reconsider|re-?examine)\b",
    "actually": r"\bactually\b",
    "alternatively": r"\balternatively\b",
    "hold on": r"\bhold on\b",
    "mistake": r"\b(?:mistake|i was wrong|that's wrong|that is wrong)\b",
}
_MARKER_RES = {k: re.compile(v, re.IGNORECASE) for k, v in MARKERS.items()}
_MARKER_ANY = re.compile("|".join(f"(?:{v})" for v in MARKERS.values()), re.IGNORECASE)


def count_markers(text: str) -> dict[str, int]:
    """Occurrences of each self-correction marker in the text (see MARKERS)."""
    return {k: len(r.findall(text or "")) for k, r in _MARKER_RES.items()}


def marker_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of every marker occurrence (for highlighting)."""
    return [m.span() for m in _MARKER_ANY.finditer(text or "")]


def split_steps(text: str) -> list[str]:
    """Steps of an explanation: the paragraphs, i.e. the text split at blank lines, stripped, empties dropped."""
    return [s.strip() for s in re.split(r"\n[ \t]*\n", (text or "").strip()) if s.strip()]


_METRICS_CACHE: OrderedDict[tuple, dict] = OrderedDict()
_METRICS_LOCK = threading.Lock()


def text_metrics(text: str, tokenizer=None) -> dict:
    """tokens (teacher tokenizer; whitespace words when none is given), steps, markers (total) and per marker.

    Results are memoised per (tokenizer, text), so tables over large data sets are re-filtered cheaply.
    """
    text = text or ""
    key = (getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None, id(tokenizer), text)
    with _METRICS_LOCK:
        hit = _METRICS_CACHE.get(key)
    if hit is not None:
        return hit
    if tokenizer is not None:
        tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
    else:
        tokens = len(text.split())
    counts = count_markers(text)
    out = {"tokens": tokens, "steps": len(split_steps(text)), "markers": sum(counts.values()),
           "marker_counts": counts, "chars": len(text)}
    with _METRICS_LOCK:
        _METRICS_CACHE[key] = out
        while len(_METRICS_CACHE) > 50_000:
            _METRICS_CACHE.popitem(last=False)
    return out


# ---------------------------------------------------------------------------------------------- step alignment

_STOPWORDS = frozenset(
    "a an the and or but if then so of to in on at by for with from as is are was were be been being it its this "
    "that these those we i you he she they our your their my me us them there here which who whom what when where "
    "how why can could would should will shall may might must do does did done have has had not no yes also just "
    "than too very into onto over under again more most less least each every all any some such only own same both "
    "let lets let's us now one".split()
)
_WORD = re.compile(r"[a-z]+|\d+(?:[.,]\d+)*")


def step_bag(text: str) -> Counter:
    """The bag of content words and numbers of a step: lower-cased words (minus stop words) and numbers."""
    return Counter(w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit()))


def _cosine(a: Counter, b: Counter) -> float:
    if not a or not b:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    if not dot:
        return 0.0
    return dot / math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))


def step_similarity(a: str, b: str) -> float:
    """Cosine similarity (0..1) of the bags of content words and numbers of two steps."""
    return _cosine(step_bag(a), step_bag(b))


@dataclass
class StepLink:
    """A step of another column that says the same as this one."""

    column: str
    step: int  # 0-based
    similarity: float


@dataclass
class AlignedStep:
    text: str
    group: int | None = None  # steps with the same group say the same thing; None: no counterpart
    links: list[StepLink] = field(default_factory=list)


def align_steps(columns: dict[str, list[str]], threshold: float = 0.5,
                order: Iterable[str] | None = None) -> dict[str, list[AlignedStep]]:
    """Link steps of different columns that say the same, and give linked steps a group number (its letter and
    colour in the app: `viz.group_label`, `viz.group_colour`).

    For every pair of columns, step i of A and step j of B are linked when j is i's most similar step in B,
    i is j's most similar step in A (mutual best match) and their similarity is >= threshold.

    Group numbers are stable: columns are taken in `order` (default: `stable_source_order`, whatever order the
    dict has), pairs are visited as the columns come (A–B, then A–C and B–C, ...), and a linked step joins the
    group its partner already has, or opens the next group. So adding a column (later in the order) never
    changes the groups of the steps the other columns already had, it only adds groups; a step it links to two
    different groups joins the first and keeps both links (groups are not merged).
    """
    names = [n for n in (order if order is not None else stable_source_order(columns)) if n in columns]
    names += [n for n in columns if n not in names]
    bags = {n: [step_bag(s) for s in columns[n]] for n in names}
    out = {n: [AlignedStep(s) for s in columns[n]] for n in columns}
    next_group = 0
    for bi, b in enumerate(names):
        for a in names[:bi]:
            if not bags[a] or not bags[b]:
                continue
            sim = [[_cosine(x, y) for y in bags[b]] for x in bags[a]]
            best_b = [max(range(len(row)), key=row.__getitem__) for row in sim]
            best_a = [max(range(len(sim)), key=lambda i, j=j: sim[i][j]) for j in range(len(bags[b]))]
            for i, j in enumerate(best_b):
                s = sim[i][j]
                if s >= threshold and best_a[j] == i:
                    sa, sb = out[a][i], out[b][j]
                    sa.links.append(StepLink(b, j, s))
                    sb.links.append(StepLink(a, i, s))
                    if sa.group is None and sb.group is None:
                        sa.group = sb.group = next_group
                        next_group += 1
                    elif sa.group is None:
                        sa.group = sb.group
                    elif sb.group is None:
                        sb.group = sa.group
    shown = list(columns)
    for n in out:  # links in the order of the columns, as shown
        for st in out[n]:
            st.links.sort(key=lambda lk: (shown.index(lk.column), lk.step))
    return out


# ---------------------------------------------------------------------------------------------- problem table

METRIC_NAMES = ("tokens", "steps", "markers", "reward", "r_ss", "r_kl")
TABLE_BASE_COLUMNS = ("id", "question")


def metric_column(source: str, metric: str) -> str:
    """Name of a metric column of the problem table, e.g. ("r1", "markers") -> "r1 markers"."""
    return f"{source} {metric}"


def problem_table(problems: list[dict], tokenizer=None, rewards: Callable[[dict, str], Any] | None = None,
                  sources: list[str] | None = None, question_chars: int | None = 60):
    """One row per problem: id, topic, question (shortened to `question_chars` with "…" for display; None or 0:
    whole), and per source tokens, steps, markers and, where `rewards(problem, source)` returns a result, reward,
    r_ss and r_kl (NaN when not scored yet). For a file, use `export_problems` (full texts)."""
    import pandas as pd

    sources = sources or source_names(problems)
    rows = []
    has_topic = any(p.get("meta", {}).get("topic") for p in problems)
    for p in problems:
        q = " ".join(p["question"].split())
        row: dict[str, Any] = {"id": p["id"]}
        if has_topic:
            row["topic"] = p.get("meta", {}).get("topic", "")
        row["question"] = q if not question_chars or len(q) <= question_chars else q[: question_chars - 1] + "…"
        for s in sources:
            text = p["sources"].get(s)
            m = text_metrics(text, tokenizer) if text else None
            r = rewards(p, s) if (rewards and text) else None
            for k in ("tokens", "steps", "markers"):
                row[metric_column(s, k)] = m[k] if m else None
            for k in ("reward", "r_ss", "r_kl"):
                v = getattr(r, k, None) if r is not None else None
                row[metric_column(s, k)] = round(v, 4) if isinstance(v, float) else None
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in df.columns:
        if c.split(" ")[-1] in METRIC_NAMES:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def long_table(problems: list[dict], tokenizer=None, rewards: Callable[[dict, str], Any] | None = None,
               texts: bool = False):
    """One row per (problem, source) with every metric: the input of the dataset charts and of the exports.

    texts=True adds the full question, solution, explanation and raw completion (None when the explanation has
    none) after id and source, and the reward a run recorded (meta["recorded"]) when there is one: see
    `export_explanations`."""
    import pandas as pd

    rows = []
    for p in problems:
        for s, text in p["sources"].items():
            m = text_metrics(text, tokenizer)
            r = rewards(p, s) if rewards else None
            ok = r is not None and getattr(r, "error", None) is None
            row = {"id": p["id"], "source": s}
            if texts:
                row.update({"label": source_label(s), "question": p.get("question", ""),
                            "solution": p.get("solution", ""), "explanation": text,
                            "completion": (p.get("completions") or {}).get(s)})
            row.update({"tokens": m["tokens"], "steps": m["steps"], "markers": m["markers"],
                        **{f"marker {k}": v for k, v in m["marker_counts"].items()}})
            for k in ("reward", "r_ss", "r_kl", "kl_mean", "solution_logprob_mean", "format_penalty"):
                row[k] = getattr(r, k, None) if ok else None
            if texts:
                row["score error"] = getattr(r, "error", None) if r is not None else None
                recorded = ((p.get("meta") or {}).get("recorded") or {}).get(s)
                row["recorded reward"] = recorded if isinstance(recorded, (int, float)) else None
            rows.append(row)
    df = pd.DataFrame(rows)
    for k in ("reward", "r_ss", "r_kl", "kl_mean", "solution_logprob_mean", "format_penalty", "recorded reward"):
        if k in df:
            df[k] = pd.to_numeric(df[k], errors="coerce")
    return df


# ---------------------------------------------------------------------------------------------- exports

_META_FIRST = ("topic", "difficulty")


def _meta_columns(problems: list[dict]) -> list[str]:
    """Scalar meta fields of the problems (topic, difficulty first), for the exports."""
    keys: dict[str, None] = {}
    for p in problems:
        for k, v in (p.get("meta") or {}).items():
            if isinstance(v, (str, int, float, bool)) and v is not None:
                keys.setdefault(k, None)
    return [k for k in _META_FIRST if k in keys] + [k for k in keys if k not in _META_FIRST]


def export_problems(problems: list[dict], tokenizer=None, rewards: Callable[[dict, str], Any] | None = None,
                    sources: list[str] | None = None):
    """The problem table for a file: one row per problem with the WHOLE question and solution (never the
    display's "…"), the scalar meta fields (topic, difficulty, ...), and per source its whole explanation, its raw
    completion (a column only for sources that have one), tokens, steps, markers, reward, r_ss, r_kl and the
    reward a run recorded (a column only where there is one). Write it with `table_to_csv` / `table_to_jsonl`
    (spreadsheet-formula cells are neutralised there)."""
    import pandas as pd

    sources = sources or source_names(problems)
    meta_cols = _meta_columns(problems)
    has_completion = {s: any(s in (p.get("completions") or {}) for p in problems) for s in sources}
    has_recorded = {s: any(s in ((p.get("meta") or {}).get("recorded") or {}) for p in problems) for s in sources}
    rows = []
    for p in problems:
        meta = p.get("meta") or {}
        row: dict[str, Any] = {"id": p["id"]}
        for k in meta_cols:
            v = meta.get(k)
            row[k if k in _META_FIRST else f"meta {k}"] = v if isinstance(v, (str, int, float, bool)) else None
        row["question"] = p.get("question", "")
        row["solution"] = p.get("solution", "")
        for s in sources:
            text = p["sources"].get(s)
            row[metric_column(s, "explanation")] = text
            if has_completion[s]:
                row[metric_column(s, "completion")] = (p.get("completions") or {}).get(s)
            m = text_metrics(text, tokenizer) if text else None
            r = rewards(p, s) if (rewards and text) else None
            ok = r is not None and getattr(r, "error", None) is None
            for k in ("tokens", "steps", "markers"):
                row[metric_column(s, k)] = m[k] if m else None
            for k in ("reward", "r_ss", "r_kl"):
                v = getattr(r, k, None) if ok else None
                row[metric_column(s, k)] = v if isinstance(v, (int, float)) else None
            if has_recorded[s]:
                v = (meta.get("recorded") or {}).get(s)
                row[metric_column(s, "recorded reward")] = v if isinstance(v, (int, float)) else None
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in df.columns:
        if c.split(" ")[-1] in ("tokens", "steps", "markers"):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")  # counts stay whole where some are missing
        elif c.split(" ")[-1] in METRIC_NAMES or c.endswith(" recorded reward"):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def export_explanations(problems: list[dict], tokenizer=None, rewards: Callable[[dict, str], Any] | None = None):
    """One row per (problem, source) for a file: id, source, label, the whole question, solution, explanation and
    raw completion (None when there is none), then every metric (see long_table; `score error` says why an
    explanation has no reward). Write it with `table_to_csv` / `table_to_jsonl`."""
    return long_table(problems, tokenizer, rewards, texts=True)


def _result_metrics(problem: dict, source: str, tokenizer, rewards) -> tuple[dict, Any]:
    text = problem["sources"].get(source) or ""
    r = rewards(problem, source) if rewards else None
    if r is not None and getattr(r, "error", None) is not None:
        r = None
    return text_metrics(text, tokenizer), r


def _html_with_markers(text: str) -> str:
    """Escaped HTML of a text with its self-correction markers in <mark>."""
    import html

    from .viz import MARKER_COLOURS

    out, last = [], 0
    for a, b in marker_spans(text):
        out += [html.escape(text[last:a]),
                f'<mark style="background:{MARKER_COLOURS["background"]};color:{MARKER_COLOURS["text"]}">'
                f"{html.escape(text[a:b])}</mark>"]
        last = b
    out.append(html.escape(text[last:]))
    return "".join(out)


def side_by_side_html(problem: dict, sources: list[str] | None = None, *, labels: dict[str, str] | None = None,
                      rewards: Callable[[dict, str], Any] | None = None, tokenizer=None, align: bool = True,
                      threshold: float = 0.5, title: str | None = None) -> str:
    """A standalone, printable HTML page of one problem: the question and solution, then the explanations in
    columns (one per source, in the order given; default: every source of the problem), each with its tokens,
    steps, markers and, where `rewards(problem, source)` has a result, reward, r_SS and r_KL. With align=True the
    steps are drawn as in the Compare tab: steps that say the same share a coloured bar and a group letter
    (`align_steps`, same letters and colours as the app). Every text is escaped (shown, never interpreted); the
    page is always light (`color-scheme: light`) and prints in landscape, columns side by side."""
    import html

    from . import viz

    sources = [s for s in (sources or source_names([problem])) if s in problem["sources"]]
    labels = labels or {}
    lab = {s: labels.get(s, source_label(s)) for s in sources}
    aligned = (align_steps({s: split_steps(problem["sources"][s]) for s in sources}, threshold) if align
               else {s: [AlignedStep(t) for t in split_steps(problem["sources"][s])] for s in sources})
    lt = viz.SCHEMES["light"]
    esc = html.escape
    meta = problem.get("meta") or {}
    tags = " · ".join(f"{k}: {esc(str(meta[k]))}" for k in ("topic", "difficulty") if meta.get(k))
    heading = title or f"Problem {problem['id']}"
    cols = []
    for s in sources:
        m, r = _result_metrics(problem, s, tokenizer, rewards)
        stats = f"{m['tokens']} tokens · {m['steps']} steps · {m['markers']} markers"
        if r is not None and getattr(r, "reward", None) is not None:
            pen = " · no end tag (−1)" if getattr(r, "format_penalty", 0) else ""
            stats += (f"<br><b>reward {viz.fmt(r.reward)}</b> · r_SS {viz.fmt(getattr(r, 'r_ss', None))} · "
                      f"r_KL {viz.fmt(getattr(r, 'r_kl', None))}{pen}")
        steps = []
        for i, st in enumerate(aligned[s]):
            if st.group is not None:
                border, bg = viz.group_colour(st.group)
                links = "; ".join(f"≈ {lab.get(lk.column, lk.column)} §{lk.step + 1} ({lk.similarity:.2f})"
                                  for lk in st.links)
                tag = f"§{i + 1} · <b>{viz.group_label(st.group)}</b> · {esc(links)}"
                style = f' style="border-left-color:{border};background:{bg};color:{lt["text"]}"'
            else:
                tag, style = f"§{i + 1}", ""
            steps.append(f'<div class="step"{style}><div class="tag">{tag}</div>{_html_with_markers(st.text)}</div>')
        cols.append(f'<section class="col"><h2 style="border-bottom-color:{viz.source_colour(s)}">{esc(lab[s])}</h2>'
                    f'<div class="stats">{stats}</div>{"".join(steps) or "<p class=tag>(empty)</p>"}</section>')
    n = max(1, len(cols))
    css = (f":root{{color-scheme:light}}body{{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;"
           f"color:{lt['text']};background:{lt['surface']};margin:16px;font-size:14px;line-height:1.45}}"
           "h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:0 0 4px;padding-bottom:3px;border-bottom:4px solid}"
           f".meta,.stats,.tag{{color:{lt['muted']}}}.tag{{font-size:11px}}.stats{{font-size:12px;margin-bottom:6px}}"
           f".text{{white-space:pre-wrap;word-break:break-word;border:1px solid {lt['border']};border-radius:4px;"
           "padding:6px 10px;margin:4px 0 12px}"
           f".cols{{display:grid;grid-template-columns:repeat({n},minmax(0,1fr));gap:12px;align-items:start}}"
           ".step{white-space:pre-wrap;word-break:break-word;border-left:5px solid transparent;padding:2px 8px;"
           "margin:6px 0;border-radius:3px}.step .tag{white-space:normal}"
           "@media (max-width:700px){.cols{grid-template-columns:1fr}}"
           "@media print{@page{size:landscape;margin:10mm}body{margin:0;font-size:10pt}.cols{gap:6px}"
           ".step{break-inside:avoid}*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}")
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="color-scheme" content="light">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(heading)}</title><style>{css}</style></head><body>"
            f"<h1>{esc(heading)}</h1>" + (f'<div class="meta">{tags}</div>' if tags else "")
            + f'<h2 style="border-bottom-color:{lt["border"]}">Question</h2><div class="text">{esc(problem.get("question", ""))}</div>'
            + f'<h2 style="border-bottom-color:{lt["border"]}">Reference solution</h2>'
              f'<div class="text">{esc(problem.get("solution", ""))}</div>'
            + f'<div class="cols">{"".join(cols)}</div></body></html>\n')


def side_by_side_markdown(problem: dict, sources: list[str] | None = None, *, labels: dict[str, str] | None = None,
                          rewards: Callable[[dict, str], Any] | None = None, tokenizer=None) -> str:
    """One problem as Markdown (for notes or a slide): question, solution, a table of every source's metrics and
    rewards, then each explanation under its own heading. Tags in the texts are escaped (LaTeX kept), labels and
    ids are plain text."""
    from . import viz

    sources = [s for s in (sources or source_names([problem])) if s in problem["sources"]]
    labels = labels or {}
    meta = problem.get("meta") or {}
    out = [f"# Problem {viz.escape_markdown_text(problem['id'])}"]
    tags = " · ".join(f"{k}: {viz.escape_markdown_text(meta[k])}" for k in ("topic", "difficulty") if meta.get(k))
    if tags:
        out.append(tags)
    out += ["## Question", viz.escape_markdown_html(problem.get("question", "")),
            "## Reference solution", viz.escape_markdown_html(problem.get("solution", ""))]
    rows = ["| source | tokens | steps | markers | reward | r_SS | r_KL |", "|---|---:|---:|---:|---:|---:|---:|"]
    bodies = []
    for s in sources:
        m, r = _result_metrics(problem, s, tokenizer, rewards)
        name = viz.escape_markdown_text(labels.get(s, source_label(s))).replace("|", "&#124;")
        vals = [viz.fmt(getattr(r, k, None)) if r is not None else "—" for k in ("reward", "r_ss", "r_kl")]
        rows.append(f"| {name} | {m['tokens']} | {m['steps']} | {m['markers']} | " + " | ".join(vals) + " |")
        bodies += [f"## {name}", viz.escape_markdown_html(problem["sources"][s])]
    if sources:
        out += ["## Explanations", "\n".join(rows)] + bodies
    return "\n\n".join(out) + "\n"


SEARCH_TIMEOUT_S = 1.0  # a regular expression search of the whole table stops after this long
MAX_PATTERN_CHARS = 1000
MAX_PATTERN_SIZE = 100_000  # the most copies of a literal that counted repeats ({n}) may ask for, nested counts multiplied
_COUNTED_REPEAT = re.compile(r"\{(\d*)(?:,(\d*))?\}")


def _pattern_size(pattern: str) -> int:
    """An upper bound of how many copies of its atoms a pattern's counted repeats ask for: `x{100}` is 100,
    `(?:x{100}){1000}` is 100,000. The `regex` module unrolls counted repeats when it compiles, so a pattern such
    as `(?:x{100}){65535}` takes gigabytes before any timeout applies; this bound is checked first."""
    stack: list[int] = [0]  # size of the group being read, innermost last
    last = 0  # size of the atom just read (what a quantifier applies to)
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            stack[-1] += 1
            last = 1
            continue
        if c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i = j + 1
            stack[-1] += 1
            last = 1
            continue
        if c == "(":
            stack.append(0)
            i += 1
            continue
        if c == ")" and len(stack) > 1:
            last = max(stack.pop(), 1)
            stack[-1] += last
            i += 1
            continue
        if c == "{":
            m = _COUNTED_REPEAT.match(pattern, i)
            if m and (m.group(1) or m.group(2)):
                lo, hi = m.group(1), m.group(2)
                count = int(hi) if hi else int(lo or 0)
                stack[-1] += last * (max(count, 1) - 1)
                last *= max(count, 1)
                i = m.end()
                continue
        stack[-1] += 1
        last = 1
        i += 1
    return sum(stack)


def compile_search(query: str):
    """The compiled user regular expression (case-insensitive) of a search, with the `regex` module, whose matches
    take a timeout and release the GIL. Raises WorkbenchError for a bad, overlong or too repetitive expression."""
    import regex as rx

    if len(query) > MAX_PATTERN_CHARS:
        raise WorkbenchError(f"the regular expression is too long ({len(query)} characters; at most "
                             f"{MAX_PATTERN_CHARS})")
    size = _pattern_size(query)
    if size > MAX_PATTERN_SIZE:
        raise WorkbenchError(f"the regular expression repeats too much: its counted repeats ({{n}}) ask for about "
                             f"{size:,} copies (at most {MAX_PATTERN_SIZE:,}); use smaller counts, or + and *")
    try:
        return rx.compile(query, rx.IGNORECASE)
    except (rx.error, OverflowError, RecursionError, ValueError) as exc:
        raise WorkbenchError(f"bad regular expression {query!r}: {exc}") from None


def search_problems(problems: list[dict], query: str, regex: bool = False, fields: tuple[str, ...] = ("question",),
                    timeout_s: float = SEARCH_TIMEOUT_S) -> set[str]:
    """Ids of problems whose fields (question, solution, or "sources" for all explanations) match the query.

    Plain text is matched case-insensitively as a substring; with regex=True the query is a regular expression
    (case-insensitive, Python syntax, run by the `regex` module). A bad expression raises WorkbenchError, and so does
    a search that takes longer than `timeout_s` in all (a pattern such as `(a|aa)+c` can take exponential time):
    the match is stopped, and while it runs other threads (other users of the app) are served, as it releases
    the GIL.
    """
    if not query or not query.strip():
        return {p["id"] for p in problems}
    if regex:
        pat = compile_search(query)
        deadline = time.monotonic() + timeout_s

        def match(t: str):
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                return pat.search(t, timeout=left, concurrent=True)
            except TimeoutError:
                raise WorkbenchError(f"the search took too long (over {timeout_s:g} s) and was stopped: the regular "
                                     f"expression {query!r} may backtrack too much (nested repeats such as (a+)+ or "
                                     f"(a|aa)+ do); simplify it, search fewer fields, or untick regex") from None
    else:
        q = query.lower()

        def match(t: str):
            return q in t.lower()

    out = set()
    for p in problems:
        texts = []
        for f in fields:
            if f == "sources":
                texts += list(p["sources"].values())
            elif isinstance(p.get(f), str):
                texts.append(p[f])
        if any(match(t) for t in texts):
            out.add(p["id"])
    return out


def filter_table(df, ids: set[str] | None = None, metric: str | None = None, lo: float | None = None,
                 hi: float | None = None, sort_by: str | None = None, descending: bool = True):
    """Rows of the problem table with id in `ids`, `lo <= metric <= hi` (rows without a value are dropped when a
    bound is given), sorted by a column (missing values last)."""
    out = df
    if ids is not None:
        out = out[out["id"].isin(ids)]
    if metric and metric in out.columns:
        if lo is not None and not (isinstance(lo, float) and math.isnan(lo)):
            out = out[out[metric] >= lo]
        if hi is not None and not (isinstance(hi, float) and math.isnan(hi)):
            out = out[out[metric] <= hi]
    if sort_by and sort_by in out.columns:
        out = out.sort_values(sort_by, ascending=not descending, na_position="last", kind="stable")
    return out


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """A text cell that a spreadsheet would read as a formula (it starts with = + - @ tab or CR) gets a leading `'`
    (the OWASP rule against CSV injection: `=HYPERLINK(...)` is then shown as text). Numbers are left alone."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def table_to_csv(df) -> str:
    """CSV text of a table (UTF-8, header row, CRLF line ends); text cells and column names that would start a
    spreadsheet formula are prefixed with `'` (see csv_safe)."""
    safe = df.rename(columns=lambda c: csv_safe(str(c)) if isinstance(c, str) else c)
    for c in safe.columns:
        if safe[c].dtype == object or str(safe[c].dtype) in ("string", "str"):
            safe[c] = safe[c].map(csv_safe)
    buf = io.StringIO()
    # CRLF line ends (RFC 4180): a cell holding a lone CR or LF is then quoted, so it cannot start a row of its own
    safe.to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    return buf.getvalue()


def table_to_jsonl(df) -> str:
    """JSONL text of a table, one object per row; missing values are null."""
    import pandas as pd

    lines = []
    for rec in df.to_dict(orient="records"):
        clean = {k: (None if (isinstance(v, float) and math.isnan(v)) or v is pd.NA else v) for k, v in rec.items()}
        lines.append(json.dumps(clean, ensure_ascii=False, default=_json_default))
    return "\n".join(lines) + ("\n" if lines else "")


def _json_default(v):
    if hasattr(v, "item"):
        return v.item()
    return str(v)


# ---------------------------------------------------------------------------------------------- scoring


def score_item(problem: dict, source: str) -> dict:
    """The reward item of one explanation source of a problem: raw completion when we have it (so a missing end
    tag is penalised), else the explanation body."""
    item = {"id": f"{problem['id']}:{source}", "question": problem["question"], "solution": problem["solution"]}
    completion = problem.get("completions", {}).get(source)
    if completion is not None:
        item["completion"] = completion
    else:
        item["explanation"] = problem["sources"][source]
    return item


def _config_key(config) -> str:
    from dataclasses import asdict

    return json.dumps(asdict(config), sort_keys=True, default=str)


class ScoreCache:
    """Thread-safe LRU cache of reward results keyed by (teacher, student, reward config, question, solution, text)."""

    def __init__(self, max_items: int = 4096):
        self.max_items = max_items
        self._data: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(scorer_key: tuple, item: dict) -> tuple:
        text = item.get("completion")
        kind = "completion" if isinstance(text, str) else "explanation"
        return (*scorer_key, item.get("question"), item.get("solution"), kind, text if kind == "completion" else item.get("explanation"))

    def get(self, key: tuple):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key: tuple, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_items:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class SharedModels:
    """Loads each model and tokenizer once per process and shares them between users and sessions.

    `scorer(teacher, student)` returns a cached RLTScorer; `score(...)` scores items through the result cache.
    Loading is serialised by a lock; model work itself is serialised by the caller (the app's queue).
    """

    def __init__(self, device: str = "auto", config=None, cache: ScoreCache | None = None):
        from .rewards import RewardConfig

        self.device = device
        self.config = config or RewardConfig()
        self.cache = cache or ScoreCache()
        self._models: dict[str, Any] = {}
        self._tokenizers: dict[str, Any] = {}
        self._scorers: dict[tuple, Any] = {}
        self._lock = threading.RLock()

    def tokenizer(self, name: str):
        from .models import load_tokenizer

        with self._lock:
            if name not in self._tokenizers:
                self._tokenizers[name] = load_tokenizer(name)
            return self._tokenizers[name]

    def model(self, name: str):
        from .models import load_model

        with self._lock:
            if name not in self._models:
                self._models[name] = load_model(name, self.device)
            return self._models[name]

    def scorer(self, teacher: str, student: str):
        from .rewards import RLTScorer

        key = (teacher, student)
        with self._lock:
            if key not in self._scorers:
                tok = self.tokenizer(teacher)
                student_tok = None if student == teacher else self.tokenizer(student)
                self._scorers[key] = RLTScorer(self.model(teacher), self.model(student), tok, self.config,
                                               student_tokenizer=student_tok)
            return self._scorers[key]

    def scorer_key(self, teacher: str, student: str) -> tuple:
        return (teacher, student, _config_key(self.config))

    def cached(self, teacher: str, student: str, item: dict):
        """The cached result of an item, or None (never computes)."""
        return self.cache.get(ScoreCache.key(self.scorer_key(teacher, student), item))

    def score(self, teacher: str, student: str, items: list[dict], progress: bool = False) -> list:
        """Score items with the RLT reward, computing only those not in the cache."""
        return score_cached(self.scorer(teacher, student), items, self.cache, self.scorer_key(teacher, student), progress)


def score_cached(scorer, items: list[dict], cache: ScoreCache, scorer_key: tuple, progress: bool = False) -> list:
    """`scorer.score(items)` through a cache keyed by (scorer_key, question, solution, text). Identical texts
    in one call are scored once. Results with an error are not cached."""
    keys = [ScoreCache.key(scorer_key, it) for it in items]
    results: list[Any] = [cache.get(k) for k in keys]
    todo: dict[tuple, int] = {}
    for i, (k, r) in enumerate(zip(keys, results)):
        if r is None and k not in todo:
            todo[k] = i
    if todo:
        fresh = scorer.score([items[i] for i in todo.values()], progress=progress)
        for (k, _), r in zip(todo.items(), fresh):
            if r.error is None:
                cache.put(k, r)
            for j, kj in enumerate(keys):
                if kj == k:
                    results[j] = r
    return results


def reward_breakdown(result, previous=None) -> list[dict]:
    """Rows (name, value, previous, delta, note) explaining a reward: r = r_SS - r_KL + m and their parts."""
    rows = [
        ("reward", "reward", "r = r_SS − r_KL + m"),
        ("r_ss", "r_SS", "solution term: mean + 0.01·min of student log-probs (default coefficients)"),
        ("solution_logprob_mean", "  mean student log-prob of solution tokens", "nats"),
        ("solution_logprob_min", "  min student log-prob of solution tokens", "nats"),
        ("r_kl", "r_KL", "explanation term: 3·mean + 0.03·max of KL (default coefficients)"),
        ("kl_mean", "  mean KL per explanation token", "nats"),
        ("kl_max", "  max KL of an explanation token", "nats"),
        ("format_penalty", "m (format penalty)", "−1 when the end tag is missing"),
    ]
    out = []
    for attr, name, note in rows:
        v = getattr(result, attr, None)
        pv = getattr(previous, attr, None) if previous is not None else None
        out.append({"name": name, "value": v, "previous": pv,
                    "delta": (v - pv) if isinstance(v, (int, float)) and isinstance(pv, (int, float)) else None,
                    "note": note})
    n_expl = len(getattr(result, "explanation_tokens", []) or [])
    n_sol = len(getattr(result, "solution_tokens", []) or [])
    pe = len(previous.explanation_tokens) if previous is not None else None
    ps = len(previous.solution_tokens) if previous is not None else None
    out.append({"name": "explanation tokens", "value": n_expl, "previous": pe,
                "delta": n_expl - pe if pe is not None else None, "note": "scored tokens inside the explanation"})
    out.append({"name": "solution tokens", "value": n_sol, "previous": ps,
                "delta": n_sol - ps if ps is not None else None, "note": "scored tokens inside the solution"})
    return out


def result_from_dict(d: dict):
    """Rebuild a RewardResult from `to_dict()` output (the app keeps results as plain dicts in session state)."""
    from .rewards import RewardResult

    known = set(RewardResult.__dataclass_fields__)
    return RewardResult(**{k: v for k, v in d.items() if k in known})


__all__ = [
    "MARKERS", "SOURCE_LABELS", "AlignedStep", "ScoreCache", "SharedModels", "StepLink", "align_steps",
    "count_markers", "filter_table", "long_table", "marker_spans", "metric_column", "problem_table",
    "result_from_dict", "reward_breakdown", "score_cached", "score_item", "search_problems", "source_label",
    "source_names", "split_steps", "step_bag", "step_similarity", "table_to_csv", "table_to_jsonl", "text_metrics",
    "csv_safe", "compile_search", "STABLE_SOURCE_ORDER", "stable_source_order", "export_problems",
    "export_explanations", "side_by_side_html", "side_by_side_markdown",
]
