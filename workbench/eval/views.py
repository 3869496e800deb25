"""What the app's Evaluate tab shows, as plain functions of jobs, records and summaries (no Gradio here).

    launch_kwargs(model, benchmark, preset, limit, samples, ...)  -> the arguments of `jobs.submit_eval`
    jobs_table(list_jobs())                                         -> one row per job (state, progress, accuracy, error)
    job_html(job)                                                   -> the selected job: state, progress bar, error
    job_message_html(job, "resumed")                                -> the line under the form: what was done, state now
    records_table(records, show) / record_html(record)              -> the per-sample drill-down
    run_choices(jobs) / comparison(jobs, ids, metric, grader)       -> runs to compare, the accuracy chart and table

Everything user-written (prompts, model outputs, errors) is HTML-escaped: a model that writes `<script>` shows it.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path

from ..errors import WorkbenchError

DEFAULT_PRESET = "default"  # the preset dropdown's "the benchmark's own default"
RECORD_FILTERS = [("all samples", "all"), ("correct", "correct"), ("wrong", "wrong"), ("no answer", "no_answer"),
                  ("truncated (hit max new tokens)", "truncated"), ("grading timeout or error", "grading")]
JOB_COLUMNS = ["id", "state", "benchmark", "model", "preset", "limit", "n", "progress", "accuracy %", "created",
               "took", "error / message"]
RECORD_COLUMNS = ["#", "problem", "verdict", "extracted", "gold", "sample", "tokens", "finish"]

EVAL_CSS = """
.wb-ev-job{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;font-size:14px;line-height:1.5}
.wb-ev-badge{display:inline-block;border-radius:10px;padding:0 9px;font-size:12px;font-weight:600;color:#fff;margin-right:6px}
.wb-ev-queued{background:#6e7781}.wb-ev-running{background:#0072B2}.wb-ev-done{background:#009E73}
.wb-ev-failed{background:#D55E00}.wb-ev-cancelled{background:#b08800}
.wb-ev-bar{height:10px;background:#eaeef2;border-radius:5px;overflow:hidden;margin:6px 0}
.wb-ev-bar>div{height:100%;background:#0072B2}
.wb-ev-meta{color:#57606a;font-size:13px}
.wb-ev-error{background:#fdecea;border:1px solid #d55e00;border-radius:4px;padding:6px 10px;color:#611a15;margin-top:6px;white-space:pre-wrap}
.wb-ev-sample{font-size:14px;line-height:1.45}
.wb-ev-sample pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;border:1px solid #d0d7de;border-radius:4px;padding:8px;max-height:420px;overflow:auto;font-size:13px;margin:4px 0 10px}
.wb-ev-sample table{border-collapse:collapse;margin:6px 0}
.wb-ev-sample td{padding:2px 12px 2px 0;vertical-align:top}
.wb-ev-ok{color:#1a7f37;font-weight:700}.wb-ev-bad{color:#cf222e;font-weight:700}.wb-ev-none{color:#9a6700;font-weight:700}
.dark .wb-ev-job{border-color:#4a4a52}
.dark .wb-ev-bar{background:#3f3f46}
.dark .wb-ev-bar>div{background:#56b4e9}
.dark .wb-ev-meta,.dark .wb-ev-meta *{color:#c8c8c8}
.dark .wb-ev-sample pre{background:#1c1c20;border-color:#4a4a52;color:#ececec}
.dark .wb-ev-ok{color:#56d364}.dark .wb-ev-bad{color:#ff8a80}.dark .wb-ev-none{color:#e3b341}
"""
# The text colours of EVAL_CSS and what they sit on, light and dark (tests check a contrast of at least 4.5):
# (text, background) per scheme; the dark backgrounds are Gradio's dark page and block colours and the `pre` boxes'.
EVAL_TEXT_COLOURS = {
    "light": {"meta": "#57606a", "ok": "#1a7f37", "bad": "#cf222e", "none": "#9a6700", "pre": "#1a1a1a"},
    "dark": {"meta": "#c8c8c8", "ok": "#56d364", "bad": "#ff8a80", "none": "#e3b341", "pre": "#ececec"},
}
EVAL_BACKGROUNDS = {"light": ("#ffffff", "#f6f8fa"), "dark": ("#0f0f11", "#27272a", "#1c1c20")}


def _esc(x) -> str:
    return html.escape("" if x is None else str(x))


def error_html(message: str) -> str:
    """A red box with an error message (escaped)."""
    return f'<div class="wb-ev-error">⚠ <b>Error:</b> {_esc(message)}</div>'


# ============================================================================================== launching


def benchmark_choices() -> list[tuple[str, str]]:
    """(label, name) of every benchmark, for a dropdown."""
    from .benchmarks import list_benchmarks

    return [(f"{b.title} ({b.name})", b.name) for b in list_benchmarks()]


def preset_choices() -> list[tuple[str, str]]:
    """(label, name) of every preset, after "the benchmark's default"."""
    from .presets import list_presets

    return [("benchmark's default (quick for countdown, else skythought)", DEFAULT_PRESET)] + [
        (f"{p.name}: {p.description}", p.name) for p in list_presets()]


def _opt_int(value, name: str, minimum: int = 1) -> int | None:
    """An optional whole number from a form: empty or 0 mean "the default" (None)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise WorkbenchError(f"{name} must be a whole number, got {value!r}") from None
    if math.isnan(f) or f == 0:
        return None
    if not math.isfinite(f) or f != int(f):
        raise WorkbenchError(f"{name} must be a whole number, got {value!r}")
    if int(f) < minimum:
        raise WorkbenchError(f"{name} must be at least {minimum} (got {int(f)}); use 0 (or leave it empty) for the default")
    return int(f)


def _opt_float(value, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise WorkbenchError(f"{name} must be a number, got {value!r}") from None
    if math.isinf(f):
        raise WorkbenchError(f"{name} must be a finite number, got {value!r}")
    return None if math.isnan(f) else f


def launch_kwargs(model: str | None, benchmark: str | None, preset: str | None = None, limit=None, samples=None,
                  max_new_tokens=None, temperature=None, data: str | None = None, batch_size=None,
                  engine: str | None = None) -> dict:
    """The arguments of `submit_eval` from the form's values (empty or 0: the preset's default; limit 0: all).

    Raises WorkbenchError for a missing model or benchmark or a value that is not a number; the benchmark and
    preset themselves are checked by `submit_eval`.
    """
    model = (model or "").strip()
    benchmark = (benchmark or "").strip()
    if not model:
        raise WorkbenchError("give a model: the alias `smollm2-135m`, a local folder or a hub id")
    if not benchmark:
        raise WorkbenchError("choose a benchmark")
    kw: dict = {"benchmark": benchmark, "model": model,
                "preset": None if not preset or preset == DEFAULT_PRESET else str(preset),
                "limit": _opt_int(limit, "limit")}
    options = {"n": _opt_int(samples, "samples per problem"),
               "max_new_tokens": _opt_int(max_new_tokens, "max new tokens"),
               "temperature": _opt_float(temperature, "temperature"),
               "batch_size": _opt_int(batch_size, "batch size"),
               "data": (data or "").strip() or None,
               "engine": None if not engine or engine == "auto" else str(engine)}
    kw.update({k: v for k, v in options.items() if v is not None})
    return kw


def launch(*args, **kwargs):
    """Check the form's values and submit the evaluation job; returns its JobInfo (raises WorkbenchError)."""
    from .jobs import submit_eval

    return submit_eval(**launch_kwargs(*args, **kwargs))


# =================================================================================================== jobs


def _clock(ts: float | None, fmt: str = "%m-%d %H:%M:%S") -> str:
    return time.strftime(fmt, time.localtime(ts)) if ts else ""


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _preset_of(job) -> str:
    preset = job.args.get("preset")
    if preset:
        return str(preset)
    try:
        from .benchmarks import get_benchmark

        return get_benchmark(job.args.get("benchmark", "")).default_preset
    except WorkbenchError:
        return ""


def progress_text(job) -> str:
    """"3/10 (30%)" once the total is known, else the job's message."""
    if job.progress_total:
        return f"{job.progress_done}/{job.progress_total} ({100 * job.progress:.0f}%)"
    return "waiting" if job.state == "queued" else ("—" if job.state != "running" else "starting")


def _accuracy_text(job) -> str:
    r = job.result or {}
    acc, se = r.get("accuracy"), r.get("accuracy_stderr")
    if acc is None:
        return ""
    return f"{100 * acc:.1f} ± {100 * (se or 0):.1f}"


def _short(text: str | None, n: int = 110) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def jobs_table(jobs: list):
    """One row per job, newest first: state, what it evaluates, progress, accuracy, when, and its error."""
    import pandas as pd

    rows = []
    for j in jobs:
        a = j.args if j.kind == "eval" else {}
        end = j.finished_at if j.state not in ("queued", "running") else None
        rows.append({
            "id": j.id, "state": j.state,
            "benchmark": a.get("benchmark") or (j.title or j.kind), "model": a.get("model", ""),
            "preset": _preset_of(j) if j.kind == "eval" else "", "limit": "" if a.get("limit") is None else str(a["limit"]),
            "n": "" if samples_per_problem(j) is None else str(samples_per_problem(j)),
            "progress": progress_text(j), "accuracy %": _accuracy_text(j),
            "created": _clock(j.created_at),
            "took": fmt_duration(end - j.started_at) if end and j.started_at else "",
            "error / message": _short(j.error) if j.error else ("" if j.message == j.state else _short(j.message)),
        })
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


def samples_per_problem(job) -> int | None:
    """How many samples per problem an evaluation job draws: its own `n`, else its preset's (None: not an
    evaluation, or an unknown preset)."""
    if job.kind != "eval":
        return None
    n = job.args.get("n")
    if n is not None:
        return int(n)
    from .presets import PRESETS

    preset = PRESETS.get(_preset_of(job))
    return preset.n if preset is not None else None


def job_label(job) -> str:
    return f"#{job.id} · {job.title or job.kind} · {job.state}"


def job_choices(jobs: list) -> list[tuple[str, int]]:
    """(label, id) of every job, for the job picker."""
    return [(f"#{j.id} · {j.title or j.kind}", j.id) for j in jobs]


def queue_ahead(job, jobs: list) -> int:
    """How many jobs run or wait before a queued job."""
    return sum(1 for j in jobs if j.id != job.id and (j.state == "running" or (j.state == "queued" and j.id < job.id)))


def job_html(job, jobs: list | None = None, now: float | None = None) -> str:
    """The selected job: state badge, title, progress bar, times, and its error in a red box."""
    if job is None:
        return '<div class="wb-ev-job wb-ev-meta">No job selected: launch one above, or click a row of the table.</div>'
    now = now or time.time()
    pct = 100 * job.progress if job.progress_total else (100.0 if job.state == "done" else 0.0)
    parts = [f'<div class="wb-ev-job" data-state="{_esc(job.state)}" data-job="{job.id}">',
             f'<div><span class="wb-ev-badge wb-ev-{_esc(job.state)}">{_esc(job.state)}</span>'
             f"<b>#{job.id}</b> {_esc(job.title or job.kind)}</div>",
             f'<div class="wb-ev-bar" title="{pct:.0f}%"><div style="width:{pct:.1f}%"></div></div>']
    line = [f"progress {_esc(progress_text(job))}"]
    if job.state == "queued" and jobs is not None:
        ahead = queue_ahead(job, jobs)
        line.append(f"waiting for a free slot ({ahead} job{'s' if ahead != 1 else ''} ahead)" if ahead
                    else "starting")
    elif job.message and job.message not in (job.state, "running"):
        line.append(_esc(job.message))
    line.append(f"created {_clock(job.created_at)}")
    if job.started_at:
        end = job.finished_at if job.state not in ("queued", "running") else now
        line.append(f"started {_clock(job.started_at, '%H:%M:%S')}, "
                    f"{'took' if job.state not in ('queued', 'running') else 'running for'} "
                    f"{fmt_duration((end or now) - job.started_at)}")
    if job.attempts > 1:
        line.append(f"attempt {job.attempts}")
    parts.append(f'<div class="wb-ev-meta">{" · ".join(line)}</div>')
    if job.result and job.result.get("accuracy") is not None:
        parts.append(f'<div><b>accuracy {_accuracy_text(job)} %</b> over {job.result.get("problems")} problems'
                     f'{"" if job.result.get("complete", True) else " (incomplete)"}</div>')
    if job.error:
        parts.append(error_html(job.error))
    if job.state == "cancelled":
        parts.append('<div class="wb-ev-meta">Cancelled: <b>Resume</b> continues it, skipping the samples it finished.</div>')
    elif job.state == "failed":
        parts.append('<div class="wb-ev-meta">Fix the cause, then <b>Resume</b> runs it again (finished samples '
                     'are kept), or launch a new job.</div>')
    if job.output_dir:
        parts.append(f'<div class="wb-ev-meta">output: <code>{_esc(job.output_dir)}</code> · log: '
                     f'<code>{_esc(job.log_path)}</code></div>')
    parts.append("</div>")
    return "".join(parts)


def job_message_html(job, action: str) -> str:
    """The line under the launch form after something was done to a job: "Job #3 resumed · now running". It
    carries the job, its state and the action as data attributes, so the tab's poll can show the state as it
    changes (a finished job never reads "queued")."""
    state = _esc(job.state)
    end = {"done": " ✓", "failed": ": see the job below", "cancelled": ""}.get(job.state, "…")
    return (f'<div class="wb-ev-meta" data-ev-job="{int(job.id)}" data-ev-state="{state}" '
            f'data-ev-action="{_esc(action)}">Job <b>#{int(job.id)}</b> {_esc(action)} · now <b>{state}</b>{end}</div>')


def can_cancel(job) -> bool:
    return job is not None and job.state in ("queued", "running")


def can_resume(job) -> bool:
    return job is not None and job.state in ("failed", "cancelled")


# ================================================================================================ results


_RECORD_CACHE: dict[str, tuple[tuple, list[dict]]] = {}


def job_records(job) -> list[dict]:
    """The records a job has written so far, read again only when records.jsonl changed."""
    from .runner import RECORDS_FILE, read_records

    if job is None or not job.output_dir:
        return []
    path = Path(job.output_dir) / RECORDS_FILE
    try:
        st = path.stat()
    except OSError:
        return []
    key = (st.st_size, st.st_mtime_ns)
    hit = _RECORD_CACHE.get(str(path))
    if hit and hit[0] == key:
        return hit[1]
    records = read_records(job.output_dir)
    if len(_RECORD_CACHE) > 8:
        _RECORD_CACHE.clear()
    _RECORD_CACHE[str(path)] = (key, records)
    return records


def shard_states(output_dir: str | None) -> list[tuple[int, str]]:
    """(index, state) of each shard of a sharded run folder, from its shards.json; [] for an unsharded run."""
    import json

    from .shards import SHARDS_FILE

    if not output_dir:
        return []
    try:
        data = json.loads((Path(output_dir) / SHARDS_FILE).read_text(encoding="utf-8"))
        return [(int(s["index"]), str(s["state"])) for s in data["shards"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def job_summary(job) -> dict | None:
    """The summary.json of a job's run folder (None before the run writes one, or when it is unreadable)."""
    from .runner import read_summary

    if job is None or not job.output_dir:
        return None
    try:
        return read_summary(job.output_dir)
    except (OSError, ValueError):
        return None


def verdict_of(record: dict) -> str:
    """correct, wrong, no answer, grading timeout or grading error."""
    status = record.get("status", "ok")
    if status == "no_answer":
        return "no answer"
    if status == "timeout":
        return "grading timeout"
    if status == "error":
        return "grading error"
    return "correct" if record.get("equal") else "wrong"


def fmt_gold(gold) -> str:
    if isinstance(gold, dict) and "target" in gold:
        return f"{gold['target']} from {', '.join(str(x) for x in gold.get('numbers', []))}"
    return str(gold)


def _matches(record: dict, show: str) -> bool:
    if show in (None, "", "all"):
        return True
    if show == "correct":
        return verdict_of(record) == "correct"
    if show == "wrong":
        return verdict_of(record) == "wrong"
    if show == "no_answer":
        return record.get("status") == "no_answer"
    if show == "truncated":
        return record.get("finish_reason") == "length"
    if show == "grading":
        return record.get("status") in ("timeout", "error")
    raise WorkbenchError(f"unknown filter {show!r}; use one of {', '.join(v for _, v in RECORD_FILTERS)}")


def filtered_indices(records: list[dict], show: str = "all") -> list[int]:
    return [i for i, r in enumerate(records) if _matches(r, show)]


def records_table(records: list[dict], show: str = "all"):
    """One row per sample ("#" is its index in the records, for the drill-down)."""
    import pandas as pd

    rows = []
    for i in filtered_indices(records, show):
        r = records[i]
        rows.append({"#": i, "problem": r.get("problem_id"), "verdict": verdict_of(r),
                     "extracted": _short(r.get("extracted"), 60) if r.get("extracted") is not None else "—",
                     "gold": _short(fmt_gold(r.get("gold")), 60), "sample": r.get("sample"),
                     "tokens": r.get("tokens"), "finish": r.get("finish_reason", "")})
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def step_record(records: list[dict], current: int | None, show: str = "all", delta: int = 1) -> int | None:
    """The index of the next (delta=1) or previous (-1) record that passes the filter, wrapping around."""
    idx = filtered_indices(records, show)
    if not idx:
        return None
    if current is None or current not in idx:
        later = [i for i in idx if current is None or (i > current if delta > 0 else i < current)]
        return (later[0] if delta > 0 else later[-1]) if later else idx[0 if delta > 0 else -1]
    return idx[(idx.index(current) + delta) % len(idx)]


def _verdict_span(ok: bool | None, label: str | None = None) -> str:
    if ok is None:
        return '<span class="wb-ev-none">— not graded</span>'
    return (f'<span class="wb-ev-ok">✓ {_esc(label or "correct")}</span>' if ok
            else f'<span class="wb-ev-bad">✗ {_esc(label or "wrong")}</span>')


def record_html(record: dict | None, index: int | None = None, total: int | None = None) -> str:
    """One sample: its verdicts, the extracted and gold answers, then the prompt and the output, all escaped."""
    if not record:
        return '<div class="wb-ev-sample wb-ev-meta">Click a row of the samples table to see its prompt, output and verdicts.</div>'
    verdict = verdict_of(record)
    ours = (_verdict_span(record.get("equal"), verdict) if record.get("status", "ok") == "ok"
            else f'<span class="wb-ev-none">∅ {_esc(verdict)}</span>')
    sky = (record.get("verdicts") or {}).get("skythought")
    pos = f" · sample {index + 1} of {total}" if index is not None and total else ""
    rows = [("Verdict (workbench)", ours),
            ("SkyThought's verdict", _verdict_span(sky) if sky is not None else
             '<span class="wb-ev-meta">not recorded (run with --skythought off, or a countdown problem)</span>'),
            ("Extracted answer", f"<code>{_esc(record.get('extracted'))}</code>" if record.get("extracted") is not None
             else '<span class="wb-ev-meta">nothing could be extracted</span>'),
            ("Gold answer", f"<code>{_esc(fmt_gold(record.get('gold')))}</code>"),
            ("Tokens", f"{_esc(record.get('tokens'))} · finish: {_esc(record.get('finish_reason'))}"
             + (" <b>(hit max new tokens: truncated)</b>" if record.get("finish_reason") == "length" else ""))]
    if record.get("grading"):
        rows.append(("Grading", _esc(", ".join(f"{k}: {v}" for k, v in record["grading"].items()))))
    out = [f'<div class="wb-ev-sample" data-verdict="{_esc(verdict)}">',
           f"<div><b>{_esc(record.get('problem_id'))}</b> · sample {_esc(record.get('sample'))}{pos}</div>",
           "<table>" + "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows) + "</table>"]
    if record.get("error"):
        out.append(error_html(record["error"]))
    out.append(f"<div><b>Prompt</b> (as the model saw it)</div><pre class=\"wb-ev-prompt\">{_esc(record.get('prompt'))}</pre>")
    out.append(f"<div><b>Output</b></div><pre class=\"wb-ev-output\">{_esc(record.get('output'))}</pre>")
    out.append("</div>")
    return "".join(out)


def summary_markdown(summary: dict | None, job=None, records: list[dict] | None = None) -> str:
    """The scores of a run: accuracy ± s.e., pass@k, SkyThought's score, tokens, time.

    Before a run writes its summary (running, or killed by a cancel), the records graded so far are scored.
    """
    active = job is not None and job.state in ("queued", "running")
    shards = shard_states(getattr(job, "output_dir", None) or (summary or {}).get("output_dir"))
    text = _summary_markdown(summary, job, records, active)
    if shards:
        text += "  \n**Shards:** " + " · ".join(f"{k}: {_esc(state)}" for k, state in shards)
    return text


def _summary_markdown(summary: dict | None, job, records: list[dict] | None, active: bool) -> str:
    if not summary and records:
        from .runner import summarize

        s = summarize(records)
        correct = sum(bool(r.get("equal")) for r in records)
        total = f" (of {job.progress_total} in the run)" if job is not None and job.progress_total else ""
        return (f"**{'So far' if active else 'Partial results'}:** {correct} correct of {len(records)} graded "
                f"samples{total}; accuracy **{100 * s['accuracy']:.1f}% ± {100 * (s['accuracy_stderr'] or 0):.1f}** "
                f"over {s['problems']} problems (pass@1, ± 1 s.e.)"
                + ("" if active else "  \n*The run stopped before writing its summary: Resume finishes it.*"))
    if not summary:
        if active and job.kind == "eval":
            return "*No results yet: samples appear below as each batch is graded.*"
        return "*No results for this job.*"
    acc, se = summary.get("accuracy"), summary.get("accuracy_stderr")
    head = (f"**{_esc(summary.get('title') or summary.get('benchmark'))} · {_esc(summary.get('model'))} · "
            f"{_esc(summary.get('preset'))}**: ")
    head += (f"accuracy **{100 * acc:.1f}% ± {100 * (se or 0):.1f}** (pass@1, ± 1 s.e.)" if acc is not None
             else "no finished samples")
    more = [f"{k} {100 * m['mean']:.1f}%" for k, m in (summary.get("metrics") or {}).items()
            if k != "pass@1" and m.get("mean") is not None]
    sky = summary.get("skythought")
    if sky and sky.get("accuracy") is not None:
        more.append(f"SkyThought grader {100 * sky['accuracy']:.1f}% (disagrees on {sky.get('disagree', 0)})")
    tok = summary.get("tokens") or {}
    t = summary.get("time") or {}
    facts = [f"{summary.get('problems')} problems", f"{summary.get('samples')} samples",
             f"no answer {summary.get('no_answer', 0)}", f"truncated {tok.get('truncated', 0)}",
             f"{tok.get('mean_per_sample', 0):.0f} tokens/sample"]
    if t.get("tokens_per_s"):
        facts.append(f"{t['tokens_per_s']} tokens/s")
    if summary.get("grader"):
        facts.append(f"grader: {_esc(summary['grader'])}")
    text = head + (" · " + " · ".join(more) if more else "") + "  \n" + " · ".join(facts)
    if not summary.get("complete", True):
        text += "  \n*Incomplete: the run stopped before every sample was done (Resume continues it).*"
    return text


# ================================================================================================ compare


def run_choices(jobs: list) -> list[tuple[str, int]]:
    """(label, id) of the evaluation jobs that have results to chart (finished, or stopped with some samples)."""
    out = []
    for j in jobs:
        if j.kind != "eval" or j.state in ("queued", "running"):
            continue
        if j.state == "done" or (j.output_dir and (Path(j.output_dir) / "summary.json").is_file()):
            suffix = "" if j.state == "done" else f" ({j.state}, partial)"
            out.append((f"#{j.id} · {j.title}{suffix}", j.id))
    return out


def default_runs(jobs: list) -> list[int]:
    """The runs charted until the user picks: every finished evaluation."""
    return [j.id for j in jobs if j.kind == "eval" and j.state == "done"]


def run_summaries(jobs: list, ids) -> list[dict]:
    by_id = {j.id: j for j in jobs}
    out = []
    for i in ids or []:
        s = job_summary(by_id.get(int(i)))
        if s:
            out.append(s)
    return out


def metric_choices(summaries: list[dict]) -> list[str]:
    names = ["pass@1"]
    for s in summaries:
        for k in (s.get("metrics") or {}):
            if k not in names:
                names.append(k)
    return names


def comparison(jobs: list, ids, metric: str = "pass@1", grader: str = "workbench"):
    """(plotly figure, table) comparing the chosen runs: accuracy per benchmark and model, ± 1 s.e."""
    from .plots import accuracy_figure, summaries_table

    summaries = run_summaries(jobs, ids)
    metric = metric if metric in metric_choices(summaries) else "pass@1"
    fig = accuracy_figure(summaries, metric=metric, grader=grader or "workbench")
    benchmarks = {s.get("title") or s.get("benchmark") for s in summaries}
    fig.update_layout(bargap=0.6 if len(benchmarks) == 1 else 0.3)  # one benchmark: no bar as wide as the chart
    if fig.data:
        fig.update_layout(showlegend=True)  # name the model even when there is only one
    if summaries and grader == "skythought" and not any(s.get("skythought") for s in summaries):
        fig.update_layout(title="No chosen run recorded SkyThought's verdict (install the skythought package)")
    return fig, summaries_table(summaries)


__all__ = ["EVAL_CSS", "RECORD_FILTERS", "DEFAULT_PRESET", "error_html", "benchmark_choices", "preset_choices",
           "launch_kwargs", "launch", "jobs_table", "job_label", "job_choices", "job_html", "queue_ahead",
           "job_message_html", "samples_per_problem", "EVAL_TEXT_COLOURS", "EVAL_BACKGROUNDS",
           "can_cancel", "can_resume", "progress_text", "fmt_duration", "job_records", "job_summary", "verdict_of",
           "fmt_gold", "filtered_indices", "records_table", "step_record", "record_html", "summary_markdown",
           "run_choices", "default_runs", "run_summaries", "metric_choices", "comparison"]
