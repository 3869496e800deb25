"""Throughput and peak memory of the RLT reward: the workbench's scorer against a naive implementation.

Setting, as in GRPO: groups of 8 completions that share a question and a solution, explanation lengths from 64
to 4096 tokens, the embedded model as teacher and student, a ~270-token system prompt for the teacher (the
official prompts are that long). The naive implementation is written here and does what the official code does:
one completion at a time, a full forward of the whole text, and a full-vocabulary log-softmax at every position.
Both use the same token spans, so their numbers must agree; the table prints the largest difference.

Each (implementation, length) runs in its own process; peak memory is the largest resident set size sampled
during the scoring call, minus the resident size just before it (the models themselves are not counted).

    python benchmarks/reward_throughput.py [--lengths 64 256 1024 4096] [--group 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def work_macs(model, seqs: list[tuple[list[int], list[int]]], shared_prefix: bool, reward_config=None) -> float:
    """Multiply-accumulates to score `seqs` [(ids, scored positions)] of one group: the linear layers per token,
    attention over each token's context, the LM head at every position (naive) or at the scored ones (workbench,
    which also runs the group's common prefix once when that pays). The ratio of the two is the speed-up both would
    show at the same FLOP rate: the most that skipping work can buy."""
    from workbench.rewards import RewardConfig, _common_prefix_len, _prefix_pays

    config = model.config
    h, layers = config.hidden_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (getattr(config, "head_dim", None) or h // config.num_attention_heads)
    per_token = layers * (h * (2 * h + 2 * kv) + 3 * h * config.intermediate_size)
    attn_dim, head = layers * h, config.vocab_size * h  # QK^T and AV: 2 x h per layer per context token

    def run(n: int, context: int) -> float:  # n tokens after `context` cached ones
        return n * per_token + 2 * attn_dim * (n * context + n * (n + 1) / 2)

    if not shared_prefix:
        return sum(run(len(ids), 0) + (len(ids) - 1) * head for ids, _ in seqs)
    p = min(_common_prefix_len([ids for ids, _ in seqs]), min(min(t) for _, t in seqs) - 1)
    if not _prefix_pays(model, p, [len(ids) for ids, _ in seqs], reward_config or RewardConfig()):
        p = 0
    return run(p, 0) + sum(run(len(ids) - p, p) + len(t) * head for ids, t in seqs)


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
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024, 4096])
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))))
        return
    print(f"machine: {machine()}")
    print(f"model: smollm2-135m (teacher = student), fp32, group of {args.group} completions sharing question and solution\n")
    head = (f"{'expl. tokens':>12} {'impl':>10} {'compl/s':>8} {'tokens/s':>9} {'peak MB':>8} "
            f"{'speed-up':>8} {'work ratio':>10} {'mem ratio':>9} {'max |Δr|':>9}")
    print(head)
    print("-" * len(head))
    for length in args.lengths:
        res = {}
        for impl in ("naive", "workbench"):
            proc = subprocess.run([sys.executable, __file__, "--worker", impl, str(length), str(args.group)],
                                  capture_output=True, text=True, check=True)
            res[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
        n, w = res["naive"], res["workbench"]
        diff = max(abs(a - b) for a, b in zip(n["rewards"], w["rewards"]))
        for r in (n, w):
            speed = n["seconds"] / r["seconds"]
            mem = r["peak_mb"] / max(n["peak_mb"], 1e-9)
            work = n["macs"] / r["macs"]
            print(f"{length:>12} {r['impl']:>10} {args.group / r['seconds']:>8.2f} {r['tokens'] / r['seconds']:>9.0f} "
                  f"{r['peak_mb']:>8.0f} {speed:>7.2f}x {work:>9.2f}x {mem:>9.2f} {diff if r is w else 0:>9.1e}")
        sys.stdout.flush()
    print(f"\nprompt tokens per teacher sequence: {w['prompt_tokens']}; speed-up = naive time / time; "
          "work ratio = naive multiply-accumulates / these (the speed-up at equal FLOP rates: the most that skipping "
          "work can buy); mem ratio = peak / naive peak; max |Δr| = largest reward difference between the two")


if __name__ == "__main__":
    main()
