"""Trainer callbacks and output files shared by SFT and RLT training.

`metrics.jsonl` gets one row per logged step (`logging_steps: 1` in every shipped recipe, so one per step). Rows
keep TRL's own metric names and add the workbench's stable names, so notebooks and the app read the same keys for
every trainer version:

    step, lr, loss, reward, r_ss, r_kl, format_penalty_rate, completion_length, kl, wall_time
"""

from __future__ import annotations

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
