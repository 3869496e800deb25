"""From teacher explanations to a student dataset: rank explanations by the RLT reward, then build the SFT set.

    generate (workbench.generate)  ->  rank (this module)  ->  build (this module)  ->  student SFT (training.sft)

Ranking an *untrained* teacher's samples by the RLT reward is the cheap path: the paper reports that it already
recovers much of the gain of RL training, with no RL compute.

Policy for traces longer than the student's context (`max_tokens`): candidates of a problem are tried from the
best reward down, and the first one whose student chat fits is kept ("best-rewarded that fits"). A problem none
of whose candidates fits is skipped and counted. With one candidate per problem that is the "skip" policy.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict
from collections.abc import Iterable

from . import formats
from .errors import WorkbenchError
from .io import finite_number
from .rewards import RLTScorer

COMPONENTS = ("reward", "r_ss", "r_kl", "solution_logprob_mean", "solution_logprob_min", "kl_mean", "kl_max",
              "format_penalty", "has_end_tag")


def problem_key(row: dict) -> str:
    """Rows of the same problem share `problem_id` when the generator wrote one, else the question text."""
    return str(row["problem_id"]) if row.get("problem_id") is not None else row["question"]


def rank_explanations(scorer: RLTScorer, rows: list[dict], keep: int = 1, progress: bool = False) -> tuple[list[dict], list[dict]]:
    """Score every row (question, solution, completion|explanation) and keep the `keep` best per problem.

    Returns (kept rows with their components and `rank`, rows that could not be scored with their error).
    Rows keep their other fields (e.g. the teacher that wrote them).
    """
    if keep < 1:
        raise WorkbenchError("keep must be at least 1")
    results = scorer.score(rows, progress=progress)
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    errors = []
    for row, res in zip(rows, results):
        if not res.ok:
            errors.append({**row, "error": res.error})
            continue
        scored = {**row, **{k: getattr(res, k) for k in COMPONENTS}, "explanation_tokens": len(res.explanation_tokens)}
        groups.setdefault(problem_key(row), []).append(scored)
    kept = []
    for cands in groups.values():
        cands.sort(key=lambda r: r["reward"], reverse=True)
        for k, r in enumerate(cands[:keep], 1):
            kept.append({**r, "rank": k, "candidates": len(cands)})
    return kept, errors


def explanation_body(row: dict, tags: formats.Tags = formats.STRATOS) -> str:
    """The explanation body of a row: `explanation`, else the body of the raw `completion`."""
    if isinstance(row.get("explanation"), str):
        return row["explanation"]
    if isinstance(row.get("completion"), str):
        return formats.parse_completion(row["completion"], tags).body
    raise WorkbenchError("a row needs `explanation` or `completion`")


def student_example(row: dict, system_prompt: str | None = None, tags: formats.Tags = formats.STRATOS) -> dict:
    """One student-format example (Bespoke-Stratos layout): thought = the explanation, then the solution."""
    body = explanation_body(row, tags)
    assistant = formats.student_completion(formats.PAD + body, row["solution"], tags)
    system = formats.default_student_system_prompt(tags) if system_prompt is None else system_prompt
    out = {"system": system,
           "conversations": [{"from": "user", "value": row["question"]}, {"from": "assistant", "value": assistant}],
           "question": row["question"], "solution": row["solution"]}
    for k in ("problem_id", "reward", "r_ss", "r_kl", "teacher"):
        if k in row:
            out[k] = row[k]
    return out


def _candidate_error(row, tags: formats.Tags) -> str | None:
    """Why a row cannot be a candidate for the student set (None when it can)."""
    if not isinstance(row, dict):
        return f"expected an object, got {type(row).__name__}"
    for key in ("question", "solution"):
        v = row.get(key)
        if not isinstance(v, str):
            return f"column {key!r}: " + ("missing" if v is None else f"expected text, got {type(v).__name__}")
        if not v.strip():
            return f"column {key!r}: is empty"
    if "reward" in row and row["reward"] is not None and finite_number(row["reward"]) is None:
        return (f"column 'reward': expected a finite number, got {str(row['reward'])[:30]!r} (a row without a "
                "reward is allowed: it ranks last)")
    try:
        explanation_body(row, tags)
    except WorkbenchError as exc:
        return str(exc)
    return None


def build_student_set(rows: Iterable[dict], tokenizer=None, max_tokens: int | None = None,
                      system_prompt: str | None = None, tags: formats.Tags = formats.STRATOS,
                      locations: list[str] | None = None) -> tuple[list[dict], dict]:
    """Student SFT examples, one per problem (best-rewarded candidate that fits `max_tokens`), and statistics.

    A row that cannot be a candidate (no question or solution, a reward that is not a finite number, no
    explanation) is skipped: `stats["skipped_rows"]` lists why, with `locations[i]` (e.g. "line 3") when given.
    """
    if max_tokens is not None and tokenizer is None:
        raise WorkbenchError("max_tokens needs the student's tokenizer to count tokens")
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    bad: list[str] = []
    for i, row in enumerate(rows):
        why = _candidate_error(row, tags)
        if why is not None:
            bad.append(f"{locations[i] if locations else f'row {i + 1}'}: {why}")
            continue
        groups.setdefault(problem_key(row), []).append(row)

    def reward(r: dict) -> float:
        v = finite_number(r.get("reward"))
        return float("-inf") if v is None else v

    examples, lengths, too_long, fallbacks = [], [], 0, 0
    for cands in groups.values():
        cands = sorted(cands, key=reward, reverse=True)
        chosen = None
        for k, row in enumerate(cands):
            ex = student_example(row, system_prompt, tags)
            n = _count_tokens(tokenizer, ex) if tokenizer is not None else None
            if max_tokens is None or n <= max_tokens:
                chosen, fallbacks = (ex, n), fallbacks + (k > 0)
                break
        if chosen is None:
            too_long += 1
            continue
        examples.append(chosen[0])
        if chosen[1] is not None:
            lengths.append(chosen[1])
    rewards = [finite_number(e.get("reward")) for e in examples]
    rewards = [r for r in rewards if r is not None]
    stats = {"problems": len(groups), "examples": len(examples), "skipped_too_long": too_long,
             "used_lower_ranked_candidate": fallbacks, "max_tokens": max_tokens, "skipped_bad_rows": len(bad)}
    if lengths:
        stats.update(tokens_mean=statistics.fmean(lengths), tokens_median=statistics.median(lengths), tokens_max=max(lengths))
    if rewards:
        stats.update(reward_mean=statistics.fmean(rewards))
    stats["skipped_rows"] = bad
    return examples, stats


def _count_tokens(tokenizer, example: dict) -> int:
    messages = [{"role": "system", "content": example["system"]},
                {"role": "user", "content": example["conversations"][0]["value"]},
                {"role": "assistant", "content": example["conversations"][1]["value"]}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])
