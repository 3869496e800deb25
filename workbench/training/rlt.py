"""RLT training: TRL's GRPOTrainer on the teacher, with the RLT reward of `workbench.rewards` as reward function.

How the pieces meet (rlt-method.md sections 3-4):
- The dataset's `prompt` is the teacher prompt as *text* (`formats.teacher_prompt`): the chat template up to the
  assistant turn, begun with the solution and `<|begin_of_explanation|>\\n\\n`. TRL samples the rest, so a
  completion is the raw text after that tag: what `RLTReward` scores. `question` and `solution` ride along as
  dataset columns, which TRL passes to reward functions.
- The teacher of the reward is the current policy: inside the reward call we take TRL's model, unwrapped the way
  TRL unwraps it for generation (DeepSpeed ZeRO-3 parameters gathered, gradient checkpointing off), in eval mode.
- The student is a separate frozen copy (optionally kept on the CPU between reward calls: `student_offload`).
- Temperatures agree: TRL samples and computes the policy's log-probs at `temperature`; the reward's teacher
  log-probs use the same value (the recipe loader sets `reward.teacher_temperature` to it, and rejects a mismatch).
- β, the reference model and its soft sync, group size, batch, lengths, LoRA and vLLM are TRL's own settings. On a
  CPU with vLLM's CPU build, `use_vllm` with `vllm_mode: colocate` works; the engine's weights are updated through
  vLLM's `reload_weights` instead of TRL's weight push, which fails there (`vllm_cpu.py` says why).

Outputs (in output_dir): checkpoints, recipe.yaml, trl_config.json, metrics.jsonl (one row per step),
completions.jsonl (sampled completions with their reward components), heldout_before/after.jsonl (held-out
problems sampled and scored before and after training; they are valid `workbench score` inputs), TensorBoard logs
under runs/ when tensorboard is installed, and the final model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import torch

from .. import formats
from ..errors import WorkbenchError
from ..models import load_model, load_tokenizer
from ..rewards import RewardConfig, RewardResult, RLTReward, RLTScorer
from ..sampling import SamplingParams, provenance
from .callbacks import MetricsJsonlCallback, RefModelCheckpointCallback, append_jsonl, restore_ref_model
from .common import (
    is_main_process,
    model_dtype,
    peft_config,
    prepare_output_dir,
    resolve_model,
    save_final,
    score_only_labelled_positions_on_cpu,
)
from .config import Recipe, load_recipe, make_trl_config
from .datasets import load_problems

log = logging.getLogger("workbench.training")

COMPLETIONS_FILE = "completions.jsonl"


def _missing_hint(name: str, key: str) -> str:
    """What to run when a CPU recipe's model folder is missing."""
    for stage in ("teacher_sft", "student_sft"):
        if name.rstrip("/").endswith(f"cpu/{stage}"):
            return (f" (the CPU RLT recipe uses the output of recipes/cpu/{stage}.yaml: run `workbench train sft "
                    f"--recipe recipes/cpu/{stage}.yaml` first, or pass {key}=smollm2-135m)")
    return ""


# ---------------------------------------------------------------------------------------------- prompts


def trainer_prompt(tokenizer, question: str, solution: str, config: RewardConfig) -> str:
    """The teacher prompt as TRL will tokenise it (`tokenizer(text)`, with special tokens).

    When the tokenizer adds a BOS token and the chat template already wrote it, the text's BOS is dropped so the
    token ids match the reward's (which tokenises the full text without special tokens).
    """
    text = formats.teacher_prompt(tokenizer, question, solution, config.teacher_system_prompt, config.tags)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos):
        ids = tokenizer("x", add_special_tokens=True)["input_ids"]
        if ids and ids[0] == tokenizer.bos_token_id:
            text = text[len(bos):]
    return text


def build_dataset(problems: list[dict], tokenizer, config: RewardConfig):
    """datasets.Dataset with prompt (text), question, solution, id."""
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": trainer_prompt(tokenizer, p["question"], p["solution"], config),
         "question": p["question"], "solution": p["solution"], "id": str(p["id"])}
        for p in problems
    ])


# ---------------------------------------------------------------------------------------------- the reward


