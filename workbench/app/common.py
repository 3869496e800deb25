"""What every tab uses: layout constants, the status line, error boxes, toasts, finding a problem, the order and
labels of its explanation sources (generated samples last, numbered), and the reward configuration's summary line."""

from __future__ import annotations

import html
import re

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
    shown = list(counts.items())
    srcs = ", ".join(f"{compare.source_label(s)} ({n})" for s, n in shown[:8]) or "none"
    if len(shown) > 8:
        srcs += f", … ({len(shown)} sources)"
    extra = f" · {note}" if note else ""
    return (f"**Data:** {len(problems)} problems from {html.escape(origin)} · explanation sources: {html.escape(srcs)}"
            f" · teacher `{teacher}` · student `{student}`{extra}")


def _find(problems: list[dict], pid: str | None) -> dict | None:
    for p in problems:
        if p["id"] == pid:
            return p
    return problems[0] if problems and pid is None else None


GENERATED = "generated"  # the first generated sample; the next ones are generated-2, generated-3, ...
_GENERATED = re.compile(r"generated(?:-(\d+))?")


def generated_index(name: str) -> int | None:
    """1 for "generated", k for "generated-k" (k >= 2), None for any other source."""
    m = _GENERATED.fullmatch(name)
    if m is None:
        return None
    if m.group(1) is None:
        return 1
    k = int(m.group(1))
    return k if k >= 2 else None


def generated_name(k: int) -> str:
    return GENERATED if k == 1 else f"{GENERATED}-{k}"


def ordered_sources(names) -> list[str]:
    """Sources in column order: as `compare.source_names` orders them (rlt, r1, the others), then the generated
    samples in the order they were made (generated, generated-2, ...), so a new sample is always the last column."""
    names = list(dict.fromkeys(names))
    gen = sorted((n for n in names if generated_index(n) is not None), key=generated_index)
    return [n for n in names if generated_index(n) is None] + gen


def letter_order(names) -> list[str]:
    """The order steps are lettered in (align_steps(order=...)): the stable order for the known and loaded sources,
    then the generated samples in the order they were made, so a new sample never re-letters the others' steps."""
    gen = [n for n in ordered_sources(names) if generated_index(n) is not None]
    return [n for n in compare.stable_source_order(n for n in names if generated_index(n) is None)] + gen


def _sources_of(problem: dict | None) -> list[str]:
    return ordered_sources(compare.source_names([problem]))[:MAX_SOURCES] if problem else []


def source_label(name: str, problem: dict | None = None) -> str:
    """The column title of a source: compare.source_label, "Generated (teacher) #k" for the k-th sample, and
    " (stopped)" for a sample whose generation was stopped (problem["meta"]["generated"][name]["stopped"])."""
    k = generated_index(name)
    label = compare.source_label(GENERATED) + (f" #{k}" if k and k > 1 else "") if k else compare.source_label(name)
    info = (((problem or {}).get("meta") or {}).get("generated") or {}).get(name) or {}
    return label + (" (stopped)" if info.get("stopped") else "")


def _labels(names, problem: dict | None = None) -> dict[str, str]:
    return {s: source_label(s, problem) for s in names}


def reward_config_line(config, source: str | None = None) -> str:
    """One Markdown line naming the reward configuration the app scores with: teacher tokenisation, KL and solution
    terms, penalties, tag style, system prompts (default or custom), and where it came from (a recipe, or defaults)."""
    from workbench import formats

    if config is None:
        return "**Reward configuration:** unknown"

    def terms(reds, coeffs):
        return " + ".join(f"{c:g}·{r}" for r, c in zip(reds, coeffs))

    try:
        tags = formats.get_tags(config.tag_style)
        defaults = {"teacher": formats.default_teacher_system_prompt(tags),
                    "student": formats.default_student_system_prompt(tags)}
    except Exception:  # noqa: BLE001 - a summary line never fails
        defaults = {}
    prompts = []
    for which in ("teacher", "student"):
        text = getattr(config, f"{which}_system_prompt", None)
        prompts.append(f"{which} {'default' if text is None or text == defaults.get(which) else 'custom'}")
    where = f"from `{html.escape(str(source))}`" if source else "defaults (no recipe)"
    return (f"**Reward configuration** ({where}): tokenisation {config.teacher_tokenization} · "
            f"r_KL = {terms(config.kl_reductions, config.kl_coeffs)} ({config.kl_estimator}) · "
            f"r_SS = {terms(config.solution_reductions, config.solution_coeffs)} · "
            f"format penalty {config.format_penalty:g} · trailing-text penalty {config.trailing_text_penalty:g} · "
            f"T_S {config.student_temperature:g} · tags {config.tag_style} · prompts: {', '.join(prompts)}")


def _toast(message) -> str:
    """Text for gr.Error / gr.Warning / gr.Info, which render their message as HTML: escaped, so a file's column
    names or a typed value are shown, never interpreted."""
    return html.escape(str(message))
