"""An evaluation in shards: slices of the problems run as separate processes or Slurm jobs, merged into one run.

    workbench eval run --benchmark math500 --model M --shards 8 --executor slurm --slurm-partition gpu --slurm-gpus 1

Shard k of N runs problems[k::N] (round robin, so long and short problems spread evenly) as an ordinary run
(`run_eval`: resumable records, its own config and summary) in `OUTPUT/shards/k-of-N/`. When every shard has run,
the parent folder gets the merged run: `records.jsonl` with every sample exactly once, one `summary.json` over all the
problems, `shards.json` with each shard's state. Running the same command again resumes: finished shards are kept,
the others run again from their own records (so a failed or cancelled shard resumes alone).

Executors:
- `local`: the shards run at once as processes on this machine (`python -m workbench.eval.shards SPEC`); with GPUs,
  `--gpus-per-shard G` gives each its own CUDA_VISIBLE_DEVICES (data parallelism inside a node: one engine a GPU);
- `slurm`: each shard is a Slurm job submitted with submitit (its settings from the `--slurm-*` flags or a YAML file,
  `recipes/slurm/*.yaml`); `--slurm-cluster local` runs the same submission through submitit's local executor, on this
  machine, which is how the tests check it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import WorkbenchError
from ..io import write_atomic, write_jsonl_atomic
from . import benchmarks as bm
from .runner import (
    CONFIG_FILE,
    RECORDS_FILE,
    EvalConfig,
    _check_config,
    local_data,
    read_records,
    read_summary,
    resolve,
    write_summary,
)

SHARDS_FILE = "shards.json"
EXECUTORS = ("local", "slurm")


@dataclass
class ShardConfig:
    """How an evaluation is split and where its shards run (flags of `workbench eval run`)."""

    shards: int = field(default=1, metadata={
        "help": "split the problems into N shards (problems k, k+N, k+2N ...), each run as its own process or Slurm "
                "job and merged into one run folder (1: no sharding)"})
    executor: str = field(default="local", metadata={
        "help": "where shards run: local (processes on this machine, all at once) or slurm (one submitit job each)",
        "choices": EXECUTORS})
    gpus_per_shard: int = field(default=0, metadata={
        "help": "local executor: GPUs for each shard, given as CUDA_VISIBLE_DEVICES (vLLM data parallelism inside a "
                "node: --shards 8 --gpus-per-shard 1 on 8 GPUs; with --tensor-parallel-size T use T)"})
    data_parallel_size: int | None = field(default=None, metadata={
        "help": "vLLM data parallelism inside a node: D engines at once, each on its own GPUs (--tensor-parallel-size "
                "of them, default 1), as D local shards; the same as --shards D --executor local --gpus-per-shard T"})
    slurm_config: str | None = field(default=None, metadata={
        "help": "a YAML file of the Slurm settings below (e.g. recipes/slurm/eval.yaml); flags override it"})
    slurm_partition: str | None = field(default=None, metadata={"help": "Slurm partition"})
    slurm_account: str | None = field(default=None, metadata={"help": "Slurm account"})
    slurm_gpus: int | None = field(default=None, metadata={"help": "GPUs per shard (per Slurm job); default 1"})
    slurm_cpus: int | None = field(default=None, metadata={"help": "CPUs per shard; default 8"})
    slurm_mem_gb: int | None = field(default=None, metadata={"help": "memory per shard in GB; default 64"})
    slurm_time: int | None = field(default=None, metadata={"help": "time limit per shard in minutes; default 240"})
    slurm_cluster: str | None = field(default=None, metadata={
        "help": "submitit's backend: slurm (default), or local / debug to run the same submission on this machine",
        "choices": ("slurm", "local", "debug")})

    def __post_init__(self) -> None:
        if not isinstance(self.shards, int) or self.shards < 1:
            raise WorkbenchError(f"--shards must be a whole number >= 1 (got {self.shards!r})")
        if self.executor not in EXECUTORS:
            raise WorkbenchError(f"--executor must be one of {', '.join(EXECUTORS)} (got {self.executor!r})")
        if self.gpus_per_shard < 0:
            raise WorkbenchError(f"--gpus-per-shard must be >= 0 (got {self.gpus_per_shard})")
        if self.data_parallel_size is not None:
            if self.data_parallel_size < 1:
                raise WorkbenchError(f"--data-parallel-size must be >= 1 (got {self.data_parallel_size})")
            if self.shards not in (1, self.data_parallel_size) or self.executor != "local":
                raise WorkbenchError("--data-parallel-size D runs D local shards: leave out --shards and --executor "
                                     "(or use --shards with --gpus-per-shard)")
            self.shards = self.data_parallel_size

    def with_engine(self, tensor_parallel_size: int | None) -> ShardConfig:
        """With --data-parallel-size, each shard's GPUs: --tensor-parallel-size of them (1 without)."""
        if self.data_parallel_size and not self.gpus_per_shard:
            return replace(self, gpus_per_shard=max(1, int(tensor_parallel_size or 1)))
        return self

    def slurm(self) -> dict:
        """The Slurm settings: the YAML file's, then the flags', then the defaults."""
        keys = ("partition", "account", "gpus", "cpus", "mem_gb", "time", "cluster")
        out = {"gpus": 1, "cpus": 8, "mem_gb": 64, "time": 240, "cluster": "slurm", "partition": None, "account": None}
        if self.slurm_config:
            import yaml

            path = Path(self.slurm_config)
            if not path.is_file():
                raise WorkbenchError(f"--slurm-config: no such file {path}")
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict) or set(data) - set(keys):
                raise WorkbenchError(f"{path}: expected a mapping with keys among {', '.join(keys)}; got "
                                     f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
            out.update({k: v for k, v in data.items() if v is not None})
        out.update({k: getattr(self, f"slurm_{k}") for k in keys if getattr(self, f"slurm_{k}") is not None})
        return out


def shard_dir(out: Path, k: int, n: int) -> Path:
    return out / "shards" / f"{k}-of-{n}"


def run_shard(spec: dict) -> dict:
    """Run one shard: what a shard's process or Slurm job calls. `spec` is an EvalConfig as a dict (with shard_index
    and shard_count), or {"argv": [...]}: a `workbench` command line (a shard of `workbench generate`)."""
    if "argv" in spec:
        from ..cli import main as cli_main

        rc = cli_main(list(spec["argv"]))
        if rc:
            raise WorkbenchError(f"workbench {' '.join(spec['argv'][:1])} exited with {rc}")
        return {"exit": rc}
    from .runner import run_eval

    return run_eval(EvalConfig(**spec), log=lambda m: print(m, file=sys.stderr, flush=True))


def run_sharded(config: EvalConfig, shards: ShardConfig, *, overwrite: bool = False, log=None, progress=None,
                should_stop=None) -> dict:
    """Run (or resume) an evaluation in `shards.shards` shards and merge them; returns the merged summary.

    progress(done, total, message) is called about every second with the samples the shards have written;
    should_stop() is checked as often: when it returns True the shards are stopped (processes terminated, Slurm jobs
    cancelled) and the merged summary says `"complete": false` (a later run resumes them)."""
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    shards = shards.with_engine(config.tensor_parallel_size)
    n = shards.shards
    t0 = time.time()
    bench, preset, out = resolve(config)
    loaded = bm.load_benchmark_report(bench.name, config.data, config.limit)
    problems = loaded.items
    if n > len(problems):
        raise WorkbenchError(f"--shards {n} is more than the {len(problems)} problems of this run; use at most "
                             f"{len(problems)}")
    stored = {"benchmark": bench.name, "model": config.model, "preset": preset.to_dict(),
              "data": local_data(config.data), "system_prompt": preset.system_for(config.model),
              "skythought": config.skythought, "limit": config.limit, "shards": n}
    if overwrite and out.exists():
        import shutil

        for name in (RECORDS_FILE, "summary.json", CONFIG_FILE, SHARDS_FILE):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "shards", ignore_errors=True)
    try:
        old = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8")) if (out / CONFIG_FILE).is_file() else None
    except (OSError, ValueError):
        old = None  # _check_config below names the unreadable file
    if isinstance(old, dict) and old.get("shards") == n and old.get("limit") != config.limit:  # the slices would change
        raise WorkbenchError(f"{out} was sharded with --limit {old.get('limit')}; resume it with the same limit, or "
                             "pass another --output folder")
    if (out / RECORDS_FILE).is_file() and not (out / SHARDS_FILE).is_file():
        raise WorkbenchError(f"{out} holds an unsharded run; pass another --output folder (or --overwrite)")
    _check_config(out, {**stored, **{k: getattr(config, k) for k in ("batch_size", "device", "engine", "dtype",
                                                                      "tensor_parallel_size", "timeout_s")}})
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / CONFIG_FILE, json.dumps({**stored, "batch_size": config.batch_size, "device": config.device,
                                                "engine": config.engine, "dtype": config.dtype,
                                                "tensor_parallel_size": config.tensor_parallel_size,
                                                "timeout_s": config.timeout_s}, indent=2) + "\n")
    specs = []
    for k in range(n):
        d = shard_dir(out, k, n)
        spec = asdict(replace(config, output_dir=str(d), shard_index=k, shard_count=n,
                              data=local_data(config.data)))
        summary = read_summary(d)
        specs.append((k, d, spec, bool(summary and summary.get("complete"))))
    states = {k: ("done (kept)" if done else "pending") for k, _, _, done in specs}
    _write_states(out, n, shards.executor, states)
    todo = [(k, d, spec) for k, d, spec, done in specs if not done]
    say(f"{bench.title}: {len(problems)} problems in {n} shards ({len(todo)} to run, executor {shards.executor}) "
        f"-> {out}/shards")
    if todo:
        run = _run_local if shards.executor == "local" else _run_slurm
        total = len(problems) * preset.n

        def tick() -> bool:  # progress from the shards' records; True to stop
            if progress:
                done = sum(_count_lines(shard_dir(out, k, n) / RECORDS_FILE) for k in range(n))
                progress(min(done, total), total, f"{done}/{total} samples in {n} shards")
            return bool(should_stop and should_stop())

        for k, state in run(todo, shards, out, say, tick).items():
            states[k] = state
            _write_states(out, n, shards.executor, states)
    # merge: every sample of every shard once, in problem order
    records, seen = [], set()
    for k in range(n):
        for r in read_records(shard_dir(out, k, n)):
            key = (r["problem_id"], int(r["sample"]))
            if key not in seen:
                seen.add(key)
                records.append(r)
    order = {p["id"]: i for i, p in enumerate(problems)}
    records.sort(key=lambda r: (order.get(r["problem_id"], len(order)), int(r["sample"])))
    write_jsonl_atomic(out / RECORDS_FILE, records)
    failed = sorted(k for k, s in states.items() if not s.startswith("done"))
    summary = write_summary(out, problems, preset, bench, config, complete=not failed, wall_s=time.time() - t0,
                            skipped_rows=loaded.skipped)
    summary["shards"] = {"count": n, "executor": shards.executor, "states": {str(k): states[k] for k in range(n)}}
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
    if failed:
        say(f"shards {', '.join(map(str, failed))} did not finish (see {out / SHARDS_FILE}); run the same command "
            "again to resume them (finished shards are kept)")
    acc = summary["accuracy"]
    say(f"{bench.title}: accuracy {acc:.3f} ± {summary['accuracy_stderr']:.3f} over {summary['problems']} problems, "
        f"{len(records)} samples merged from {n} shards" if acc is not None else f"{bench.title}: no finished samples")
    return summary


