"""The whole teaching loop in one call: warm up a teacher, train it with the RLT reward, let it write explanations,
distil a student, and show both effects in one table.

    workbench loop                         # CLI (make teaching-loop): ~17 min on a 2-core CPU
    from workbench.loop import LoopConfig, run_loop
    run_loop(LoopConfig())                 # a notebook cell

Stages (each reuses the project's recipes and functions, with the loop's sizes as overrides):

1. teacher warm-up: SFT of the embedded model in the teacher format (`recipes/cpu/teacher_sft.yaml`);
2. reference student: SFT of the embedded model on the reference traces of the distillation problems
   (`recipes/cpu/student_distill.yaml`). It plays two roles, as Bespoke-Stratos-7B does in the paper: the frozen
   reward student of RL, and the "distilled from reference traces" baseline;
3. RLT: GRPO on the warmed-up teacher with the RLT reward (`recipes/cpu/teacher_rlt.yaml`), the held-out problems
   sampled and scored before and after;
4. explanations: the RLT teacher explains the distillation problems (`workbench.generate`);
5. RLT student: SFT of the embedded model on those explanations, with the same recipe and problems as stage 2;
6. evaluation: the student before distillation, from the RLT teacher and from the reference traces, greedy, on
   generated test problems that no stage trained on (`workbench.eval`).

The table: the teacher's held-out RLT reward before and after RL (paired by problem, with its s.e.), the students'
accuracies with paired differences (s.e., z, wins/losses), and the wall time of every stage. Everything is written
under `output_dir`: one folder per stage, `loop_summary.json` and `loop_table.md`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import WorkbenchError

STAGES = ("teacher_sft", "student_traces", "rlt", "explanations", "student_rlt", "evaluation")


@dataclass
class LoopConfig:
    """Sizes of the teaching loop. The defaults took 16.6 minutes on 2 CPU cores and are too small for significant
    effects (README "The whole teaching loop in one command": what was measured, and the sizes that are)."""

    output_dir: str = field(default="outputs/cpu/teaching_loop", metadata={
        "flag": "--output", "help": "folder for every stage's output, loop_summary.json and loop_table.md"})
    model: str = field(default="smollm2-135m", metadata={
        "help": "the model every stage starts from: the teacher before warm-up and the student before distillation"})
    warmup_problems: int = field(default=64, metadata={"help": "training problems of the teacher's SFT warm-up"})
    distill_problems: int = field(default=96, metadata={
        "help": "training problems (after the warm-up's) the RLT teacher explains and the students learn from"})
    student_epochs: float = field(default=2.0, metadata={"help": "epochs of each student fine-tune"})
    sft_learning_rate: float = field(default=1.0e-4, metadata={
        "help": "learning rate of the warm-up and the student fine-tunes (their recipes' own: 5e-5 over more steps)"})
    rlt_steps: int = field(default=3, metadata={"help": "GRPO steps"})
    rlt_prompts_per_step: int = field(default=2, metadata={"help": "problems per GRPO step"})
    num_generations: int = field(default=8, metadata={"help": "completions per problem (the GRPO group)"})
    max_completion_length: int = field(default=64, metadata={
        "help": "new tokens of a teacher completion (RL, held-out and explanations)"})
    rlt_learning_rate: float = field(default=3.0e-5, metadata={"help": "the teacher's learning rate in RL"})
    heldout_problems: int = field(default=12, metadata={"help": "held-out problems scored before and after RL"})
    heldout_samples: int = field(default=2, metadata={"help": "teacher samples per held-out problem"})
    test_problems: int = field(default=64, metadata={"help": "generated test problems each student answers"})
    eval_max_new_tokens: int = field(default=96, metadata={"help": "new tokens of a student's answer"})
    batch_size: int = field(default=64, metadata={"help": "prompts per generate call (explanations, evaluation)"})
    bf16: bool = field(default=True, metadata={
        "help": "fine-tune with bf16 autocast and sample explanations and answers with bf16 weights (faster on a CPU "
                "with AMX); RL and its reward stay fp32. --no-bf16: everything in fp32"})
    seed: int = field(default=42, metadata={"help": "seed of every stage"})
    resume: bool = field(default=False, metadata={
        "help": "keep the stages a previous run of this output folder finished (default: start afresh)"})

    def __post_init__(self) -> None:
        for name in ("warmup_problems", "distill_problems", "rlt_steps", "rlt_prompts_per_step", "num_generations",
                     "max_completion_length", "heldout_problems", "heldout_samples", "test_problems",
                     "eval_max_new_tokens", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise WorkbenchError(f"{name} must be a whole number >= 1 (got {v!r})")
        if self.num_generations < 2:
            raise WorkbenchError("num_generations must be at least 2: GRPO compares completions within a group")
        if not (self.student_epochs > 0 and math.isfinite(self.student_epochs)):
            raise WorkbenchError(f"student_epochs must be a positive number (got {self.student_epochs!r})")

    @property
    def dtype(self) -> str:
        return "bfloat16" if self.bf16 else "float32"


# ------------------------------------------------------------------------------------------------- statistics


def paired(before: dict[str, float], after: dict[str, float]) -> dict:
    """Mean of after - before over the keys both have, its s.e., z, wins and losses (the eval compare's rule)."""
    from .eval.runner import mean_stderr

    ids = [k for k in before if k in after]
    diffs = [after[k] - before[k] for k in ids]
    d, se = mean_stderr(diffs)
    return {"n": len(ids), "before": _mean([before[k] for k in ids]), "after": _mean([after[k] for k in ids]),
            "difference": d, "stderr": se, "z": (d / se) if se else None,
            "wins": sum(x > 0 for x in diffs), "losses": sum(x < 0 for x in diffs)}


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def heldout_by_problem(path: str | Path) -> dict[str, float]:
    """Mean RLT reward per held-out problem of a `heldout_{before,after}.jsonl` file (rows that failed left out)."""
    from .io import finite_number, read_jsonl

    sums: dict[str, list[float]] = {}
    for row in read_jsonl(path):
        if not row.ok:
            continue
        r = finite_number(row.data.get("reward"))
        if r is not None and not row.data.get("error"):
            sums.setdefault(str(row.data.get("problem")), []).append(r)
    return {k: sum(v) / len(v) for k, v in sums.items()}


# ------------------------------------------------------------------------------------------------- the loop


class _Clock:
    """Stage progress lines and wall times."""

    def __init__(self, out: Path, resume: bool):
        self.out, self.times, self.t0 = out, {}, time.time()
        self.done_file = out / "stages_done.json"
        self.done = json.loads(self.done_file.read_text()) if resume and self.done_file.is_file() else {}

    def run(self, k: int, name: str, what: str, fn):
        if name in self.done:
            self.times[name] = self.done[name]
            print(f"[loop {k}/{len(STAGES)}] {what}: done in an earlier run ({self.done[name]:.0f}s), kept", flush=True)
            return None
        print(f"[loop {k}/{len(STAGES)}] {what} ...", flush=True)
        t = time.time()
        result = fn()
        self.times[name] = round(time.time() - t, 1)
        self.done[name] = self.times[name]
        from .io import write_atomic

        write_atomic(self.done_file, json.dumps(self.done, indent=2) + "\n")
        print(f"[loop {k}/{len(STAGES)}] {what}: {self.times[name]:.0f}s (total {time.time() - self.t0:.0f}s)",
              flush=True)
        return result


def run_loop(config: LoopConfig | None = None) -> dict:
    """Run the teaching loop; returns the summary (also in output_dir/loop_summary.json, the table in loop_table.md)."""
    from . import formats
    from .eval.runner import EvalConfig, paired_comparison, run_eval
    from .generate import generate_explanations
    from .io import repo_path, write_atomic, write_jsonl_atomic
    from .training import run_rlt, run_sft
    from .training.datasets import load_problems

    c = config or LoopConfig()
    out = Path(c.output_dir)
    if not c.resume and out.exists():
        for name in (*STAGES, "stages_done.json", "loop_summary.json", "loop_table.md", "data"):
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    clock = _Clock(out, c.resume)
    recipes = repo_path("recipes/cpu")
    sub = {s: str(out / s) for s in STAGES}
    bf16 = {"bf16": c.bf16}

    # the problems: warm-up, distillation and GRPO from the training split, held-out and test problems apart
    train = load_problems("builtin:arith", "train", need_trace=True)
    if c.warmup_problems + c.distill_problems > len(train):
        raise WorkbenchError(f"warmup_problems + distill_problems must be at most {len(train)} (the built-in training "
                             f"problems); got {c.warmup_problems} + {c.distill_problems}")
    data = out / "data"
    distill = [{"id": str(r["id"]), "question": r["question"], "solution": r["solution"],
                "reasoning_trace": r["reasoning_trace"]}
               for r in train[c.warmup_problems:c.warmup_problems + c.distill_problems]]
    write_jsonl_atomic(_mk(data / "distill_problems.jsonl"), distill)
    test = [{k: r[k] for k in ("id", "question", "solution")}
            for r in load_problems("builtin:arith", "test")[:c.test_problems]]
    write_jsonl_atomic(data / "test.jsonl", test)
    student_prompt = formats.default_student_system_prompt(formats.STRATOS)
    print(f"[loop] {c.warmup_problems} warm-up, {len(distill)} distillation, {c.heldout_problems} held-out and "
          f"{len(test)} test problems; {'bf16' if c.bf16 else 'fp32'}; output {out}", flush=True)

    def teacher_sft():
        return run_sft(recipes / "teacher_sft.yaml", {"model": c.model, "max_samples": c.warmup_problems,
                                                      "output_dir": sub["teacher_sft"], "save_strategy": "no",
                                                      "learning_rate": c.sft_learning_rate,
                                                      "seed": c.seed, **bf16})

    def student(name: str, dataset: str):
        return run_sft(recipes / "student_distill.yaml", {"model": c.model, "dataset": dataset,
                                                          "num_train_epochs": c.student_epochs,
                                                          "learning_rate": c.sft_learning_rate,
                                                          "output_dir": sub[name], "seed": c.seed, **bf16})

    def rlt():
        batch = c.rlt_prompts_per_step * c.num_generations
        micro = max(d for d in range(1, min(batch, 16) + 1) if batch % d == 0)  # micro-batch: memory, not math
        return run_rlt(recipes / "teacher_rlt.yaml", {
            "model": sub["teacher_sft"], "student": sub["student_traces"], "output_dir": sub["rlt"],
            "max_steps": c.rlt_steps, "num_generations": c.num_generations, "per_device_train_batch_size": micro,
            "gradient_accumulation_steps": batch // micro, "max_completion_length": c.max_completion_length,
            "learning_rate": c.rlt_learning_rate, "eval_max_problems": c.heldout_problems,
            "eval_samples_per_problem": c.heldout_samples, "eval_batch_size": c.batch_size,
            "save_strategy": "no", "ref_model_sync_steps": max(1, c.rlt_steps // 2), "seed": c.seed,
            # fp32, as in the recorded run (README); benchmarks/cpu_levers.py has since measured bf16 autocast GRPO
            # steps 1.6x faster on a CPU with the LM-head lever, not yet verified over a whole loop
            "bf16": False})

    def explanations():
        gen = out / "explanations" / "generated.jsonl"
        _mk(gen)
        stats = generate_explanations(sub["rlt"], distill, gen, n=1, max_new_tokens=c.max_completion_length,
                                      batch_size=c.batch_size, engine="transformers", dtype=c.dtype, seed=c.seed)
        from .distill import build_student_set
        from .models import load_tokenizer
        from .tutorial import read_jsonl

        examples, built = build_student_set(read_jsonl(gen), load_tokenizer(sub["rlt"]), max_tokens=512)
        write_jsonl_atomic(out / "explanations" / "student_set.jsonl", examples)
        print(f"[loop] {stats['written']} explanations ({stats['with_end_tag']} closed with the end tag); "
              f"{built['examples']} student examples", flush=True)
        return {**stats, "examples": built["examples"]}

    def evaluation():
        runs = {"before": c.model, "rlt": sub["student_rlt"], "traces": sub["student_traces"]}
        res = {}
        for tag, model in runs.items():
            cfg = EvalConfig(benchmark="math500", model=model, preset="quick", data=str(data / "test.jsonl"),
                             output_dir=str(out / "evaluation" / tag), max_new_tokens=c.eval_max_new_tokens,
                             temperature=0.0, seed=c.seed, system_prompt=student_prompt, batch_size=c.batch_size,
                             engine="transformers", dtype=c.dtype, skythought="off")
            res[tag] = run_eval(cfg, overwrite=True, log=lambda m: print(m, flush=True))
            print(f"[loop] student {tag}: accuracy {res[tag]['accuracy']:.3f} on {res[tag]['problems']} problems",
                  flush=True)
        return res

    clock.run(1, "teacher_sft", "teacher warm-up (SFT, teacher format)", teacher_sft)
    clock.run(2, "student_traces", "reference student (SFT on the reference traces; the reward student)",
              lambda: student("student_traces", str(data / "distill_problems.jsonl")))
    clock.run(3, "rlt", "RLT training (GRPO, held-out reward before and after)", rlt)
    clock.run(4, "explanations", "the RLT teacher explains the distillation problems", explanations)
    clock.run(5, "student_rlt", "RLT student (SFT on the teacher's explanations)",
              lambda: student("student_rlt", str(out / "explanations" / "student_set.jsonl")))
    clock.run(6, "evaluation", "students evaluated on the test problems", evaluation)

    teacher = paired(heldout_by_problem(Path(sub["rlt"]) / "heldout_before.jsonl"),
                     heldout_by_problem(Path(sub["rlt"]) / "heldout_after.jsonl"))
    ev = out / "evaluation"
    students = {"rlt": paired_comparison(ev / "before", ev / "rlt"),
                "traces": paired_comparison(ev / "before", ev / "traces"),
                "rlt_vs_traces": paired_comparison(ev / "traces", ev / "rlt")}
    summary = {"config": asdict(c), "teacher_heldout_reward": teacher, "students": students,
               "stage_seconds": clock.times, "total_seconds": round(sum(clock.times.values()), 1),
               "machine": machine()}
    table = format_table(summary)
    write_atomic(out / "loop_summary.json", json.dumps(summary, indent=2) + "\n")
    write_atomic(out / "loop_table.md", table + "\n")
    print("\n" + table, flush=True)
    return summary


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def machine() -> str:
    """CPU model, cores and GPU, for the table."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def _f(x, fmt: str = "+.3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def format_table(summary: dict) -> str:
    """The loop's results as a Markdown table (the effects, then the stage times)."""
    t, s = summary["teacher_heldout_reward"], summary["students"]
    lines = ["| effect | n | before | after | difference ± s.e. | z | wins / losses |",
             "|---|---|---|---|---|---|---|",
             f"| teacher: held-out RLT reward, before → after RL | {t['n']} problems | {_f(t['before'])} | "
             f"{_f(t['after'])} | {_f(t['difference'])} ± {_f(t['stderr'], '.3f')} | {_f(t['z'], '.1f')} | "
             f"{t['wins']} / {t['losses']} |"]
    for key, label in (("rlt", "student accuracy: before → distilled from the RLT teacher"),
                       ("traces", "student accuracy: before → distilled from the reference traces"),
                       ("rlt_vs_traces", "student accuracy: reference traces → RLT teacher")):
        p = s[key]
        lines.append(f"| {label} | {p['problems']} problems | {_f(p['base_accuracy'], '.3f')} | "
                     f"{_f(p['other_accuracy'], '.3f')} | {_f(p['difference'])} ± {_f(p['stderr'], '.3f')} | "
                     f"{_f(p['z'], '.1f')} | {p['wins']} / {p['losses']} |")
    lines += ["", "| stage | wall time |", "|---|---|"]
    lines += [f"| {name} | {sec:.0f} s |" for name, sec in summary["stage_seconds"].items()]
    lines.append(f"| **total** | **{summary['total_seconds']:.0f} s ({summary['total_seconds'] / 60:.1f} min)** |")
    lines.append(f"\nmachine: {summary['machine']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - `workbench loop` is the entry point
    from .cli import main as cli_main

    return cli_main(["loop", *(argv if argv is not None else sys.argv[1:])])


__all__ = ["LoopConfig", "run_loop", "paired", "heldout_by_problem", "format_table", "STAGES"]
