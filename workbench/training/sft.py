"""Supervised fine-tuning with TRL's SFTTrainer: the teacher warm-up and student distillation.

Teacher format (the RLT warm-up, rlt-method.md section 4): the teacher prompt of `formats.teacher_prompt` (system,
question, and the assistant turn begun with the solution and `<|begin_of_explanation|>\\n\\n`), then the trace as the
explanation body, `<|end_of_explanation|>` and the chat template's end of turn (`<|im_end|>\\n` for Qwen). The loss
falls only on the body, the end tag and the end of turn: the tokens the teacher generates during RL, plus the
newline after `<|im_end|>`, which the official collator trains too (see `end_of_turn`).

Student format (distillation): system + question, then the assistant turn `<|begin_of_thought|>E<|end_of_thought|>
\\n\\n<|begin_of_solution|>S<|end_of_solution|>` and end-of-turn; the loss falls on the whole assistant turn.

We tokenise the examples ourselves (prompt and completion separately, then concatenated, as at generation time)
and pass `input_ids` + `labels` to SFTTrainer, so the mask is exact and testable: labels are -100 everywhere else.
"""

from __future__ import annotations

import logging
import time

from .. import formats
from ..errors import WorkbenchError
from ..models import load_tokenizer
from .callbacks import MetricsJsonlCallback
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
IGNORE = -100


def end_of_turn(tokenizer, keep_trailing_whitespace: bool = True) -> str:
    """The text the chat template puts after an assistant message: `<|im_end|>\\n` for ChatML (Qwen, SmolLM2).

    The trailing newline is kept (and so trained), as in the official warm-up: it trains on the full chat-template
    text with TRL's DataCollatorForCompletionOnlyLM, which leaves every token after the response template in the
    loss, the `\\n` after `<|im_end|>` included (custom_data/utils.py at the pinned commit). With
    keep_trailing_whitespace=False: the end-of-turn token alone, e.g. `<|im_end|>` (what generation stops at).
    """
    marker = "\x00RLT-END\x00"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:  # no chat template: fall back to EOS
        text = ""
    tail = text[text.find(marker) + len(marker):] if marker in text else ""
    if not tail.strip():
        return tokenizer.eos_token or ""
    return tail if keep_trailing_whitespace else tail.rstrip()


def teacher_texts(tokenizer, question: str, solution: str, body: str, system_prompt: str | None = None,
                  tags: formats.Tags = formats.STRATOS) -> tuple[str, str]:
    """(prompt, completion) of one teacher SFT example; completion = body + end tag + end-of-turn."""
    prompt = formats.teacher_prompt(tokenizer, question, solution, system_prompt, tags)
    return prompt, formats.format_completion(body, tags) + end_of_turn(tokenizer)


def student_texts(tokenizer, question: str, body: str, solution: str, system_prompt: str | None = None,
                  tags: formats.Tags = formats.STRATOS) -> tuple[str, str]:
    """(prompt, completion) of one student SFT example; the thought is PAD + body, as in the student chat."""
    system = formats.default_student_system_prompt(tags) if system_prompt is None else system_prompt
    prompt = tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": question}],
                                           tokenize=False, add_generation_prompt=True)
    completion = formats.student_completion(formats.PAD + body, solution, tags) + end_of_turn(tokenizer)
    return prompt, completion


