"""Token heatmaps and plots of the RLT reward, shared by the app and the notebooks.

`render_heatmap(tokens, metric)` turns the per-token arrays of a `RewardResult` into a self-contained HTML
fragment: every token is a span coloured by the metric (KL, teacher or student log-prob, in nats), its
tooltip lists every value of the token, a legend shows the scale, a strip gives an overview of long texts,
and a "worst tokens" list links to the tokens. Tokens are always text: `<script>` or `&amp;` in a token is
escaped, never interpreted. Colours are quantised to a few dozen CSS classes, which keeps a 16k-token
heatmap near 1 MB and its rendering well under a second (benchmarks/heatmap_render.py).

Palettes are colour-blind safe (ColorBrewer): KL diverges around 0 on red-blue (RdBu), log-probs run from
white (log-prob 0, fully expected) to dark blue (YlGnBu). `heatmap_document` wraps fragments into a
standalone HTML file. The plotly figures summarise a data set; `render_steps_markdown` draws the aligned
steps of the Compare tab.

Light and dark mode: every coloured box sets its text colour together with its background (SCHEMES); heatmaps
carry their own light/dark rules, the app injects APP_CSS for the rest. Several heatmaps compare only on one
scale: `shared_limit` or `render_heatmaps_side_by_side`. Sources and step groups keep their colours whichever
columns are shown (`source_colour`, `group_colour`).
"""

from __future__ import annotations

import difflib
import html
import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# ColorBrewer RdBu (11 classes), reversed: blue for negative, white at 0, red for positive. Colour-blind safe.
DIVERGING = ("#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
             "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f")
# White, then ColorBrewer YlGnBu (9 classes): light for log-prob near 0, dark for very unlikely tokens.
SEQUENTIAL = ("#ffffff", "#edf8b1", "#c7e9b4", "#7fcdbb", "#41b6c4", "#1d91c0", "#225ea8", "#253494", "#081d58")
# Okabe-Ito: colour-blind-safe qualitative colours (explanation sources, aligned step groups).
QUALITATIVE = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#999999")
NA_COLOUR = "#e0e0e0"
LEVELS = 33  # colour classes per scale (odd, so 0 has its own class on a diverging scale)


@dataclass(frozen=True)
class Metric:
    """A per-token quantity that a heatmap can show."""

    key: str  # field of the token dicts
    label: str
    kind: str  # "diverging" (around 0) or "sequential" (log-probs, <= 0)
    bad: str  # which end is worth looking at: "high" or "low"
    help: str = ""


METRICS: dict[str, Metric] = {
    "kl": Metric("kl", "KL per token", "diverging", "high",
                 "lp_teacher − lp_student of the token; red: the student finds it less likely than the teacher "
                 "(unnatural for the student), blue: more likely"),
    "teacher_logprob": Metric("teacher_logprob", "teacher log-prob", "sequential", "low",
                              "log-prob of the token under the teacher, which sees the solution"),
    "student_logprob": Metric("student_logprob", "student log-prob", "sequential", "low",
                              "log-prob of the token under the student, which does not see the solution"),
    "logprob": Metric("logprob", "student log-prob", "sequential", "low",
                      "log-prob of the solution token under the student after reading the explanation"),
    "delta_logprob": Metric("delta_logprob", "change of student log-prob", "diverging", "low",
                            "student log-prob now minus before the edit; blue: the edit made the token less likely"),
}
# Labels of token fields in tooltips.
FIELD_LABELS = {"kl": "KL", "teacher_logprob": "teacher log-prob", "student_logprob": "student log-prob",
                "logprob": "student log-prob", "previous_logprob": "previous", "delta_logprob": "change"}


def get_metric(metric: str | Metric) -> Metric:
    if isinstance(metric, Metric):
        return metric
    try:
        return METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; use one of {sorted(METRICS)}") from None


# ---------------------------------------------------------------------------------------------- colour scales


