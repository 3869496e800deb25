"""Throughput and peak memory of the RLT reward: the workbench's scorer against a naive implementation.

Setting, as in GRPO: groups of 8 completions that share a question and a solution, explanation lengths from 64
to 4096 tokens, the embedded model as teacher and student, a ~270-token system prompt for the teacher (the
official prompts are that long). The naive implementation is written here and does what the official code does:
one completion at a time, a full forward of the whole text, and a full-vocabulary log-softmax at every position.
Both use the same token spans, so their numbers must agree; the table prints the largest difference.

Each (implementation, length) runs in its own process; peak memory is the largest resident set size sampled
during the scoring call, minus the resident size just before it (the models themselves are not counted).

Second shape, unrelated problems (a dataset scan or a ranking run, not a GRPO group): a small JSONL file of N
well-formed problems that share nothing but the system prompts (different questions and solutions, one completion
each, closed by the end tag), the same ~270-token teacher system prompt. Whole processes are compared, start to
exit: (a) a Python process that imports torch and transformers, loads the model and scores the file the naive way,
against (b) the `workbench score` command line on the same file, with the same prompt (--teacher-system-prompt-file).
Each runs --repeats times, alternating; the table shows the median wall time of each.

    python benchmarks/reward_throughput.py [--shape grpo unrelated] [--lengths 64 256 1024 4096] [--group 8]
                                           [--problems 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LONG_TEACHER_PROMPT = " ".join([
    "You are a teacher who explains solutions to students. Your role is to take a question and its correct",
    "solution and to write an explanation that a student can follow from the question to the solution.",
    "Begin by restating the solution between the solution tags. Then write the explanation between the",
    "explanation tags. The explanation must go step by step. At each step, say what is done and why it is",
    "the natural next step, so that a student who has not seen the solution would think of it. Check each",
    "intermediate result as you go: recompute sums and products, verify that units agree, and confirm that",
    "every case has been considered. When a step relies on a definition or a theorem, state it briefly in",
    "plain words before using it. Prefer short sentences and concrete numbers to abstract statements. If a",
    "common mistake is likely at some step, point it out and show how to avoid it. Do not skip steps that",
    "seem obvious to you: the student is learning. Do not introduce methods that the solution does not use,",
    "and do not change the final answer. Use LaTeX for formulas where it helps readability, and keep the",
    "notation consistent with the question. End the explanation when the student has everything needed to",
    "write the final answer, and close it with the end tag. Keep a calm, encouraging and precise tone, as a",
    "good teacher would in a one-to-one lesson with a motivated student preparing for a competition.",
])
QUESTION = "A bag holds 5 red and 3 blue marbles. Two are drawn without replacement. What is the probability that both are red?"
SOLUTION = "P = (5/8)·(4/7) = 20/56 = 5/14. \\boxed{\\frac{5}{14}}"


def make_group(tokenizer, length: int, group: int) -> list[dict]:
    """`group` different explanations of exactly `length` tokens, cut from the demo set's texts."""
    from workbench.data import load_demo_set

    text = "\n\n".join(p["r1_trace"] + "\n\n" + p["rlt_explanation"] for p in load_demo_set())
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    while len(ids) < length + 50 * group:
        ids = ids + ids
    items = []
    for g in range(group):
        body = tokenizer.decode(ids[50 * g: 50 * g + length])
        items.append({"id": g, "question": QUESTION, "solution": SOLUTION, "completion": body + "<|end_of_explanation|>"})
    return items


def naive_rewards(model, tokenizer, items, cfg):
    """The official code's way: per completion, whole-text forwards, full-vocabulary log-softmax everywhere."""
    import torch

    from workbench.rewards import RLTScorer

    spans = RLTScorer(model, model, tokenizer, cfg)  # only for the token positions, so both score the same tokens
    out = []
    for item in items:
        p = spans.prepare(item)
        with torch.no_grad():
            s_lp = torch.log_softmax(model(torch.tensor([p.student.ids])).logits[0, :-1].float() / cfg.student_temperature, -1)
            t_lp = torch.log_softmax(model(torch.tensor([p.teacher.ids])).logits[0, :-1].float() / cfg.teacher_temperature, -1)
        sol = torch.stack([s_lp[i - 1, p.student.ids[i]] for i in p.s_sol])
        kl = torch.stack([t_lp[i - 1, p.teacher.ids[i]] for i in p.t_expl]) - torch.stack(
            [s_lp[i - 1, p.student.ids[i]] for i in p.s_expl])
        r_ss = sol.mean() + 0.01 * sol.min()
        r_kl = 3 * kl.mean() + 0.03 * kl.max()
        out.append((r_ss - r_kl).item())
        del s_lp, t_lp
    return out