def tokenize_example(tokenizer, prompt: str, completion: str, max_length: int | None = None) -> dict:
    """input_ids = prompt ids + completion ids (tokenised apart, as at generation time); labels only on the completion."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids, labels = p + c, [IGNORE] * len(p) + c
    if max_length is not None and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels}


def build_examples(problems: list[dict], tokenizer, fmt: str = "teacher", teacher_system_prompt: str | None = None,
                   student_system_prompt: str | None = None, tags: formats.Tags = formats.STRATOS,
                   max_length: int | None = None) -> list[dict]:
    """Tokenised SFT examples (input_ids, labels, id) for problems with question, solution and reasoning_trace."""
    out, dropped = [], 0
    for p in problems:
        body = p.get("reasoning_trace")
        if not isinstance(body, str) or not body.strip():
            raise WorkbenchError(f"problem {p.get('id')!r} has no reasoning_trace to train on")
        if fmt == "teacher":
            prompt, completion = teacher_texts(tokenizer, p["question"], p["solution"], body, teacher_system_prompt, tags)
        elif fmt == "student":
            prompt, completion = student_texts(tokenizer, p["question"], body, p["solution"], student_system_prompt, tags)
        else:
            raise WorkbenchError(f"format must be 'teacher' or 'student', got {fmt!r}")
        ex = tokenize_example(tokenizer, prompt, completion, max_length)
        if all(label == IGNORE for label in ex["labels"]):
            dropped += 1  # the prompt alone fills max_length
            continue
        out.append({"id": str(p.get("id")), **ex})
    if dropped:
        log.warning("dropped %d examples whose prompt alone is longer than max_length=%s", dropped, max_length)
    if not out:
        raise WorkbenchError(f"no SFT example fits in max_length={max_length}")
    return out


def build_trainer(recipe: Recipe):
    """(SFTTrainer, examples, checkpoint to resume from) for a recipe; the output folder is prepared."""
    from datasets import Dataset
    from trl import SFTTrainer

    spec = recipe.spec
    args = make_trl_config(recipe)
    score_only_labelled_positions_on_cpu()
    model_path = resolve_model(spec.model)
    tokenizer = load_tokenizer(model_path)
    tags = formats.get_tags(spec.tag_style)
    problems = load_problems(spec.dataset, spec.dataset_split, spec.max_samples, need_trace=True, tags=tags)
    examples = build_examples(problems, tokenizer, spec.format, spec.teacher_system_prompt, spec.student_system_prompt,
                              tags, args.max_length)
    dataset = Dataset.from_list([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples])
    checkpoint = prepare_output_dir(recipe, args, ("metrics.jsonl",))
    if args.model_init_kwargs is None:
        args.model_init_kwargs = {}
    args.model_init_kwargs.setdefault("dtype", model_dtype(recipe, args))
    try:
        trainer = SFTTrainer(model=model_path, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config(recipe), callbacks=[MetricsJsonlCallback(args.output_dir)])
    except ValueError as exc:
        raise WorkbenchError(f"could not set up the SFT trainer: {exc}") from None
    return trainer, examples, checkpoint


def run_sft(recipe: Recipe | str, overrides: list[str] | dict | None = None) -> dict:
    """Train from a recipe (object or path). Returns a summary dict; writes everything under output_dir."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides, stage="sft")
    spec = recipe.spec
    t0 = time.time()
    trainer, examples, checkpoint = build_trainer(recipe)
    args, tokenizer = trainer.args, trainer.processing_class
    if is_main_process():
        n_label = sum(sum(label != IGNORE for label in e["labels"]) for e in examples)
        print(f"[train sft] {len(examples)} {spec.format}-format examples from {spec.dataset}:{spec.dataset_split}, "
              f"{n_label} trained tokens; model {spec.model}; output {args.output_dir}", flush=True)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    final = save_final(trainer, recipe, tokenizer)
    summary = {"stage": "sft", "format": spec.format, "output_dir": args.output_dir, "model_dir": final,
               "examples": len(examples), "global_step": trainer.state.global_step,
               "train_loss": result.training_loss, "wall_time_s": round(time.time() - t0, 1)}
    if is_main_process():
        print(f"[train sft] done: {summary['global_step']} steps, loss {summary['train_loss']:.4f}, "
              f"{summary['wall_time_s']:.0f}s; model saved in {final}", flush=True)
    return summary


__all__ = ["run_sft", "build_trainer", "build_examples", "tokenize_example", "teacher_texts", "student_texts", "end_of_turn"]


def _debug_decode(tokenizer, example: dict) -> str:  # pragma: no cover - for notebooks
    """The trained part of an example, decoded (what the loss sees)."""
    return tokenizer.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE])