@contextlib.contextmanager
def policy_as_teacher(trainer):
    """The trainer's current policy, ready for no-grad scoring: unwrapped as TRL does for generation, eval mode."""
    from trl.models import unwrap_model_for_generation

    args = trainer.args
    wrapped = trainer.model_wrapped if trainer.model_wrapped is not None else trainer.model
    with unwrap_model_for_generation(wrapped, trainer.accelerator,
                                     gather_deepspeed3_params=args.ds3_gather_for_generation,
                                     gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs) as model:
        was_training = model.training
        model.eval()
        try:
            yield model
        finally:
            model.train(was_training)


def cpu_bf16_autocast(args):
    """bf16 autocast for the reward of a CPU run with `bf16: true` (the trainer autocasts only its own forwards); a
    no-op otherwise, so GPU runs and fp32 runs keep their numbers. The reward's forwards run whole sequences, where
    autocast pays; sampling does not (autocast casts every weight again at each new token)."""
    if args is None or not getattr(args, "bf16", False) or torch.cuda.is_available():
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def result_row(res: RewardResult, token_details: bool = False) -> dict:
    """The reward components of one result, flat (per-token arrays only with token_details)."""
    d = res.to_dict()
    if not token_details:
        d.pop("solution_tokens", None)
        d.pop("explanation_tokens", None)
    d.pop("id", None)
    return d


class RLTTrainingReward:
    """TRL reward function: the RLT reward with the policy as teacher; logs metrics and sampled completions.

    `trainer` must be set after the GRPOTrainer is built (`reward.trainer = trainer`); until then (or when used
    outside a trainer) the scorer's own teacher is used.
    """

    def __init__(self, scorer: RLTScorer, output_dir: str | Path | None = None, log_steps: int = 1,
                 log_max: int | None = None, token_details: bool = False, student_offload: bool = False):
        self.inner = RLTReward(scorer)
        self.scorer = scorer
        self.__name__ = "rlt"
        self.trainer = None
        self.path = Path(output_dir) / COMPLETIONS_FILE if output_dir else None
        self.log_steps, self.log_max, self.token_details = log_steps, log_max, token_details
        self.student_offload = student_offload
        self.last_rows: list[dict] = []

    @contextlib.contextmanager
    def _models(self):
        teacher_ctx = policy_as_teacher(self.trainer) if self.trainer is not None else contextlib.nullcontext(None)
        with teacher_ctx as policy, cpu_bf16_autocast(self.trainer.args if self.trainer is not None else None):
            if policy is not None:
                self.scorer.teacher = policy
            moved = False
            if self.student_offload and self.trainer is not None:
                device = self.trainer.accelerator.device
                if device.type != "cpu":
                    self.scorer.student.to(device)
                    moved = True
            try:
                yield
            finally:
                if moved:
                    self.scorer.student.to("cpu")
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()

    def __call__(self, prompts, completions, question=None, solution=None, trainer_state=None, log_metric=None,
                 log_extra=None, completion_ids=None, id=None, **columns):
        t0 = time.perf_counter()
        with self._models():
            rewards = self.inner(prompts, completions, question=question, solution=solution,
                                 completion_ids=completion_ids)
        results = self.inner.last_results
        m = self.inner.last_metrics
        if log_metric is not None:
            log_metric("reward_time", time.perf_counter() - t0)  # seconds in the RLT reward (student + teacher)
        if log_metric is not None and m:
            for ours, theirs in (("r_ss", "r_ss"), ("r_kl", "r_kl"), ("format_penalty_rate", "format_penalty_rate"),
                                 ("explanation_kl", "kl_mean"), ("reward_error_rate", "error_rate")):
                if theirs in m:
                    log_metric(ours, float(m[theirs]))
        if log_extra is not None:
            log_extra("r_ss", [r.r_ss for r in results])
            log_extra("r_kl", [r.r_kl for r in results])
        step = int(trainer_state.global_step) if trainer_state is not None else 0
        self._log_rows(step, prompts, completions, question, solution, id, completion_ids, results)
        return rewards

    def _log_rows(self, step, prompts, completions, question, solution, ids, completion_ids, results):
        due = self.log_steps > 0 and (step == 0 or (step + 1) % self.log_steps == 0)
        if self.path is None or not due:
            self.last_rows = []
            return
        rows = []
        for i, (c, res) in enumerate(zip(completions, results)):
            if self.log_max is not None and i >= self.log_max:
                break
            rows.append({
                "step": step + 1,  # the optimizer step these completions train
                "policy_step": step,  # the teacher that sampled and scored them: checkpoint-{policy_step} (0: initial)
                "id": ids[i] if ids is not None else None,
                "question": question[i] if question is not None else None,
                "solution": solution[i] if solution is not None else None,
                "completion": c if isinstance(c, str) else c[-1]["content"],
                "completion_tokens": len(completion_ids[i]) if completion_ids is not None else None,
                "completion_ids": [int(t) for t in completion_ids[i]] if completion_ids is not None else None,
                **result_row(res, self.token_details),
            })
        self.last_rows = rows
        if self.trainer is not None and self.trainer.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            rows = gather_object(rows)  # every rank's completions, in rank order, once
            if self.log_max is not None:
                rows = rows[:self.log_max]  # at most log_max per logged step in all, not per process
        if is_main_process():
            append_jsonl(self.path, rows)


