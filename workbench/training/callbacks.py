"""Trainer callbacks and output files shared by SFT and RLT training.

`metrics.jsonl` gets one row per logged step (`logging_steps: 1` in every shipped recipe, so one per step). Rows
keep TRL's own metric names and add the workbench's stable names, so notebooks and the app read the same keys for
every trainer version:

    step, lr, loss, reward, r_ss, r_kl, format_penalty_rate, completion_length, kl, wall_time
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

from transformers import TrainerCallback

# workbench name -> TRL/transformers log key (first present wins)
STABLE_KEYS = {
    "lr": ("learning_rate",),
    "loss": ("loss",),
    "reward": ("reward",),
    "reward_std": ("reward_std",),
    "r_ss": ("r_ss",),
    "r_kl": ("r_kl",),
    "format_penalty_rate": ("format_penalty_rate",),
    "explanation_kl": ("explanation_kl",),
    "completion_length": ("completions/mean_length",),
    "kl": ("kl",),  # KL of the policy to the reference model (GRPO, beta > 0); None otherwise
    "grad_norm": ("grad_norm",),
    "entropy": ("entropy",),
    "mean_token_accuracy": ("mean_token_accuracy",),
}
RLT_REQUIRED = ("step", "reward", "r_ss", "r_kl", "format_penalty_rate", "completion_length", "kl", "lr")


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def append_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Append rows and flush: a crash loses at most the rows being written."""
    if not rows:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def truncate_jsonl_after(path: str | Path, step: int, key: str = "step") -> int:
    """Drop rows whose `key` is > step (used when resuming: those steps are trained again). Returns rows dropped."""
    p = Path(path)
    if not p.is_file():
        return 0
    keep, dropped = [], 0
    for line in p.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if isinstance(row.get(key), int) and row[key] > step:
            dropped += 1
        else:
            keep.append(line)
    from ..io import write_atomic

    write_atomic(p, "".join(line + "\n" for line in keep))
    return dropped


class MetricsJsonlCallback(TrainerCallback):
    """Write `metrics.jsonl` (one row per logged training step) and `train_summary.json` at the end."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.summary_path = Path(output_dir) / "train_summary.json"
        self.t0 = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "train_runtime" in logs:  # the final summary, not a step
            summary = {k: _clean(v) for k, v in logs.items()}
            summary.update(global_step=state.global_step, wall_time=round(time.time() - self.t0, 2))
            from ..io import write_atomic

            write_atomic(self.summary_path, json.dumps(summary, indent=2) + "\n")
            return
        if any(k.startswith("eval_") for k in logs):
            return
        row = {"step": state.global_step, "epoch": _clean(logs.get("epoch"))}
        for name, keys in STABLE_KEYS.items():
            row[name] = next((_clean(logs[k]) for k in keys if k in logs), None)
        for k, v in logs.items():
            if k not in row and isinstance(v, (int, float)):
                row[k] = _clean(v)
        row["wall_time"] = round(time.time() - self.t0, 2)
        append_jsonl(self.path, [row])


# ------------------------------------------------------------------------------ the soft-synced reference model
REF_MODEL_FILE = "ref_model.safetensors"


class RefModelCheckpointCallback(TrainerCallback):
    """Save the soft-synced reference model in every checkpoint; `restore_ref_model` puts it back on resume.

    With `sync_ref_model`, TRL mixes the reference towards the policy every `ref_model_sync_steps`
    (`SyncRefModelCallback`: ref <- alpha * policy + (1 - alpha) * ref). A TRL 1.16 checkpoint holds the policy, the
    optimizer, the scheduler, the RNG states and the trainer state, but not that reference: a resumed run rebuilds it
    from the initial model (`GRPOTrainer.__init__`), and from then on measures the KL term against another model than
    the interrupted run did. The mixed weights cannot be rebuilt from the checkpoint (they depend on the policy at
    every earlier sync), so they are saved beside it, as `ref_model.safetensors`, by the main process.
    """

    def __init__(self, trainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        ref = _ref_model(self.trainer)
        if ref is None:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        with _whole(ref):  # every process takes part under ZeRO-3; the main one writes
            if args.should_save and folder.is_dir():
                from safetensors.torch import save_model

                tmp = folder / (REF_MODEL_FILE + ".tmp")
                save_model(ref, str(tmp))  # shared (tied) tensors are stored once
                os.replace(tmp, folder / REF_MODEL_FILE)


def _zero3() -> bool:
    from accelerate.state import AcceleratorState

    plugin = AcceleratorState().deepspeed_plugin  # as TRL's SyncRefModelCallback asks
    return plugin is not None and plugin.zero_stage == 3


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@contextlib.contextmanager
def _whole(model, modifier_rank=None):
    """The model's parameters whole for the block: gathered under DeepSpeed ZeRO-3 (as TRL's SyncRefModelCallback
    does), untouched otherwise."""
    if not _zero3():
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=modifier_rank):
        yield


def _ref_model(trainer):
    """The trainer's soft-synced reference model (unwrapped), or None when there is none to keep."""
    ref = getattr(trainer, "ref_model", None)
    if ref is None or not getattr(trainer.args, "sync_ref_model", False):
        return None
    return trainer.accelerator.unwrap_model(ref)


def restore_ref_model(trainer, checkpoint: str | Path) -> str:
    """Load the reference model saved in `checkpoint` (see RefModelCheckpointCallback). Returns what was done:
    'restored', 'not synced' (nothing to restore) or 'missing' (a checkpoint from another tool or an older workbench:
    the reference restarts from the initial model, and a message says so)."""
    ref = _ref_model(trainer)
    if ref is None:
        return "not synced"
    path = Path(checkpoint) / REF_MODEL_FILE
    if not path.is_file():
        print(f"[train] warning: {checkpoint} holds no {REF_MODEL_FILE} (written by the workbench since #16): the "
              "soft-synced reference model restarts from the initial model, so the KL term after this resume is "
              "measured against another reference than before the interruption", flush=True)
        return "missing"
    from safetensors.torch import load_model

    with _whole(ref, modifier_rank=0):  # under ZeRO-3 the main process loads, DeepSpeed spreads the weights
        if _rank() == 0 or not _zero3():
            load_model(ref, str(path), strict=True)  # every tensor, or an error naming the missing and unexpected ones
    return "restored"