def _hex_to_rgb(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def _interpolate(palette: Sequence[str], t: float) -> str:
    t = min(1.0, max(0.0, t))
    x = t * (len(palette) - 1)
    i = min(int(x), len(palette) - 2)
    f = x - i
    a, b = _hex_to_rgb(palette[i]), _hex_to_rgb(palette[i + 1])
    return "#" + "".join(f"{round(u + (v - u) * f):02x}" for u, v in zip(a, b))


def luminance(colour: str) -> float:
    """WCAG relative luminance of a #rrggbb colour (0 black .. 1 white)."""
    def ch(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = _hex_to_rgb(colour)
    return 0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b)


def contrast_ratio(a: str, b: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours (1 .. 21; body text wants >= 4.5)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_colour(background: str) -> str:
    """Black or white, whichever contrasts more with the background (>= 4.58 for any colour)."""
    return "#000000" if contrast_ratio("#000000", background) >= contrast_ratio("#ffffff", background) else "#ffffff"


def _mix(colour: str, base: str, f: float) -> str:
    """f of `colour` over (1 - f) of `base`."""
    return "#" + "".join(f"{round(c * f + b * (1 - f)):02x}" for c, b in zip(_hex_to_rgb(colour), _hex_to_rgb(base)))


# Text and surface colours of the two colour schemes. Gradio puts the class `dark` on <body> when the operating
# system (or ?__theme=dark) asks for dark mode, and its theme gives every element inside a Markdown or HTML
# component the page's text colour (`.prose *{color:var(--body-text-color)}`), light in dark mode. So a coloured
# box must set its text colour with its background, for the box and everything inside it, in both schemes:
# fragments carry the light colours inline (notebooks, exported files) and APP_CSS / the heatmap's own style
# switch to the dark ones under `.dark`.
SCHEMES: dict[str, dict[str, str]] = {
    "light": {"text": "#1a1a1a", "muted": "#4d4d4d", "surface": "#ffffff", "border": "#d0d0d0"},
    "dark": {"text": "#ececec", "muted": "#c8c8c8", "surface": "#1c1c20", "border": "#4a4a52"},
}
# Page backgrounds that uncoloured text sits on in the app (Gradio's default theme: white; zinc-950 page and
# zinc-800 blocks in dark mode).
PAGE_BACKGROUNDS = {"light": ("#ffffff",), "dark": ("#0f0f11", "#27272a")}
MARKER_COLOURS = {"background": "#f0e442", "text": "#1a1a1a"}  # self-correction markers, the same in both schemes
ERROR_COLOURS = {"light": {"background": "#fdecea", "text": "#611a15", "border": "#d55e00"},
                 "dark": {"background": "#3d1814", "text": "#ffd9d2", "border": "#e07b4a"}}


def nice_ceil(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= x (for readable legend ends)."""
    if not x or x <= 0 or not math.isfinite(x):
        return 1.0
    p = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * p >= x * (1 - 1e-9):
            return m * p
    return 10 * p


@dataclass(frozen=True)
class Scale:
    """A linear colour scale from lo to hi (values outside are clipped), quantised into `levels` classes."""

    kind: str
    lo: float
    hi: float
    palette: tuple[str, ...]
    levels: int = LEVELS
    auto: bool = True

    def position(self, v: float) -> float:
        return min(1.0, max(0.0, (v - self.lo) / (self.hi - self.lo)))

    def level(self, v: float | None) -> int | None:
        """Colour class of a value (0 .. levels-1), None for a missing value."""
        if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        return round(self.position(v) * (self.levels - 1))

    def level_colour(self, k: int) -> str:
        return _interpolate(self.palette, k / (self.levels - 1))

    def colour(self, v: float | None) -> str:
        """Background colour of a value (#rrggbb); grey when missing."""
        k = self.level(v)
        return NA_COLOUR if k is None else self.level_colour(k)

    def level_range(self, k: int) -> tuple[float, float]:
        """Values that map to class k."""
        step = (self.hi - self.lo) / (self.levels - 1)
        c = self.lo + k * step
        return max(self.lo, c - step / 2), min(self.hi, c + step / 2)

    def ticks(self) -> list[float]:
        return [self.lo + (self.hi - self.lo) * f for f in (0, 0.25, 0.5, 0.75, 1)]


def make_scale(values: Iterable[float | None], metric: str | Metric = "kl", limit: float | None = None) -> Scale:
    """The colour scale of a metric: symmetric [-m, m] for diverging metrics, [-m, 0] for log-probs.

    m is `limit` when given (> 0), else the 98th percentile of |value| rounded up to 1, 2, 2.5 or 5 × 10^k, so
    a few extreme tokens do not wash out the rest. Pass the same limit to compare two heatmaps.
    """
    m = get_metric(metric)
    auto = not (limit and limit > 0)
    if auto:
        vals = sorted(abs(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v))
        q = vals[min(len(vals) - 1, int(0.98 * len(vals)))] if vals else 1.0
        limit = nice_ceil(q)
    if m.kind == "diverging":
        return Scale("diverging", -limit, limit, DIVERGING, auto=auto)
    return Scale("sequential", -limit, 0.0, tuple(reversed(SEQUENTIAL)), auto=auto)


def shared_limit(token_lists: Iterable[Sequence[dict]], metric: str | Metric = "kl") -> float:
    """One scale end (nats) for several heatmaps of the same metric, so that a colour means the same value in
    each: the automatic rule of `make_scale` (98th percentile of |value|, rounded up) over all their tokens pooled.
    Pass it as `render_heatmap(..., limit=shared_limit([a, b], metric))` to every heatmap."""
    m = get_metric(metric)
    values = [t.get(m.key) for tokens in token_lists for t in tokens]
    scale = make_scale(values, m)
    return float(scale.hi if scale.kind == "diverging" else -scale.lo)


def fmt(v: float | None, signed: bool = False, digits: int = 3) -> str:
    """A number for display, with a true minus sign; '—' when missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    s = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    if s.lstrip("+-").strip("0.") == "":  # rounds to zero: no sign
        s = s.lstrip("+-")
    return s.replace("-", "−")


def _fmt_tick(v: float) -> str:
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "0") else s.replace("-", "−")


# ---------------------------------------------------------------------------------------------- heatmap HTML

HEATMAP_CSS = """
.rlt-heatmap{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:4px 0 12px;padding:6px 8px;
  border-radius:6px}
.rlt-heatmap .hm-head{font-size:13px;margin:2px 0 6px}
.rlt-heatmap .hm-head b{font-size:14px}
.rlt-heatmap .hm-legend{display:flex;flex-wrap:wrap;align-items:center;gap:4px 10px;font-size:12px;margin:4px 0}
.rlt-heatmap .hm-bar{display:inline-flex;width:260px;height:12px;border:1px solid #999}
.rlt-heatmap .hm-bar i{flex:1;height:100%}
.rlt-heatmap .hm-ticks{position:relative;width:262px;height:14px;font-size:11px;margin-left:0}
.rlt-heatmap .hm-ticks span{position:absolute;transform:translateX(-50%);white-space:nowrap}
.rlt-heatmap .hm-legend-col{display:inline-flex;flex-direction:column}
.rlt-heatmap .hm-note{max-width:560px}
.rlt-heatmap .hm-strip{display:flex;height:14px;margin:6px 0;border:1px solid #bbb;box-sizing:border-box;width:100%;
  overflow:hidden}
.rlt-heatmap .hm-strip a{flex:1 1 0;min-width:0;display:block;padding:0;margin:0}
.rlt-heatmap .hm-strip a:hover{outline:2px solid #000;z-index:1}
.rlt-heatmap .hm-body{white-space:pre-wrap;word-break:break-word;font-size:14px;line-height:1.75;padding:8px;
  border:1px solid #ddd;border-radius:4px;max-height:560px;overflow-y:auto}
.rlt-heatmap .hm-body span{border-radius:2px;box-shadow:inset -1px 0 0 rgba(0,0,0,.07);cursor:default}
.rlt-heatmap .hm-body span:hover{outline:2px solid #000}
.rlt-heatmap .hm-body span.c{text-decoration:underline dashed currentColor 1.5px;text-underline-offset:3px}
.rlt-heatmap .hm-flash{outline:3px solid #E69F00 !important;animation:hmflash 1.6s ease-out}
@keyframes hmflash{0%{outline-width:6px}100%{outline-width:3px}}
.rlt-heatmap .hm-worst{font-size:12px;margin:6px 0 0}
.rlt-heatmap .hm-worst ol{display:flex;flex-wrap:wrap;gap:4px 8px;padding:0;margin:4px 0;list-style:none}
.rlt-heatmap .hm-worst li{margin:0}
.rlt-heatmap .hm-worst a{text-decoration:none;border:1px solid #bbb;border-radius:3px;padding:1px 4px;text-align:left}
.rlt-heatmap .hm-worst a:hover{border-color:#000}
.rlt-heatmap .hm-worst code{white-space:pre;font-size:12px;padding:0 2px;border:0;font-family:ui-monospace,monospace}
.rlt-heatmap .hm-pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:10px;align-items:start}
.rlt-heatmap .hm-pair>.rlt-heatmap{margin:0;padding:0}
.dark .rlt-heatmap .hm-body{border-color:#4a4a52}
.dark .rlt-heatmap .hm-strip{border-color:#666}
.dark .rlt-heatmap .hm-strip a:hover,.dark .rlt-heatmap .hm-body span:hover{outline-color:#fff}
.dark .rlt-heatmap .hm-worst a{border-color:#666}
.dark .rlt-heatmap .hm-worst a:hover{border-color:#fff}
"""

# Click on a link to a token (worst tokens, overview strip): scroll it into view and flash it.
# `element` is the heatmap's container (gr.HTML's js_on_load), or the document in a standalone file.
HEATMAP_JS = """
element.addEventListener('click', function (e) {
  var a = e.target.closest ? e.target.closest('a[href^="#"]') : null;
  if (!a) return;
  var t = element.querySelector('[id="' + a.getAttribute('href').slice(1) + '"]');
  if (!t) return;
  e.preventDefault();
  t.scrollIntoView({block: 'center', behavior: 'smooth'});
  t.classList.add('hm-flash');
  setTimeout(function () { t.classList.remove('hm-flash'); }, 1600);
});
"""


def escape_token(text: str) -> str:
    """HTML for a token's text: escaped (never interpreted), newlines shown as ↵ and kept as line breaks."""
    s = html.escape(text, quote=False)
    if "\n" in s:
        s = s.replace("\n", "↵\n")
    return s


_TOOLTIP_ORDER = ("kl", "teacher_logprob", "student_logprob", "logprob", "previous_logprob", "delta_logprob")


def token_tooltip(index: int, tok: dict, unit: str = "nats") -> str:
    """Every value of a token, one per line: index, the token (JSON-quoted, so whitespace is visible), metrics."""
    lines = [f"#{index} {json.dumps(tok.get('token', ''), ensure_ascii=False)}"]
    keys = [k for k in _TOOLTIP_ORDER if k in tok] + [k for k in tok if k not in _TOOLTIP_ORDER and k != "token"]
    for k in keys:
        v = tok[k]
        label = FIELD_LABELS.get(k, k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            lines.append(f"{label} {v:+.3f}" if k in ("kl", "delta_logprob") else f"{label} {v:.3f}")
        elif v is None:
            lines.append(f"{label} n/a")
    lines.append(f"({unit})")
    return "\n".join(lines)


def _attr(text: str) -> str:
    """Escape text for a single-quoted HTML attribute (double quotes stay readable and cheap)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&#39;")


def worst_tokens(tokens: Sequence[dict], metric: str | Metric = "kl", k: int = 12) -> list[tuple[int, dict, float]]:
    """The k tokens at the bad end of the metric (highest KL, lowest log-prob): (index, token, value)."""
    m = get_metric(metric)
    vals = [(i, t, t.get(m.key)) for i, t in enumerate(tokens)]
    vals = [(i, t, v) for i, t, v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
    vals.sort(key=lambda x: (-x[2] if m.bad == "high" else x[2], x[0]))
    return vals[:k]


def comparable(key: object = None, previous_key: object = None) -> bool:
    """Whether a "previous score" may be compared with the current one: both scorings are of the same text
    source, e.g. keys (problem id, source name). Unknown keys (None) are taken as comparable, as before."""
    return key is None or previous_key is None or key == previous_key


def changed_tokens(current: Sequence[dict], previous: Sequence[dict], *, source_key: object = None,
                   previous_source_key: object = None) -> set[int]:
    """Indices of tokens of `current` that are new or replaced relative to `previous` (token-level diff).

    Only meaningful for two versions of the same text (an explanation and its edit): pass `source_key` and
    `previous_source_key` (e.g. (problem id, source)); when they differ the texts are unrelated and nothing is
    marked (an empty set)."""
    if not comparable(source_key, previous_source_key):
        return set()
    a = [t.get("token") for t in previous]
    b = [t.get("token") for t in current]
    out: set[int] = set()
    for op, _i1, _i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op in ("replace", "insert"):
            out.update(range(j1, j2))
    return out


def delta_tokens(current: Sequence[dict], previous: Sequence[dict], key: str = "logprob", *,
                 source_key: object = None, previous_source_key: object = None) -> list[dict] | None:
    """Per-token change of a value between two scorings of the same tokens (e.g. the solution before and after
    editing the explanation). None when the token sequences differ, or when `source_key` and
    `previous_source_key` (e.g. (problem id, source)) are both given and differ: a score of another source's
    text is no "previous" of this one, even though the solution tokens are the same."""
    if not comparable(source_key, previous_source_key):
        return None
    if len(current) != len(previous) or any(a.get("token") != b.get("token") for a, b in zip(current, previous)):
        return None
    out = []
    for a, b in zip(current, previous):
        va, vb = a.get(key), b.get(key)
        d = va - vb if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        out.append({"token": a.get("token"), key: va, "previous_logprob": vb, "delta_logprob": d})
    return out


def _legend(scale: Scale, m: Metric, cls_prefix: str, unit: str, how: str | None = None) -> str:
    cells = "".join(
        f'<i class="{cls_prefix}{k}" title="{_fmt_tick(a)} to {_fmt_tick(b)} {unit}"></i>'
        for k in range(scale.levels) for a, b in [scale.level_range(k)]
    )
    ticks = scale.ticks()
    spans = []
    for j, v in enumerate(ticks):
        label = _fmt_tick(v)
        if j == 0:
            label = "≤ " + label
        elif j == len(ticks) - 1 and scale.kind == "diverging":
            label = "≥ " + label
        shift = "translateX(0)" if j == 0 else ("translateX(-100%)" if j == len(ticks) - 1 else "translateX(-50%)")
        spans.append(f'<span style="left:{100 * scale.position(v):.1f}%;transform:{shift}" data-value="{v:g}">{label}</span>')
    how = how or ("auto: 98th percentile of |value|" if scale.auto else "fixed")
    shape = "diverging around 0" if scale.kind == "diverging" else "0 = fully expected"
    return (
        f'<div class="hm-legend"><b>{html.escape(m.label)} ({unit})</b>'
        f'<span class="hm-legend-col"><span class="hm-bar" data-lo="{scale.lo:g}" data-hi="{scale.hi:g}">{cells}</span>'
        f'<span class="hm-ticks">{"".join(spans)}</span></span>'
        f'<span class="hm-note">{shape}; scale {how}; {html.escape(m.help)}</span></div>'
    )


def heatmap_colour_css(hid: str, scale: Scale) -> str:
    """The colours of one heatmap (container `#hid`), light and dark: the container's text and surface, and for
    every colour class its background AND text (black or white, picked from the background's luminance).

    Rules carry the heatmap's id so they outrank Gradio's `.prose *{color:...}` (which would otherwise give
    every token the page's text colour: white on the light tokens in dark mode, dark text on the dark worst-token
    chips); everything else inside inherits, so a chip's <code> takes its chip's colour."""
    lt, dk = SCHEMES["light"], SCHEMES["dark"]
    rules = [
        f"#{hid}{{color:{lt['text']};background:{lt['surface']}}}",
        f".dark #{hid}{{color:{dk['text']};background:{dk['surface']}}}",
        f"#{hid} *{{color:inherit}}",
        f"#{hid} .hm-worst code{{background:transparent}}",
        f"#{hid} .hm-note{{color:{lt['muted']};background:{lt['surface']}}}",
        f".dark #{hid} .hm-note{{color:{dk['muted']};background:{dk['surface']}}}",
        f"#{hid} .hm-na{{background:{NA_COLOUR};color:{text_colour(NA_COLOUR)}}}",
    ]
    for k in range(scale.levels):
        c = scale.level_colour(k)
        rules.append(f"#{hid} .k{k}{{background:{c};color:{text_colour(c)}}}")
    return "".join(rules)


def render_heatmap(tokens: Sequence[dict], metric: str | Metric = "kl", *, limit: float | None = None,
                   title: str | None = None, elem_id: str | None = None, start: int = 0,
                   max_tokens: int | None = None, worst: int = 12, changed: Iterable[int] | None = None,
                   strip_cells: int = 160, unit: str = "nats", legend: bool = True,
                   scale_note: str | None = None) -> str:
    """HTML fragment of a token heatmap (see the module docstring).

    tokens: dicts with "token" and numeric fields (RewardResult.explanation_tokens / .solution_tokens);
    metric: a key of METRICS; limit: fixed scale end in nats (None or 0: automatic, per heatmap). To compare
    heatmaps, give them all the same limit, e.g. `shared_limit([a, b], metric)`, or use
    `render_heatmaps_side_by_side`;
    start, max_tokens: show only tokens[start:start+max_tokens] (the legend, strip and worst list still cover all);
    changed: token indices to underline (e.g. `changed_tokens(new, old)` after an edit);
    legend: False leaves the legend out (a shared one is shown elsewhere); scale_note: how the scale was chosen,
    for the legend (default: "auto: ..." or "fixed").
    Readable in light and dark mode (see heatmap_colour_css).
    """
    m = get_metric(metric)
    hid = elem_id or f"hm{uuid.uuid4().hex[:10]}"
    n = len(tokens)
    values = [t.get(m.key) for t in tokens]
    scale = make_scale(values, m, limit)
    levels = [scale.level(v) for v in values]
    stop = n if not max_tokens else min(n, start + max_tokens)
    start = max(0, min(start, n))
    bad = worst_tokens(tokens, m, worst) if worst else []

    # ids only where a link points: worst tokens and the first token of each strip cell
    cells = []
    if n > strip_cells // 2 and strip_cells:
        per = max(1, math.ceil(n / strip_cells))
        for a in range(0, n, per):
            b = min(n, a + per)
            vs = [v for v in values[a:b] if isinstance(v, (int, float)) and math.isfinite(v)]
            v = (max(vs) if m.bad == "high" else min(vs)) if vs else None
            cells.append((a, b, v))
    anchors = {i for i, _, _ in bad} | {a for a, _, _ in cells}
    changed = set(changed or ())

    parts = [f'<div class="rlt-heatmap" id="{hid}" data-metric="{m.key}" data-tokens="{n}" '
             f'data-lo="{scale.lo:g}" data-hi="{scale.hi:g}">',
             f"<style>{HEATMAP_CSS}{heatmap_colour_css(hid, scale)}</style>"]
    head = f"<b>{html.escape(title)}</b> · " if title else ""
    window = f" · showing tokens {start}–{stop - 1}" if (start > 0 or stop < n) else ""
    parts.append(f'<div class="hm-head">{head}{n} tokens{window} · colour: {html.escape(m.label)}; '
                 f"hover a token for all its values</div>")
    if legend:
        parts.append(_legend(scale, m, "k", unit, scale_note))
    if cells:
        strip = []
        for a, b, v in cells:
            k = scale.level(v)
            cls = f"k{k}" if k is not None else "hm-na"
            tip = f"tokens {a}–{b - 1}: {'max' if m.bad == 'high' else 'min'} {m.label} {fmt(v, m.kind == 'diverging')}"
            href = f' href="#{hid}-t{a}"' if start <= a < stop else ""
            strip.append(f'<a class="{cls}"{href} title="{html.escape(tip)}"></a>')
        parts.append(f'<div class="hm-strip" title="overview of all {n} tokens">{"".join(strip)}</div>')

    body = []
    for i in range(start, stop):
        tok = tokens[i]
        k = levels[i]
        cls = f"k{k}" if k is not None else "hm-na"
        if i in changed:
            cls += " c"
        ident = f' id="{hid}-t{i}"' if i in anchors else ""
        tip = _attr(token_tooltip(i, tok, unit))
        body.append(f"<span class=\"{cls}\"{ident} title='{tip}'>{escape_token(str(tok.get('token', '')))}</span>")
    parts.append(f'<div class="hm-body">{"".join(body)}</div>')

    if bad:
        items = []
        for i, tok, v in bad:
            label = (f"<code>{html.escape(json.dumps(tok.get('token', ''), ensure_ascii=False))}</code> "
                     f"#{i} · {fmt(v, m.kind == 'diverging', 2)}")
            if start <= i < stop:
                items.append(f'<li><a href="#{hid}-t{i}" class="k{levels[i]}">{label}</a></li>')
            else:
                items.append(f'<li title="outside the shown window">{label}</li>')
        which = "highest" if m.bad == "high" else "lowest"
        parts.append(f'<div class="hm-worst"><b>Worst tokens</b> ({which} {html.escape(m.label)}; click to jump)'
                     f'<ol>{"".join(items)}</ol></div>')
    parts.append("</div>")
    return "".join(parts)


def render_heatmaps_side_by_side(a_tokens: Sequence[dict], b_tokens: Sequence[dict], metric: str | Metric = "kl",
                                 titles: Sequence[str] = ("A", "B"), *, limit: float | None = None,
                                 elem_id: str | None = None, worst: int = 8, max_tokens: int | None = None,
                                 unit: str = "nats") -> str:
    """Two heatmaps next to each other (stacked on narrow screens) on ONE colour scale with one legend, so the
    same colour means the same value in both: e.g. two explanations of a problem, or one before and after an
    edit. limit: the scale end in nats (None: `shared_limit` of both)."""
    m = get_metric(metric)
    auto = not (limit and limit > 0)
    if auto:
        limit = shared_limit([a_tokens, b_tokens], m)
    scale = make_scale((), m, limit)
    hid = elem_id or f"hp{uuid.uuid4().hex[:10]}"
    titles = list(titles) + ["A", "B"][len(titles):]
    note = "shared by both, auto: 98th percentile of |value| over both" if auto else "shared by both, fixed"
    frags = [render_heatmap(toks, m, limit=limit, title=t, elem_id=f"{hid}-{side}", worst=worst,
                            max_tokens=max_tokens, unit=unit, legend=False)
             for toks, t, side in ((a_tokens, titles[0], "a"), (b_tokens, titles[1], "b"))]
    return (f'<div class="rlt-heatmap rlt-heatmap-pair" id="{hid}" data-metric="{m.key}" data-lo="{scale.lo:g}" '
            f'data-hi="{scale.hi:g}"><style>{HEATMAP_CSS}{heatmap_colour_css(hid, scale)}</style>'
            f'<div class="hm-head"><b>{html.escape(titles[0])}</b> and <b>{html.escape(titles[1])}</b> · one colour '
            f"scale for both: {html.escape(m.label)}</div>"
            + _legend(scale, m, "k", unit, note)
            + f'<div class="hm-pair">{"".join(frags)}</div></div>')


def render_breakdown(rows: list[dict], title: str = "Reward breakdown") -> str:
    """HTML table of `compare.reward_breakdown` rows; shows previous values and changes when present."""
    has_prev = any(r.get("previous") is not None for r in rows)
    head = "<tr><th>component</th><th>value</th>" + ("<th>previous</th><th>change</th>" if has_prev else "") + "<th></th></tr>"
    body = []
    for r in rows:
        v, pv, d = r.get("value"), r.get("previous"), r.get("delta")

        def cell(x, signed=False):
            if x is None:
                return "—"
            if isinstance(x, int) and not isinstance(x, bool):
                return f"{x:+d}" if signed else str(x)
            return fmt(x, signed)

        strong = r["name"] == "reward"
        name = html.escape(r["name"]).replace("  ", "&nbsp;&nbsp;&nbsp;")
        row = f"<td>{'<b>' + name + '</b>' if strong else name}</td><td>{cell(v)}</td>"
        if has_prev:
            arrow = "" if d is None or d == 0 else ("▲ " if d > 0 else "▼ ")
            row += f"<td>{cell(pv)}</td><td>{arrow}{cell(d, True)}</td>"
        row += f'<td class="note">{html.escape(r.get("note", ""))}</td>'
        body.append(f"<tr>{row}</tr>")
    return (
        '<div class="rlt-breakdown"><style>.rlt-breakdown table{border-collapse:collapse;font-size:13px}'
        ".rlt-breakdown td,.rlt-breakdown th{padding:2px 10px;border-bottom:1px solid #e5e5e5;text-align:right}"
        ".rlt-breakdown td:first-child,.rlt-breakdown th:first-child,.rlt-breakdown td.note{text-align:left}"
        f".rlt-breakdown td.note{{font-size:12px}}.rlt-breakdown td.note.note{{color:{SCHEMES['light']['muted']}}}"
        f".dark .rlt-breakdown td.note.note{{color:{SCHEMES['dark']['muted']}}}"
        ".dark .rlt-breakdown td,.dark .rlt-breakdown th{border-bottom-color:#3f3f46}</style>"
        f"<b>{html.escape(title)}</b><table>{head}{''.join(body)}</table></div>"
    )


def heatmap_document(fragments: Sequence[str], title: str = "RLT heatmap") -> str:
    """A standalone HTML file holding heatmap fragments (and any other HTML), with the jump-to-token script."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px}"
        ".rlt-heatmap .hm-body{max-height:none}</style></head><body>"
        f"<h1 style='font-size:20px'>{html.escape(title)}</h1>"
        + "\n".join(fragments)
        + f"<script>(function(){{var element=document;{HEATMAP_JS}}})();</script></body></html>\n"
    )


def safe_filename(text: str, max_chars: int = 60) -> str:
    """A file-name part from any text (a problem id such as `a/b` or `../x`): letters, digits, `.`, `_` and `-`
    kept, runs of anything else become `_`, no leading dot, at most `max_chars` characters, never empty."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._-")[:max_chars].strip("._-")
    return name or "x"


def export_path(folder, prefix: str, name: str, suffix: str):
    """A new file path in `folder` for an export: `<prefix>-<safe name>-<date>-<time>-<6 hex>.<suffix>`; the random
    part keeps two exports of the same second (two users, or one user twice) apart. The folder is created."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = "-".join(x for x in (safe_filename(prefix), safe_filename(name) if name else "", stamp) if x)
    while True:
        path = folder / f"{stem}-{uuid.uuid4().hex[:6]}{suffix}"
        if not path.exists():
            return path


# ---------------------------------------------------------------------------------------------- compare columns

_TAG_START = re.compile(r"<(?=[A-Za-z/!?|])")
_ENTITY = re.compile(r"&(?=#?\w+;)")


_MATH_TOKENS = re.compile(r"\\\$|\$\$|\$|\\\(|\\\)|\\\[|\\\]|\\boxed\{")


def wrap_bare_latex(text: str) -> str:
    """Put `$...$` around `\\boxed{...}` written outside math (common in R1 traces), so it renders as LaTeX."""
    if "\\boxed{" not in text:
        return text
    out, pos, closer = [], 0, None  # closer: the delimiter that ends the math we are in
    for m in _MATH_TOKENS.finditer(text):
        tok = m.group()
        if m.start() < pos or tok == "\\$":
            continue
        if closer is not None:
            if tok == closer:
                closer = None
            continue
        if tok in ("$$", "$"):
            closer = tok
        elif tok in ("\\(", "\\["):
            closer = "\\)" if tok == "\\(" else "\\]"
        elif tok == "\\boxed{":
            depth, j = 1, m.end()
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            if depth == 0:
                out += [text[pos:m.start()], "$", text[m.start():j], "$"]
                pos = j
    out.append(text[pos:])
    return "".join(out)


def escape_markdown_html(text: str) -> str:
    """Keep tag-like text (`<think>`, `<|begin_of_thought|>`, `<script>`) and entities visible in Markdown, and
    render a bare `\\boxed{}` as LaTeX."""
    return wrap_bare_latex(_TAG_START.sub("&lt;", _ENTITY.sub("&amp;", text)))


_MD_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")


def escape_markdown_text(text: str) -> str:
    """Plain text for Markdown: every ASCII punctuation character becomes a numeric character reference (`<` is
    `&#60;`), so no HTML tag, entity, link, image, autolink (`https://...`, `www.`, `a@b.c`), emphasis, heading or
    LaTeX delimiter can form (references are never structural in Markdown; backslash escapes would be, as `\\(`
    and `\\[` open LaTeX in the app). It renders as the very text. For short labels from data files (topic,
    difficulty, id); whitespace runs become one space."""
    return _MD_PUNCTUATION.sub(lambda m: f"&#{ord(m.group())};", " ".join(str(text).split()))


def _tint(colour: str, f: float = 0.82) -> str:
    """The colour lightened towards white by f (light-mode box backgrounds)."""
    r, g, b = _hex_to_rgb(colour)
    return "#" + "".join(f"{round(c + (255 - c) * f):02x}" for c in (r, g, b))


def _shade(colour: str, f: float = 0.76) -> str:
    """The colour darkened towards the dark surface by f (dark-mode box backgrounds)."""
    return _mix(colour, SCHEMES["dark"]["surface"], 1 - f)


def group_colour(group: int, scheme: str = "light") -> tuple[str, str]:
    """(border, background) colours of an aligned step group in a colour scheme ("light" or "dark"); text on
    the background is SCHEMES[scheme]["text"] (the step) and ["muted"] (its tag line). The colour depends on the
    group number only, and `compare.align_steps` keeps group numbers stable when a column is added."""
    c = QUALITATIVE[group % len(QUALITATIVE)]
    if scheme == "dark":
        return c, _shade(c)
    if scheme != "light":
        raise ValueError(f"unknown colour scheme {scheme!r}; use 'light' or 'dark'")
    return c, _tint(c)


def group_label(group: int) -> str:
    """A, B, ..., Z, AA, AB, ... so groups are named, not only coloured."""
    s, g = "", group
    while True:
        s = chr(ord("A") + g % 26) + s
        g = g // 26 - 1
        if g < 0:
            return s


def _marker_tag(text: str) -> str:
    return (f'<mark class="wb-marker" style="background:{MARKER_COLOURS["background"]};'
            f'color:{MARKER_COLOURS["text"]};padding:0 1px">{text}</mark>')


def highlight_markers(text: str) -> str:
    """Wrap self-correction markers (compare.MARKERS) in <mark> for the Markdown columns (dark text on yellow,
    set inline and by APP_CSS, so they read the same in light and dark mode)."""
    from .compare import marker_spans

    spans = marker_spans(text)
    if not spans:
        return text
    out, last = [], 0
    for a, b in spans:
        out += [text[last:a], _marker_tag(text[a:b])]
        last = b
    out.append(text[last:])
    return "".join(out)


def render_steps_markdown(steps, labels: dict[str, str] | None = None, markers: bool = True) -> str:
    """Markdown (with LaTeX, for gr.Markdown) of one column's aligned steps (`compare.align_steps` output).

    Steps that say the same as a step of another column share a coloured left bar and a group letter; the tag
    above each step names its counterparts and their similarity. Tag-like text is escaped.

    Colours: the light scheme's background and text are inline (so a notebook or an export shows them without
    any stylesheet); in the app, APP_CSS gives the boxes (classes `wb-step`, `wb-grp`, `wb-g<k>`,
    `wb-step-tag`) their dark-mode background and text under `.dark`.
    """
    labels = labels or {}
    lt = SCHEMES["light"]
    out = []
    for i, st in enumerate(steps):
        text = escape_markdown_html(st.text)
        if markers:
            text = highlight_markers(text)
        if st.group is not None:
            border, bg = group_colour(st.group)
            links = "; ".join(f"≈ {labels.get(lk.column, lk.column)} §{lk.step + 1} ({lk.similarity:.2f})" for lk in st.links)
            tag = f"§{i + 1} · <b>{group_label(st.group)}</b> · {html.escape(links)}"
            cls = f"wb-step wb-grp wb-g{st.group % len(QUALITATIVE)}"
            style = (f"border-left:5px solid {border};background:{bg};color:{lt['text']};padding:2px 8px;"
                     "margin:6px 0;border-radius:3px")
        else:
            tag = f"§{i + 1}"
            cls = "wb-step"
            style = "border-left:5px solid transparent;padding:2px 8px;margin:6px 0"
        out.append(f'<div class="{cls}" data-group="{"" if st.group is None else st.group}" style="{style}">\n\n'
                   f'<div class="wb-step-tag" style="font-size:11px;color:{lt["muted"]}">{tag}</div>\n\n{text}\n\n</div>')
    return "\n\n".join(out)


def _app_css() -> str:
    lt, dk = SCHEMES["light"], SCHEMES["dark"]
    mk = MARKER_COLOURS
    rules = []
    for k in range(len(QUALITATIVE)):
        border, bg = group_colour(k, "light")
        _, dbg = group_colour(k, "dark")
        rules += [
            f".wb-step.wb-g{k}{{background:{bg}!important;color:{lt['text']}!important;border-left-color:{border}!important}}",
            f".dark .wb-step.wb-g{k}{{background:{dbg}!important;color:{dk['text']}!important}}",
        ]
    rules += [
        # everything inside a box takes the box's text colour (Gradio's `.prose *` would give it the page's)
        f".wb-step.wb-grp *{{color:{lt['text']}!important}}",
        f".dark .wb-step.wb-grp *{{color:{dk['text']}!important}}",
        f".wb-step.wb-grp .wb-step-tag,.wb-step.wb-grp .wb-step-tag *{{color:{lt['muted']}!important}}",
        f".dark .wb-step.wb-grp .wb-step-tag,.dark .wb-step.wb-grp .wb-step-tag *{{color:{dk['muted']}!important}}",
        # a step without a group has no background: the page's text, a muted tag readable on the page
        f".dark .wb-step .wb-step-tag,.dark .wb-step .wb-step-tag *{{color:{dk['muted']}!important}}",
        f"mark.wb-marker,.wb-step mark.wb-marker,.dark .wb-step mark.wb-marker{{background:{mk['background']}!important;"
        f"color:{mk['text']}!important}}",
    ]
    for scheme, prefix in (("light", ""), ("dark", ".dark ")):
        e = ERROR_COLOURS[scheme]
        for cls in ("wb-error", "wb-ev-error"):
            rules += [
                f"{prefix}.{cls}.{cls}{{background:{e['background']}!important;color:{e['text']}!important;"
                f"border-color:{e['border']}!important}}",
                f"{prefix}.{cls}.{cls} *{{color:{e['text']}!important}}",
            ]
    return "\n".join(rules) + "\n"


# CSS for the app (inject once, e.g. gr.HTML(f"<style>{viz.APP_CSS}</style>") or gr.Blocks(css=...)): the
# dark-mode colours of the Compare tab's step boxes and marker highlights, and of the error boxes (`.wb-error`
# of the status line, `.wb-ev-error` of the Evaluate tab), each with its text colour for light and dark mode.
# `!important` because the light colours are inline in the Markdown (for notebooks) and Gradio's `.prose *`
# colours every element inside Markdown/HTML. Heatmaps and the breakdown table carry their own style.
APP_CSS = _app_css()


def column_stats_markdown(label: str, metrics: dict | None, result=None) -> str:
    """One line under a column title: tokens, steps, markers, and reward components when scored."""
    parts = [f"### {escape_markdown_html(label)}"]
    if metrics:
        mk = metrics.get("marker_counts", {})
        top = ", ".join(f"{k} {v}" for k, v in mk.items() if v)
        parts.append(f"{metrics['tokens']} tokens · {metrics['steps']} steps · {metrics['markers']} markers"
                     + (f" ({top})" if top else ""))
    if result is not None and getattr(result, "error", None) is None and getattr(result, "reward", None) is not None:
        pen = " · no end tag (−1)" if result.format_penalty else ""
        parts.append(f"**reward {fmt(result.reward)}** · r_SS {fmt(result.r_ss)} · r_KL {fmt(result.r_kl)}{pen}")
    elif result is not None and getattr(result, "error", None):
        parts.append(f"not scored: {result.error}")
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------- plotly figures


# Fixed colours of the known explanation sources; any other name gets one of the rest by a stable hash of the
# name, so a source keeps its colour whichever other sources are shown, and in which order.
SOURCE_COLOURS = {"rlt": QUALITATIVE[0], "r1": QUALITATIVE[1], "after": QUALITATIVE[2], "before": QUALITATIVE[7],
                  "generated": QUALITATIVE[5]}
_OTHER_SOURCE_COLOURS = (QUALITATIVE[4], QUALITATIVE[3], QUALITATIVE[6])
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "pentagon")


def _stable_hash(name: str) -> int:
    import zlib

    return zlib.crc32(str(name).encode("utf-8"))


def source_colour(source: str) -> str:
    """The colour of an explanation source, by its name (not by its position among the shown sources)."""
    if source in SOURCE_COLOURS:
        return SOURCE_COLOURS[source]
    return _OTHER_SOURCE_COLOURS[_stable_hash(source) % len(_OTHER_SOURCE_COLOURS)]


def source_symbol(source: str) -> str:
    """The plotly marker symbol of an explanation source, by its name."""
    known = list(SOURCE_COLOURS)
    if source in known:
        return SYMBOLS[known.index(source)]
    return SYMBOLS[len(known) + _stable_hash(source) % (len(SYMBOLS) - len(known))]


def source_colours(sources: Sequence[str]) -> dict[str, str]:
    """{source: colour} by name (see source_colour): adding or removing a source leaves the others' colours."""
    return {s: source_colour(s) for s in sources}


def _empty_figure(message: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14})
    fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, height=320, template="plotly_white",
                      margin={"l": 30, "r": 20, "t": 40, "b": 30})
    return fig


def distribution_figure(long_df, metric: str = "reward", labels: dict[str, str] | None = None):
    """Box plot with every point of a metric per explanation source (long table from compare.long_table)."""
    import plotly.graph_objects as go

    labels = labels or {}
    if long_df is None or len(long_df) == 0 or metric not in long_df or long_df[metric].notna().sum() == 0:
        what = "rewards" if metric in ("reward", "r_ss", "r_kl") else metric
        return _empty_figure(f"no {what} yet: press “Score all problems”" if what == "rewards" else f"no {what}")
    fig = go.Figure()
    sources = list(dict.fromkeys(long_df["source"]))
    colours = source_colours(sources)
    for s in sources:
        d = long_df[(long_df["source"] == s) & long_df[metric].notna()]
        if not len(d):
            continue
        fig.add_trace(go.Box(y=d[metric], name=f"{labels.get(s, s)} (n={len(d)})", boxpoints="all", jitter=0.4,
                             pointpos=0, marker={"color": colours[s], "size": 7}, line={"color": colours[s]},
                             text=d["id"], hovertemplate="%{text}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=f"{metric} by source", yaxis_title=metric + (" (nats)" if metric != "tokens" else ""),
                      template="plotly_white", height=360, showlegend=False,
                      margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


def scatter_figure(long_df, x: str = "tokens", y: str = "reward", labels: dict[str, str] | None = None):
    """Scatter of two metrics per explanation, one colour per source (e.g. tokens vs reward)."""
    import plotly.graph_objects as go

    labels = labels or {}
    if long_df is None or len(long_df) == 0 or y not in long_df or long_df[y].notna().sum() == 0:
        return _empty_figure(f"no {y} yet: press “Score all problems”")
    fig = go.Figure()
    sources = list(dict.fromkeys(long_df["source"]))
    colours = source_colours(sources)
    for s in sources:
        d = long_df[(long_df["source"] == s) & long_df[y].notna()]
        if not len(d):
            continue
        fig.add_trace(go.Scatter(x=d[x], y=d[y], mode="markers", name=labels.get(s, s), text=d["id"],
                                 marker={"color": colours[s], "size": 9, "symbol": source_symbol(s)},
                                 hovertemplate="%{text}<br>" + x + " %{x}<br>" + y + " %{y:.3f}<extra></extra>"))
    fig.update_layout(title=f"{x} vs {y}", xaxis_title=x, yaxis_title=y, template="plotly_white", height=360,
                      margin={"l": 50, "r": 20, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.2})
    return fig


def attribution_figure(steps: Sequence[dict], title: str = "step attribution"):
    """Horizontal bars, one per explanation step: Δreward and Δr_ss (whole explanation minus the same without the
    step, from `rewards.attribute_steps`). Hover shows the step's text."""
    import plotly.graph_objects as go

    rows = [s for s in steps if s.get("delta_reward") is not None]
    if not rows:
        return _empty_figure("no step could be attributed")
    labels = [f"step {s['step']}" for s in rows]
    hover = [html.escape(s["text"][:160]).replace("\n", "<br>") for s in rows]
    fig = go.Figure()
    for key, name, colour in (("delta_reward", "Δ reward", QUALITATIVE[0]), ("delta_r_ss", "Δ r_ss", QUALITATIVE[1])):
        fig.add_trace(go.Bar(y=labels, x=[s[key] for s in rows], name=name, orientation="h", marker_color=colour,
                             customdata=hover, hovertemplate="%{y}: %{x:.3f}<br>%{customdata}<extra>" + name + "</extra>"))
    fig.update_layout(title=title, barmode="group", template="plotly_white", height=120 + 40 * len(rows),
                      xaxis_title="contribution (nats): whole minus without the step",
                      yaxis={"autorange": "reversed"}, margin={"l": 70, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.25})
    return fig


__all__ = [
    "attribution_figure", "DIVERGING", "SEQUENTIAL", "QUALITATIVE", "METRICS", "Metric", "Scale", "make_scale", "render_heatmap",
    "render_breakdown", "heatmap_document", "worst_tokens", "changed_tokens", "delta_tokens", "escape_token",
    "token_tooltip", "render_steps_markdown", "column_stats_markdown", "distribution_figure", "scatter_figure",
    "escape_markdown_html", "group_colour", "group_label", "luminance", "HEATMAP_JS",
    "escape_markdown_text", "safe_filename", "export_path",
    "APP_CSS", "HEATMAP_CSS", "SCHEMES", "PAGE_BACKGROUNDS", "MARKER_COLOURS", "ERROR_COLOURS", "SOURCE_COLOURS",
    "contrast_ratio", "text_colour", "heatmap_colour_css", "shared_limit", "render_heatmaps_side_by_side",
    "comparable", "source_colour", "source_colours", "source_symbol", "highlight_markers", "training_figure",
    "run_figure",
]


def training_figure(df, columns: tuple[str, ...] = ("reward", "r_ss", "r_kl", "completion_length"),
                    title: str = "RLT training, per step"):
    """One small plot per metric (reward, r_ss, r_kl, completion length, ...) against the step, with a rolling mean."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cols = [c for c in columns if c in getattr(df, "columns", [])]
    if not cols:
        fig = go.Figure()
        fig.add_annotation(text="no metrics to show", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        return fig
    n = len(cols)
    rows = (n + 1) // 2
    fig = make_subplots(rows=rows, cols=2 if n > 1 else 1, subplot_titles=cols)
    window = max(1, len(df) // 8)
    for i, c in enumerate(cols):
        r, k = i // 2 + 1, i % 2 + 1
        y = df[c].astype(float)
        fig.add_scatter(x=df.index, y=y, mode="lines+markers", name=c, marker={"size": 4 if window > 1 else 6},
                        line={"width": 1 if window > 1 else 2}, opacity=0.5 if window > 1 else 1.0, row=r, col=k,
                        showlegend=False)  # faint under a rolling mean; the line itself when there is none
        if window > 1:
            fig.add_scatter(x=df.index, y=y.rolling(window, min_periods=1).mean(), mode="lines",
                            name=f"{c} (mean of {window})", line={"width": 2.5}, row=r, col=k, showlegend=False)
        fig.update_xaxes(title_text="step", row=r, col=k)
    fig.update_layout(title=title, height=300 * rows, template="plotly_white", margin={"t": 70})
    return fig


def run_figure(log):
    """A training run's completions log over training (workbench.runlog): per logged step, the mean logged reward,
    r_ss, r_kl and completion length of its samples."""
    import pandas as pd

    from .runlog import step_table

    df = pd.DataFrame(step_table(log)).set_index("step")
    return training_figure(df, ("reward", "r_ss", "r_kl", "completion_tokens"),
                           f"The run's logged samples, per step ({len(log.samples)} samples)")