# ---------------------------------------------------------------------------------------------- held-out evaluation


def sample_completions(model, tokenizer, problems: list[dict], config: RewardConfig, samples_per_problem: int = 1,
                       params: SamplingParams | None = None, max_new_tokens: int = 128, temperature: float = 0.7,
                       batch_size: int = 16, seed: int = 0) -> list[dict]:
    """Sample teacher completions (raw text after the prompt) the way GRPO does; rows are `workbench score` inputs.

    The sampling engine is the project's one (`workbench.sampling`, transformers on the policy in memory); `params`
    defaults to `temperature`, top_p 1, no top-k and `max_new_tokens`. Each row records the engine, the model and
    the sampling parameters.
    """
    from ..sampling import TransformersEngine

    if params is None:
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=1.0, top_k=0, seed=seed)
    params = dataclasses.replace(params, n=samples_per_problem, stop=[])  # GRPO ends at EOS only, as TRL does
    engine = TransformersEngine(model, tokenizer, getattr(model.config, "_name_or_path", None),
                                max(1, batch_size // samples_per_problem))  # batch_size counts sequences
    prompts = [formats.teacher_prompt(tokenizer, p["question"], p["solution"], config.teacher_system_prompt,
                                      config.tags) for p in problems]
    rows = []
    for p, samples in zip(problems, engine.generate(prompts, params)):
        for k, smp in enumerate(samples):
            rows.append({"id": f"{p['id']}#{k}", "problem": str(p["id"]), "question": p["question"],
                         "solution": p["solution"], "completion": smp.text, "completion_tokens": smp.tokens,
                         "completion_ids": smp.token_ids, **provenance(engine, params)})
    return rows


def evaluate_heldout(teacher, student, tokenizer, problems: list[dict], config: RewardConfig, path: str | Path,
                     samples_per_problem: int = 2, params: SamplingParams | None = None, batch_size: int = 16,
                     seed: int = 0, max_new_tokens: int = 128) -> dict:
    """Sample the teacher on held-out problems, score with the RLT reward (teacher = the same model), write JSONL."""
    was = teacher.training
    teacher.eval()
    t0 = time.time()
    try:
        rows = sample_completions(teacher, tokenizer, problems, config, samples_per_problem, params,
                                  max_new_tokens=max_new_tokens, temperature=config.teacher_temperature,
                                  batch_size=batch_size, seed=seed)
        results = RLTScorer(teacher, student, tokenizer, config).score(rows)
    finally:
        teacher.train(was)
    out = [{**r, **result_row(res)} for r, res in zip(rows, results)]
    from ..io import write_jsonl_atomic

    write_jsonl_atomic(path, out)
    ok = [r for r in results if r.ok]

    def mean(xs):
        xs = list(xs)
        return sum(xs) / len(xs) if xs else math.nan

    return {"file": str(path), "n": len(out), "errors": len(out) - len(ok),
            "reward": mean(r.reward for r in ok), "r_ss": mean(r.r_ss for r in ok), "r_kl": mean(r.r_kl for r in ok),
            "format_penalty_rate": mean(r.format_penalty != 0 for r in ok),
            "completion_tokens": mean(r["completion_tokens"] for r in rows),
            "seconds": round(time.time() - t0, 1)}


# ---------------------------------------------------------------------------------------------- entry point


@contextlib.contextmanager
def _without_zero3_init():
    """Load a model whole even when a DeepSpeed ZeRO-3 run is set up (from_pretrained would partition it)."""
    from transformers.integrations import deepspeed as hf_ds

    ref = hf_ds._hf_deepspeed_config_weak_ref
    config = ref() if ref is not None else None
    hf_ds.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if config is not None:
            hf_ds.set_hf_deepspeed_config(config)


def load_student(recipe: Recipe, tokenizer):
    """The frozen reward student on its device, in eval mode, without gradients (whole, never ZeRO-partitioned)."""
    from accelerate import PartialState

    spec = recipe.spec
    if spec.student_offload:
        device = "cpu"
    elif spec.student_device == "auto":
        device = PartialState().device
    else:
        device = spec.student_device
    path = resolve_model(spec.student, _missing_hint(spec.student, "student"))
    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" or (spec.student_offload and torch.cuda.is_available()) else torch.float32
    with _without_zero3_init():
        student = load_model(path, dev, dtype)
    student.requires_grad_(False)
    student_tok = load_tokenizer(path)
    from ..rewards import check_same_tokenizer

    check_same_tokenizer(tokenizer, student_tok)
    return student


def build_trainer(recipe: Recipe):
    """(GRPOTrainer, its RLTTrainingReward, checkpoint to resume from) for a recipe; the output folder is prepared."""
    from trl import GRPOTrainer

    spec, cfg = recipe.spec, recipe.reward
    args = make_trl_config(recipe)
    score_only_labelled_positions_on_cpu()
    model_path = resolve_model(spec.model, _missing_hint(spec.model, "model"))
    resolve_model(spec.student, _missing_hint(spec.student, "student"))  # a bad student fails now, not after the data
    tokenizer = load_tokenizer(model_path)
    tokenizer.padding_side = "left"
    problems = load_problems(spec.dataset, spec.dataset_split, spec.max_samples, tags=cfg.tags)
    dataset = build_dataset(problems, tokenizer, cfg)
    checkpoint = prepare_output_dir(recipe, args, ("metrics.jsonl", COMPLETIONS_FILE))
    student = load_student(recipe, tokenizer)
    scorer = RLTScorer(None, student, tokenizer, cfg)
    reward = RLTTrainingReward(scorer, args.output_dir, spec.completions_log_steps, spec.completions_log_max,
                               spec.log_token_details, spec.student_offload)
    if args.model_init_kwargs is None:
        args.model_init_kwargs = {}
    args.model_init_kwargs.setdefault("dtype", model_dtype(recipe, args))
    cpu_vllm = args.use_vllm and args.vllm_mode == "colocate" and not torch.cuda.is_available()
    if cpu_vllm:
        from .vllm_cpu import prepare_cpu_engine_env

        prepare_cpu_engine_env()
    try:
        trainer = GRPOTrainer(model=model_path, reward_funcs=[reward], args=args, train_dataset=dataset,
                              processing_class=tokenizer, peft_config=peft_config(recipe),
                              callbacks=[MetricsJsonlCallback(args.output_dir)])
    except ValueError as exc:
        raise WorkbenchError(f"could not set up the GRPO trainer: {exc}") from None
    if cpu_vllm:
        from .vllm_cpu import use_cpu_weight_sync

        use_cpu_weight_sync(trainer)  # TRL's weight push fails on vLLM's CPU backend: see vllm_cpu.py
    reward.trainer = trainer
    scorer.teacher = trainer.model
    # TRL keeps the soft-synced reference model out of its checkpoints: save it in them, and put it back on resume
    trainer.add_callback(RefModelCheckpointCallback(trainer))
    if checkpoint is not None:
        restore_ref_model(trainer, checkpoint)
    return trainer, reward, checkpoint


def run_rlt(recipe: Recipe | str, overrides: list[str] | dict | None = None) -> dict:
    """GRPO with the RLT reward from a recipe (object or path). Returns a summary; writes outputs in output_dir."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides, stage="rlt")
    spec, cfg = recipe.spec, recipe.reward
    t0 = time.time()
    trainer, reward, checkpoint = build_trainer(recipe)
    args, tokenizer, student = trainer.args, trainer.processing_class, reward.scorer.student
    main = is_main_process()
    # The held-out evaluation runs on the main process alone (the others wait): it needs the whole model, which a
    # DeepSpeed run does not keep on every process (ZeRO-3 partitions it).
    eval_ok = not trainer.is_deepspeed_enabled
    heldout = None
    if spec.eval_split and eval_ok and (spec.eval_before or spec.eval_after):
        heldout = load_problems(spec.eval_dataset or spec.dataset, spec.eval_split, spec.eval_max_problems,
                                tags=cfg.tags)
    elif spec.eval_split and not eval_ok and main:
        print("[train rlt] the held-out evaluation runs only without DeepSpeed; sample and "
              "score afterwards (`workbench score`)", flush=True)
    # held-out samples: the policy's own sampling settings (GRPOConfig), through the project's sampling engine
    gen_params = SamplingParams(max_new_tokens=args.max_completion_length, temperature=args.temperature,
                                top_p=args.top_p, top_k=int(getattr(args, "top_k", 0) or 0), seed=args.seed)
    evals: dict[str, dict] = {}

    def _eval(tag: str):
        if main:
            _eval_main(tag)
        trainer.accelerator.wait_for_everyone()

    def _eval_main(tag: str):
        path = Path(args.output_dir) / f"heldout_{tag}.jsonl"
        model = trainer.accelerator.unwrap_model(trainer.model)
        if spec.student_offload:
            student.to(trainer.accelerator.device)
        try:
            res = evaluate_heldout(model, student, tokenizer, heldout, cfg, path, spec.eval_samples_per_problem,
                                   gen_params, spec.eval_batch_size, seed=args.seed,
                                   max_new_tokens=args.max_completion_length)
        finally:
            if spec.student_offload:
                student.to("cpu")
        evals[tag] = res
        print(f"[train rlt] held-out ({tag}): mean reward {res['reward']:.4f} (r_ss {res['r_ss']:.4f}, "
              f"r_kl {res['r_kl']:.4f}, penalty rate {res['format_penalty_rate']:.2f}) over {res['n']} completions "
              f"in {res['seconds']:.0f}s -> {path}", flush=True)

    if main:
        print(f"[train rlt] {len(trainer.train_dataset)} prompts from {spec.dataset}:{spec.dataset_split}; teacher "
              f"{spec.model}, student {spec.student}; {args.num_generations} completions per prompt, temperature "
              f"{args.temperature}; output {args.output_dir}", flush=True)
    if heldout and spec.eval_before and checkpoint is None:
        _eval("before")
    result = trainer.train(resume_from_checkpoint=checkpoint)
    final = save_final(trainer, recipe, tokenizer)
    if heldout and spec.eval_after:
        _eval("after")
    summary = {"stage": "rlt", "output_dir": args.output_dir, "model_dir": final,
               "global_step": trainer.state.global_step, "train_loss": result.training_loss,
               "wall_time_s": round(time.time() - t0, 1), "train_runtime_s": result.metrics.get("train_runtime"),
               "heldout": evals}
    if main:
        from ..io import write_atomic

        write_atomic(Path(args.output_dir) / "rlt_summary.json", json.dumps(summary, indent=2) + "\n")
        line = f"[train rlt] done: {summary['global_step']} steps in {summary['train_runtime_s'] or 0:.0f}s"
        if "before" in evals and "after" in evals:
            line += f"; held-out mean reward {evals['before']['reward']:.4f} -> {evals['after']['reward']:.4f}"
        print(line + f"; model saved in {final}", flush=True)
    return summary


__all__ = ["run_rlt", "build_trainer", "RLTTrainingReward", "build_dataset", "trainer_prompt", "sample_completions",
           "evaluate_heldout", "policy_as_teacher"]
