"""Explanation generation: the teacher is shown the question and the reference solution and writes the
explanation body, which ends with `<|end_of_explanation|>`. Sampling goes through the project's one engine
(`workbench.sampling`): vLLM when installed, else transformers.

`stream_explanation` yields the growing raw completion while the model writes (for the app's "generate"
button); it stops at the end tag, at end-of-turn, after `max_new_tokens`, or when `stop_event` is set, so a
user can cancel it. `generate_explanation` is the blocking form. The raw completion is what the reward scores
(`{"completion": text}`), so a missing end tag is penalised. `generate_explanations` writes many, resumably.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

from . import formats
from .errors import WorkbenchError
from .sampling import SamplingParams, TransformersEngine, make_engine, provenance


def stream_explanation(model, tokenizer, question: str, solution: str, *, max_new_tokens: int = 256,
                       temperature: float = 0.7, top_p: float = 1.0, system_prompt: str | None = None,
                       tags: formats.Tags = formats.STRATOS, stop_event: threading.Event | None = None,
                       seed: int | None = None) -> Iterator[str]:
    """Yield the raw completion generated so far (the text after the prompt), growing as the model writes.

    The last value is the final completion, cut after the first end tag when there is one. Closing the
    generator early (or setting `stop_event`) stops the model within one token.
    """
    if not isinstance(question, str) or not question.strip() or not isinstance(solution, str) or not solution.strip():
        raise WorkbenchError("generation needs a non-empty question and solution")
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature or 0.0, top_p=top_p,
                            seed=0 if seed is None else seed, stop=[tags.explanation_end])
    prompt = formats.teacher_prompt(tokenizer, question, solution, system_prompt, tags)
    yield from TransformersEngine(model, tokenizer).stream(prompt, params, stop_event)


def generate_explanation(model, tokenizer, question: str, solution: str, **kwargs) -> str:
    """The raw completion of one generation (blocking form of `stream_explanation`)."""
    last = ""
    for last in stream_explanation(model, tokenizer, question, solution, **kwargs):  # noqa: B007
        continue
    return last


# ------------------------------------------------------------------------------------------------ batches


def _done_keys(path) -> set[tuple[str, int]]:
    """(problem_id, sample) pairs already in a generation file; a torn last line (a killed run) is dropped."""
    from pathlib import Path

    from .io import read_jsonl, write_jsonl_atomic

    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return set()
    good, bad = [], 0
    for row in read_jsonl(p):
        if not row.ok or "problem_id" not in row.data or not isinstance(row.data.get("sample"), int):
            bad += 1
            continue
        good.append(row.data)
    if bad:  # rewrite without the broken lines so appends start from a clean file
        write_jsonl_atomic(p, good)
    return {(str(o["problem_id"]), int(o["sample"])) for o in good}


def generate_explanations(teacher: str, problems: list[dict], output, *, n: int = 1, temperature: float = 0.7,
                          top_p: float = 1.0, max_new_tokens: int = 1024, batch_size: int = 8,
                          engine: str = "auto", dtype: str = "auto", system_prompt: str | None = None,
                          tags: formats.Tags = formats.STRATOS, device: str = "auto", seed: int = 0,
                          progress: bool = True, **vllm_kwargs) -> dict:
    """Write `n` raw teacher completions per problem to `output` (JSONL, one row per completion).

    Resumable: rows already in `output` (same problem id and sample index) are skipped, and each batch is appended
    and fsync'ed as soon as it is done, so a killed run loses at most one batch. A second run on the same `output`
    is refused while one is writing it (a lock that dies with its process). `engine` is auto (vLLM when
    installed), vllm or transformers; `vllm_kwargs` go to `vllm.LLM` (e.g. tensor_parallel_size). Every row records
    the engine, model, dtype and sampling parameters that wrote it. Returns counts.
    """
    from pathlib import Path

    from tqdm.auto import tqdm

    from .io import append_jsonl, check_output, exclusive

    if batch_size < 1:
        raise WorkbenchError(f"batch_size must be at least 1 (got {batch_size})")
    if n < 1 or max_new_tokens < 1:
        raise WorkbenchError(f"n and max_new_tokens must be at least 1 (got n={n}, max_new_tokens={max_new_tokens})")
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=n, seed=seed,
                            stop=[tags.explanation_end])
    check_output(output)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with exclusive(output, "another `workbench generate`"):
        done = _done_keys(output)
        # a problem is generated when any of its samples is missing; its samples already written are not written again
        todo = [p for p in problems if any((str(p["id"]), k) not in done for k in range(n))]
        missing = sum((str(p["id"]), k) not in done for p in problems for k in range(n))
        stats = {"problems": len(problems), "requested": len(problems) * n, "skipped_done": len(problems) * n - missing,
                 "written": 0, "with_end_tag": 0, "engine": None}
        if not todo:
            return stats
        eng = make_engine(teacher, engine, device=device, dtype=dtype, seed=seed, batch_size=batch_size, **vllm_kwargs)
        stats["engine"] = eng.name
        meta = {"teacher": teacher, **provenance(eng, params)}
        prompts = [formats.teacher_prompt(eng.tokenizer, p["question"], p["solution"], system_prompt, tags) for p in todo]
        # chunks of problems: transformers runs `batch_size` prompts per forward; vLLM takes a large chunk at once
        chunk = batch_size if eng.name == "transformers" else max(batch_size, 256)
        bar = tqdm(total=missing, desc=f"generating ({eng.name})", unit="completion", disable=not progress)
        for a in range(0, len(todo), chunk):
            part = todo[a:a + chunk]
            samples = eng.generate(prompts[a:a + chunk], dataclasses.replace(params, seed=seed + a))
            rows = []
            for p, outs in zip(part, samples):
                for k, smp in enumerate(outs):
                    if (str(p["id"]), k) in done:
                        continue
                    end = smp.text.find(tags.explanation_end)
                    rows.append({"problem_id": p["id"], "sample": k, "question": p["question"], "solution": p["solution"],
                                 "completion": smp.text, "has_end_tag": end >= 0, "completion_tokens": smp.tokens,
                                 "finish_reason": smp.finish_reason, **meta})
            append_jsonl(output, rows)
            stats["written"] += len(rows)
            stats["with_end_tag"] += sum(r["has_end_tag"] for r in rows)
            bar.update(len(rows))
        bar.close()
        return stats


__all__ = ["stream_explanation", "generate_explanation", "generate_explanations"]