def generate_sharded(argv: list[str], output: str, problem_ids: list[str], shards: ShardConfig, log=None) -> dict:
    """`workbench generate` in shards: shard k runs the same command on problems k, k+N, ... into
    `OUTPUT.shards/k-of-N/generated.jsonl` (resumable as any generation file); then every row of every shard, once per
    (problem, sample), is merged into OUTPUT. `argv` is the command without --output. Returns counts."""
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    n, n_problems = shards.shards, len(problem_ids)
    if n > n_problems:
        raise WorkbenchError(f"--shards {n} is more than the {n_problems} problems to generate for; use at most "
                             f"{n_problems}")
    out = Path(output)
    base = out.parent / (out.name + ".shards")
    if out.is_file() and out.stat().st_size and not base.is_dir():  # merging would replace rows of another run
        raise WorkbenchError(f"{out} holds completions of an unsharded run; resume it without --shards, or pass "
                             "another --output")
    todo = []
    for k in range(n):
        d = base / f"{k}-of-{n}"
        part = d / "generated.jsonl"
        todo.append((k, d, {"argv": [*argv, "--output", str(part), "--shard-index", str(k), "--shard-count", str(n)]}))
    say(f"generating in {n} shards (executor {shards.executor}) -> {base}")
    run = _run_local if shards.executor == "local" else _run_slurm
    states = run(todo, shards, base, say, None)
    _write_states(base, n, shards.executor, states)
    rows, seen = [], set()
    from ..io import read_jsonl

    for _k, d, _spec in todo:
        part = d / "generated.jsonl"
        for row in (read_jsonl(part) if part.is_file() else []):
            if row.ok and (key := (str(row.data.get("problem_id")), row.data.get("sample"))) not in seen:
                seen.add(key)
                rows.append(row.data)
    order = {str(pid): i for i, pid in enumerate(problem_ids)}
    rows.sort(key=lambda r: (order.get(str(r.get("problem_id")), len(order)), r.get("sample") or 0))
    write_jsonl_atomic(out, rows)
    failed = sorted(k for k, s in states.items() if not s.startswith("done"))
    if failed:
        say(f"shards {', '.join(map(str, failed))} did not finish (see {base / SHARDS_FILE}); run the same command "
            "again to resume them")
    return {"shards": n, "rows": len(rows), "failed": failed, "folder": str(base)}


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return 0


