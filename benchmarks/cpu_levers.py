"""What each CPU lever of the teaching loop buys (`workbench loop`, README "The whole teaching loop in one command").

Each row runs in its own process on the embedded model, on the loop's own shapes:

- SFT step: the teacher warm-up (recipes/cpu/teacher_sft.yaml, 8 examples per step, ~250 tokens each, 80% of them
  prompt), fp32 or bf16 autocast, with TRL's fused LM head scoring every position (TRL's CPU default) or only the
  labelled ones (`workbench.training.common.score_only_labelled_positions_on_cpu`, on by default in the workbench);
  the seconds per step after the first, and the training loss (identical when the lever changes nothing else);
- GRPO step: recipes/cpu/teacher_rlt.yaml on the embedded model as teacher and student, 16 completions (2 prompts x 8)
  of at most 64 tokens, fp32 or bf16 autocast;
- generation: the sampling engine on 64 teacher prompts x 64 new tokens, fp32 or bf16 weights, batch 16 / 64
  (`benchmarks/generation_throughput.py` compares the engines, vLLM included);
- the RLT reward in bf16 autocast against fp32 on the demo set (6 texts): the largest difference of each component.

    python benchmarks/cpu_levers.py [--only sft grpo generate reward]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _train_metrics(folder: str) -> list[dict]:
    with open(os.path.join(folder, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sft_worker(bf16: bool, compact: bool) -> dict:
    from workbench.training import common, run_sft

    if not compact:  # TRL's own CPU behaviour: the lever is applied by build_trainer, so make it a no-op here
        common.score_only_labelled_positions_on_cpu = lambda: False
        from workbench.training import sft

        sft.score_only_labelled_positions_on_cpu = lambda: False
    out = tempfile.mkdtemp(prefix="lever-sft-")
    run_sft("recipes/cpu/teacher_sft.yaml", {"max_samples": 32, "output_dir": out, "save_strategy": "no",
                                             "bf16": bf16, "learning_rate": 1.0e-4, "warmup_steps": 0})
    rows = [r for r in _train_metrics(out) if "loss" in r and "wall_time" in r]
    walls = [r["wall_time"] for r in rows]
    per_step = (walls[-1] - walls[0]) / (len(walls) - 1)
    return {"seconds_per_step": per_step, "loss": [round(r["loss"], 4) for r in rows]}


def grpo_worker(bf16: bool) -> dict:
    from workbench.training import run_rlt

    out = tempfile.mkdtemp(prefix="lever-grpo-")
    run_rlt("recipes/cpu/teacher_rlt.yaml", {
        "model": "smollm2-135m", "student": "smollm2-135m", "output_dir": out, "max_steps": 2,
        "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1, "max_completion_length": 64,
        "eval_split": None, "save_strategy": "no", "bf16": bf16})
    rows = [r for r in _train_metrics(out) if "step_time" in r]
    return {"seconds_per_step": rows[-1]["step_time"], "reward_seconds": rows[-1].get("reward_time")}


def generate_worker(dtype: str, batch: int) -> dict:
    from workbench import formats
    from workbench.sampling import SamplingParams, make_engine
    from workbench.training.datasets import load_problems

    eng = make_engine("smollm2-135m", "transformers", device="cpu", dtype=dtype, batch_size=batch)
    probs = load_problems("builtin:arith", "train")[:64]
    prompts = [formats.teacher_prompt(eng.tokenizer, p["question"], p["solution"], None, formats.STRATOS) for p in probs]
    params = SamplingParams(max_new_tokens=64, temperature=0.7, seed=0)
    eng.generate(prompts[:2], params)  # warm-up
    t = time.perf_counter()
    outs = eng.generate(prompts, params)
    sec = time.perf_counter() - t
    toks = sum(s.tokens for o in outs for s in o)
    return {"seconds": sec, "tokens": toks, "tokens_per_s": toks / sec}


def reward_worker() -> dict:
    import torch

    from workbench.data import demo_score_items
    from workbench.models import load_model, load_tokenizer
    from workbench.rewards import RewardConfig, RLTScorer

    model, tok = load_model("smollm2-135m", "cpu"), load_tokenizer("smollm2-135m")
    items = demo_score_items()
    scorer = RLTScorer(model, model, tok, RewardConfig())
    fp32 = scorer.score(items)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = scorer.score(items)
    keys = ("reward", "r_ss", "r_kl", "solution_logprob_mean", "kl_mean", "kl_max")
    diff = {k: max(abs(getattr(a, k) - getattr(b, k)) for a, b in zip(fp32, bf16)) for k in keys}
    return {"texts": len(items), "max_abs_diff": diff, "largest_abs_reward": max(abs(r.reward) for r in fp32)}


WORKERS = {"sft": sft_worker, "grpo": grpo_worker, "generate": generate_worker, "reward": reward_worker}


def run(kind: str, *args) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, json.dumps(args)], capture_output=True,
                          text=True)
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(WORKERS), default=list(WORKERS))
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker[0]](*json.loads(args.worker[1]))))
        return
    sys.path.insert(0, os.path.dirname(__file__))
    from reward_throughput import machine

    print(f"machine: {machine()}\n")
    print("| lever | setting | result |\n|---|---|---|")
    if "sft" in args.only:
        base = None
        for bf16, compact in ((False, False), (True, False), (False, True), (True, True)):
            r = run("sft", bf16, compact)
            if "error" in r:
                print(f"| SFT step | {'bf16' if bf16 else 'fp32'}, compact {compact} | failed: {r['error']} |")
                continue
            base = base or r["seconds_per_step"]
            print(f"| SFT step (teacher warm-up, 8 x ~250 tokens) | {'bf16 autocast' if bf16 else 'fp32'}, LM head on "
                  f"{'labelled positions' if compact else 'every position (TRL on a CPU)'} | "
                  f"{r['seconds_per_step']:.1f} s/step ({base / r['seconds_per_step']:.2f}x); losses {r['loss']} |",
                  flush=True)
    if "grpo" in args.only:
        for bf16 in (False, True):
            r = run("grpo", bf16)
            res = r.get("error") or f"{r['seconds_per_step']:.1f} s/step, reward {r['reward_seconds']:.1f} s of it"
            print(f"| GRPO step (16 completions <= 64 tokens) | {'bf16 autocast' if bf16 else 'fp32'} | {res} |",
                  flush=True)
    if "generate" in args.only:
        for dtype in ("float32", "bfloat16"):
            for batch in (16, 64):
                r = run("generate", dtype, batch)
                res = r.get("error") or f"{r['tokens_per_s']:.0f} new tokens/s ({r['tokens']} in {r['seconds']:.1f} s)"
                print(f"| generation (64 teacher prompts x 64 tokens) | transformers {dtype}, batch {batch} | {res} |",
                      flush=True)
    if "reward" in args.only:
        r = run("reward")
        res = r.get("error") or ("max |Δ| " + ", ".join(f"{k} {v:.2e}" for k, v in r["max_abs_diff"].items())
                                 + f" (largest |reward| {r['largest_abs_reward']:.2f})")
        print(f"| RLT reward, bf16 autocast vs fp32 | demo set, {r.get('texts')} texts, embedded model | {res} |")


if __name__ == "__main__":
    main()