def work_macs(model, seqs: list[tuple[list[int], list[int]]], shared_prefix: bool, reward_config=None,
              groups: list | None = None) -> float:
    """Multiply-accumulates to score `seqs` [(ids, scored positions)]: the linear layers per token, attention over
    each token's context, the LM head at every position (naive) or at the scored ones (workbench, which runs the
    prefixes it shares once, as `_prefix_plan` decides: the call's common prefix, then each group's). `groups`: each
    sequence's prefix group (default: all one group, a GRPO group). The ratio of the two is the speed-up both would
    show at the same FLOP rate: the most that skipping work can buy. The workbench runs each sequence only up to its
    last scored position."""
    from workbench.rewards import RewardConfig, _prefix_plan, _Seq

    config = model.config
    h, layers = config.hidden_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (getattr(config, "head_dim", None) or h // config.num_attention_heads)
    per_token = layers * (h * (2 * h + 2 * kv) + 3 * h * config.intermediate_size)
    attn_dim, head = layers * h, config.vocab_size * h  # QK^T and AV: 2 x h per layer per context token

    def run(n: int, context: int) -> float:  # n tokens after `context` cached ones
        return n * per_token + 2 * attn_dim * (n * context + n * (n + 1) / 2)

    if not shared_prefix:
        return sum(run(len(ids), 0) + (len(ids) - 1) * head for ids, _ in seqs)
    objs = [_Seq(ids, t, 0 if groups is None else g) for (ids, t), g in zip(seqs, groups or [None] * len(seqs))]
    live = [i for i, s in enumerate(objs) if s.targets]
    base, units = _prefix_plan(model, objs, live, reward_config or RewardConfig())
    total = run(base, 0)
    for p, members in units:
        total += run(p - base, base) if p > base else 0
        total += sum(run(max(objs[i].targets) - p, p) + len(objs[i].targets) * head for i in members)
    return total


class PeakRSS:
    """Samples the resident set size of this process every millisecond."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())


def worker(impl: str, length: int, group: int) -> dict:
    import torch

    from workbench.models import load_model, load_tokenizer
    from workbench.rewards import RewardConfig, RLTScorer

    torch.manual_seed(0)
    model, tok = load_model("smollm2-135m", "cpu"), load_tokenizer("smollm2-135m")
    cfg = RewardConfig(teacher_system_prompt=LONG_TEACHER_PROMPT)
    items = make_group(tok, length, group)
    scorer = RLTScorer(model, model, tok, cfg)
    scorer.score(items[:1])  # warm-up (first-call allocations, kernels)
    naive_rewards(model, tok, items[:1], cfg)
    import gc

    gc.collect()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        rewards = [r.reward for r in scorer.score(items)] if impl == "workbench" else naive_rewards(model, tok, items, cfg)
        seconds = time.perf_counter() - t0
    prepared = [scorer.prepare(it) for it in items]
    n_tokens = sum(len(p.t_expl) for p in prepared)
    prompt_tokens = len(prepared[0].teacher.ids) - len(prepared[0].t_expl)
    macs = sum(work_macs(model, [(getattr(p, who).ids, getattr(p, who).targets) for p in prepared],
                         impl == "workbench", cfg) for who in ("teacher", "student"))
    return {"impl": impl, "length": length, "seconds": seconds, "rewards": rewards, "tokens": n_tokens,
            "prompt_tokens": prompt_tokens, "peak_mb": (mem.peak - mem.base) / 2**20, "macs": macs}


def unrelated_problems(n: int) -> list[dict]:
    """`n` well-formed, unrelated problems: spread over the packaged training problems (different topics, questions
    and solutions), each with its worked reasoning as the completion, closed by the end tag."""
    import workbench

    path = os.path.join(os.path.dirname(workbench.__file__), "data", "train_problems.jsonl")
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    picked, seen = [], set()
    for r in rows[:: max(1, len(rows) // n)] + rows:
        if r["question"] not in seen and len(picked) < n:
            seen.add(r["question"])
            picked.append({"id": r["id"], "question": r["question"], "solution": r["solution"],
                           "completion": r["reasoning_trace"] + "<|end_of_explanation|>"})
    return picked


def naive_file_worker(path: str, prompt_path: str, out_path: str) -> None:
    """Process (a) of the unrelated shape: what a script around the official reward code does with a file: import
    torch and transformers, load the model, score every line the naive way, write the rewards."""
    import torch  # noqa: F401 - as the official code, whatever the workbench imports

    from workbench.formats import load_prompt
    from workbench.models import load_model, load_tokenizer
    from workbench.rewards import RewardConfig

    model, tok = load_model("smollm2-135m", "cpu"), load_tokenizer("smollm2-135m")
    cfg = RewardConfig(teacher_system_prompt=load_prompt(prompt_path))
    with open(path, encoding="utf-8") as fh:
        items = [json.loads(line) for line in fh if line.strip()]
    rewards = naive_rewards(model, tok, items, cfg)
    with open(out_path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"id": it["id"], "reward": r}) + "\n" for it, r in zip(items, rewards))


def unrelated_shape(n: int, repeats: int) -> None:
    """Whole process against whole process on a file of `n` unrelated problems (see the module's docstring)."""
    import statistics
    import tempfile
    import types

    from transformers import AutoConfig

    from workbench.models import load_tokenizer, resolve_model_path
    from workbench.rewards import RewardConfig, RLTScorer

    items = unrelated_problems(n)
    tmp = tempfile.mkdtemp(prefix="reward-bench-")
    src, prompt = os.path.join(tmp, "problems.jsonl"), os.path.join(tmp, "teacher_prompt.txt")
    with open(src, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(it) + "\n" for it in items)
    with open(prompt, "w", encoding="utf-8") as fh:
        fh.write(LONG_TEACHER_PROMPT)
    commands = {
        "naive": [sys.executable, __file__, "--naive-file", src, prompt, os.path.join(tmp, "naive.jsonl")],
        "workbench": [sys.executable, "-m", "workbench", "score", "--input", src, "--output",
                      os.path.join(tmp, "workbench.jsonl"), "--teacher-system-prompt-file", prompt, "--device", "cpu"],
    }
    walls: dict[str, list[float]] = {"naive": [], "workbench": []}
    cpus: dict[str, list[float]] = {"naive": [], "workbench": []}
    load = os.getloadavg()[0]
    for _ in range(repeats):
        for impl, cmd in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            walls[impl].append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[impl].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if proc.returncode:
                raise SystemExit(f"{impl} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rewards = {}
    for impl in commands:
        with open(os.path.join(tmp, f"{impl}.jsonl"), encoding="utf-8") as fh:
            rewards[impl] = [json.loads(line)["reward"] for line in fh]
    diff = max(abs(a - b) for a, b in zip(rewards["naive"], rewards["workbench"]))

    # the work each does, from the token ids alone (no weights: the tokenizer and the model's config)
    stub = types.SimpleNamespace(config=AutoConfig.from_pretrained(resolve_model_path("smollm2-135m")))
    scorer = RLTScorer(stub, stub, load_tokenizer("smollm2-135m"), RewardConfig(teacher_system_prompt=LONG_TEACHER_PROMPT))
    prepared = [scorer.prepare(it) for it in items]
    macs = {impl: sum(work_macs(stub, [(getattr(p, who).ids, getattr(p, who).targets) for p in prepared],
                                impl == "workbench", scorer.config, [getattr(p, who).group for p in prepared])
                      for who in ("teacher", "student")) for impl in commands}
    t_len = statistics.mean(len(p.teacher.ids) for p in prepared)
    s_len = statistics.mean(len(p.student.ids) for p in prepared)
    expl = statistics.mean(len(p.t_expl) for p in prepared)

    print(f"unrelated problems: {len(items)} problems (different questions and solutions), one completion each, "
          f"~{expl:.0f} explanation tokens; teacher sequences ~{t_len:.0f} tokens, student ~{s_len:.0f}")
    print(f"whole processes, start to exit (imports, model load, scoring, writing); median of {repeats} runs, "
          "alternating\n")
    head = (f"{'impl':>16} {'wall s':>7} {'runs s':>20} {'lines/s':>8} {'speed-up':>8} {'CPU s':>7} {'CPU ratio':>9} "
            f"{'work ratio':>10} {'max |Δr|':>9}")
    print(head)
    print("-" * len(head))
    med = {impl: statistics.median(w) for impl, w in walls.items()}
    cpu = {impl: statistics.median(c) for impl, c in cpus.items()}
    names = {"naive": "naive (python)", "workbench": "workbench score"}
    for impl in commands:
        runs = " ".join(f"{w:.1f}" for w in walls[impl])
        print(f"{names[impl]:>16} {med[impl]:>7.1f} {runs:>20} {len(items) / med[impl]:>8.2f} "
              f"{med['naive'] / med[impl]:>7.2f}x {cpu[impl]:>7.1f} {cpu['naive'] / cpu[impl]:>8.2f}x "
              f"{macs['naive'] / macs[impl]:>9.2f}x {diff if impl == 'workbench' else 0:>9.1e}")
    print(f"\nload average (1 min) before: {load:.2f}, after: {os.getloadavg()[0]:.2f}; speed-up = naive wall time / "
          "wall time; CPU s = user + system time of the process (all threads), less sensitive to other load than wall "
          "time; work ratio = multiply-accumulates of scoring only (no imports or loading); max |Δr| = largest reward "
          "difference between the two\n")
    sys.stdout.flush()


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {cuda}, torch {torch.__version__}, {platform.system()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", nargs="+", choices=("grpo", "unrelated"), default=["grpo", "unrelated"],
                    help="grpo: groups of completions of one problem, per length; unrelated: a file of unrelated "
                         "problems, whole processes (default: both)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024, 4096])
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--problems", type=int, default=16, help="unrelated shape: lines in the file")
    ap.add_argument("--repeats", type=int, default=3, help="unrelated shape: runs of each process")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--naive-file", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))))
        return
    if args.naive_file:
        naive_file_worker(*args.naive_file)
        return
    print(f"machine: {machine()}")
    print("model: smollm2-135m (teacher = student), fp32, teacher system prompt of ~270 tokens\n")
    if "unrelated" in args.shape:
        unrelated_shape(args.problems, args.repeats)
    if "grpo" in args.shape:
        grpo_shape(args.lengths, args.group)


def grpo_shape(lengths: list[int], group: int) -> None:
    print(f"GRPO groups: {group} completions sharing question and solution; scoring call only, each row in its own "
          "process\n")
    head = (f"{'expl. tokens':>12} {'impl':>10} {'compl/s':>8} {'tokens/s':>9} {'peak MB':>8} "
            f"{'speed-up':>8} {'work ratio':>10} {'mem ratio':>9} {'max |Δr|':>9}")
    print(head)
    print("-" * len(head))
    for length in lengths:
        res = {}
        for impl in ("naive", "workbench"):
            proc = subprocess.run([sys.executable, __file__, "--worker", impl, str(length), str(group)],
                                  capture_output=True, text=True, check=True)
            res[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
        n, w = res["naive"], res["workbench"]
        diff = max(abs(a - b) for a, b in zip(n["rewards"], w["rewards"]))
        for r in (n, w):
            speed = n["seconds"] / r["seconds"]
            mem = r["peak_mb"] / max(n["peak_mb"], 1e-9)
            work = n["macs"] / r["macs"]
            print(f"{length:>12} {r['impl']:>10} {group / r['seconds']:>8.2f} {r['tokens'] / r['seconds']:>9.0f} "
                  f"{r['peak_mb']:>8.0f} {speed:>7.2f}x {work:>9.2f}x {mem:>9.2f} {diff if r is w else 0:>9.1e}")
        sys.stdout.flush()
    print(f"\nprompt tokens per teacher sequence: {w['prompt_tokens']}; speed-up = naive time / time; "
          "work ratio = naive multiply-accumulates / these (the speed-up at equal FLOP rates: the most that skipping "
          "work can buy); mem ratio = peak / naive peak; max |Δr| = largest reward difference between the two")


if __name__ == "__main__":
    main()