def _write_states(out: Path, n: int, executor: str, states: dict[int, str]) -> None:
    write_atomic(out / SHARDS_FILE, json.dumps({"count": n, "executor": executor, "shards": [
        {"index": k, "folder": str(shard_dir(out, k, n)), "state": states[k]} for k in range(n)]}, indent=2) + "\n")


def _shard_state(d: Path, ok: bool, why: str = "") -> str:
    if ok and (d / "shard.json").is_file() and "argv" in json.loads((d / "shard.json").read_text(encoding="utf-8")):
        return "done"  # a command's shard: its exit status says it all
    summary = read_summary(d)
    if ok and summary and summary.get("complete"):
        return "done"
    return f"failed{': ' + why if why else ''}"


def _run_local(todo: list, shards: ShardConfig, out: Path, say, tick=None) -> dict[int, str]:
    """All pending shards at once, as processes on this machine; each writes its log to its folder."""
    procs = []
    for slot, (k, d, spec) in enumerate(todo):
        d.mkdir(parents=True, exist_ok=True)
        spec_path = d / "shard.json"
        write_atomic(spec_path, json.dumps(spec, indent=2) + "\n")
        env = dict(os.environ)
        if shards.gpus_per_shard:
            g = shards.gpus_per_shard
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(slot * g + i) for i in range(g))
        log = (d / "shard.log").open("w", encoding="utf-8")
        procs.append((k, d, log, subprocess.Popen([sys.executable, "-m", "workbench.eval.shards", str(spec_path)],
                                                  stdout=log, stderr=subprocess.STDOUT, env=env)))
        gpus = f", CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}" if shards.gpus_per_shard else ""
        say(f"  shard {k}: process {procs[-1][3].pid}{gpus}, log {d / 'shard.log'}")
    states: dict[int, str] = {}
    try:
        while len(states) < len(procs):
            if tick and tick():  # stopped: the shards keep their records and resume later
                for k, _d, log, proc in procs:
                    if k not in states:
                        proc.terminate()
                        proc.wait()
                        log.close()
                        states[k] = "cancelled"
                break
            for k, d, log, proc in procs:
                if k not in states and (rc := proc.poll()) is not None:
                    log.close()
                    states[k] = _shard_state(d, rc == 0, f"exit {rc}, see {d / 'shard.log'}")
                    say(f"  shard {k}: {states[k]}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        for _, _, _, proc in procs:
            proc.terminate()
        raise
    return states


def _run_slurm(todo: list, shards: ShardConfig, out: Path, say, tick=None) -> dict[int, str]:
    """One submitit job per pending shard; waits for them (each job's logs are in OUTPUT/slurm/)."""
    try:
        import submitit
    except ImportError:
        raise WorkbenchError("--executor slurm needs submitit: pip install submitit") from None
    cfg = shards.slurm()
    executor = submitit.AutoExecutor(folder=str(out / "slurm"), cluster=cfg["cluster"])
    params = {"timeout_min": int(cfg["time"]), "cpus_per_task": int(cfg["cpus"]), "mem_gb": int(cfg["mem_gb"]),
              "gpus_per_node": int(cfg["gpus"]), "tasks_per_node": 1, "nodes": 1, "name": "workbench-eval"}
    if cfg["partition"]:
        params["slurm_partition"] = cfg["partition"]
    if cfg["account"]:
        params["slurm_account"] = cfg["account"]
    executor.update_parameters(**params)
    jobs = []
    for k, d, spec in todo:
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(d / "shard.json", json.dumps(spec, indent=2) + "\n")
        jobs.append((k, d, executor.submit(run_shard, spec)))
        say(f"  shard {k}: {cfg['cluster']} job {jobs[-1][2].job_id}")
    states: dict[int, str] = {}
    while len(states) < len(jobs):
        if tick and tick():
            for k, _d, job in jobs:
                if k not in states:
                    job.cancel(check=False)
                    states[k] = "cancelled"
            break
        for k, d, job in jobs:
            if k in states or not job.done():
                continue
            try:
                job.result()
                states[k] = _shard_state(d, True)
            except Exception as exc:  # noqa: BLE001 - a failed job is that shard's state, the others go on
                why = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ""
                states[k] = _shard_state(d, False, f"{type(exc).__name__}: {why}" if why else type(exc).__name__)
            say(f"  shard {k}: {states[k]}")
        time.sleep(1.0)
    return states


def main(argv: list[str] | None = None) -> int:
    """`python -m workbench.eval.shards SPEC.json`: run one shard (the local executor's command)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m workbench.eval.shards SHARD.json", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        run_shard(spec)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ShardConfig", "run_sharded", "generate_sharded", "run_shard", "shard_dir", "SHARDS_FILE"]
