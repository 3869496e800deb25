"""Pieces shared by the SFT and RLT entry points: output folder, model loading arguments, LoRA, final save."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..errors import WorkbenchError
from ..models import check_weights, resolve_model_path
from .callbacks import truncate_jsonl_after
from .config import Recipe

log = logging.getLogger("workbench.training")


def score_only_labelled_positions_on_cpu() -> bool:
    """Make TRL's fused LM head score only the labelled positions on a CPU, as it does on CUDA. Returns whether it did.

    TRL (trl/trainer/utils.py, `add_fused_lm_head`) projects through the LM head only the positions whose label is not
    -100 on Triton devices, and every position elsewhere, so that accelerators that compile per shape (Neuron) keep
    one tile shape. A CPU runs eagerly and compiles nothing, so there scoring every position only multiplies the head's
    work: by ~5 in the teacher warm-up (80% of its tokens are the prompt) and by ~9 in GRPO (completions of ~30 tokens
    after ~250 of prompt), ~40% of a CPU step. The scored positions and the loss are the same either way (the padded
    ones are zeroed), which tests/test_train_sft.py checks; benchmarks/cpu_levers.py measures the step times.
    The switch is TRL's own `compact` path, chosen by its `_use_triton(device)` test in that module: we answer True
    for CPU tensors there only (the kernels keep their own test, so the CPU runs the same torch tiles).
    """
    try:
        from trl.trainer import utils as trl_utils
    except ImportError:  # pragma: no cover - TRL is a dependency
        return False
    use_triton = getattr(trl_utils, "_use_triton", None)
    if use_triton is None or getattr(use_triton, "_workbench_cpu_compact", False):
        return use_triton is not None

    def _compact_on_cpu(device, _orig=use_triton):
        return device.type == "cpu" or _orig(device)

    _compact_on_cpu._workbench_cpu_compact = True
    trl_utils._use_triton = _compact_on_cpu
    return True


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def resolve_model(name: str, hint: str = "") -> str:
    """The path of a model to train or score with; a local folder's weights are checked before anything loads."""
    try:
        path = resolve_model_path(name)
    except WorkbenchError as exc:
        raise WorkbenchError(f"{exc}{hint}") from None
    check_weights(path, name)
    return path


def model_dtype(recipe: Recipe, trl_args) -> str:
    """dtype of the trained model's weights. auto: float32 unless a GPU run keeps master weights elsewhere.

    bf16 weights are right with DeepSpeed (it keeps fp32 master weights in the optimizer) and with LoRA (the
    adapters are kept in fp32 by PEFT); plain full fine-tuning keeps fp32 weights and autocasts to bf16.
    """
    if recipe.spec.dtype != "auto":
        return recipe.spec.dtype
    half = getattr(trl_args, "bf16", False) or getattr(trl_args, "fp16", False)
    if not half:
        return "float32"
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" or bool(trl_args.deepspeed)
    if recipe.spec.lora is not None or deepspeed:
        return "bfloat16" if trl_args.bf16 else "float16"
    return "float32"


def peft_config(recipe: Recipe):
    if recipe.spec.lora is None:
        return None
    from peft import LoraConfig

    kwargs = {"task_type": "CAUSAL_LM", **recipe.spec.lora}
    try:
        return LoraConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise WorkbenchError(f"invalid lora settings: {exc}") from None


def prepare_output_dir(recipe: Recipe, trl_args, files: tuple[str, ...]) -> str | None:
    """Write the resolved recipe; find the checkpoint to resume from; trim logs of steps that will be re-run."""
    out = Path(trl_args.output_dir)
    resume = recipe.trainer.get("resume_from_checkpoint")
    checkpoint = None
    if resume not in (None, False, "", "false", "False"):
        if resume in (True, "true", "True", "last", "latest"):
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = get_last_checkpoint(str(out)) if out.is_dir() else None
            if checkpoint is None:
                raise WorkbenchError(f"resume_from_checkpoint=true but {out} has no checkpoint-* folder")
        else:
            checkpoint = str(resume)
            if not Path(checkpoint).is_dir():
                raise WorkbenchError(f"resume_from_checkpoint {checkpoint!r} is not a checkpoint folder")
    if is_main_process():
        try:
            _write_run_files(out, recipe, trl_args, files, checkpoint)
        except OSError as exc:  # the early check (config.check_output_dir) passed, yet the folder cannot be written
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise WorkbenchError(f"cannot write to output_dir {str(out)!r}: {exc.strerror or exc}{where}; give a "
                                 "folder you can write to: output_dir=...") from None
    return checkpoint


def _write_run_files(out: Path, recipe: Recipe, trl_args, files: tuple[str, ...], checkpoint: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    from ..io import write_atomic

    write_atomic(out / "recipe.yaml", recipe.to_yaml())
    write_atomic(out / "trl_config.json", trl_args.to_json_string())
    if checkpoint is not None:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        step = int(state.get("global_step", 0))
        for name in files:
            truncate_jsonl_after(out / name, step)
    else:
        for name in files:  # a fresh run starts fresh logs
            if (out / name).exists():
                (out / name).unlink()


def save_final(trainer, recipe: Recipe, tokenizer) -> str:
    """Save the trained model to output_dir (with LoRA: the adapter in output_dir/adapter, merged model beside)."""
    out = Path(trainer.args.output_dir)
    if recipe.spec.lora is None:
        trainer.save_model(str(out))
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(str(out))
        return str(out)
    trainer.save_model(str(out / "adapter"))
    zero3 = trainer.is_deepspeed_enabled and getattr(trainer.accelerator.state.deepspeed_plugin, "zero_stage", 0) == 3
    if recipe.spec.merge_lora and not zero3:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if trainer.is_world_process_zero():
            merged = model.merge_and_unload()
            merged.save_pretrained(str(out))
            tokenizer.save_pretrained(str(out))
        return str(out)
    if trainer.is_world_process_zero():
        log.warning("LoRA adapter saved in %s/adapter (not merged%s)", out, " under ZeRO-3" if zero3 else "")
    return str(out / "adapter")
