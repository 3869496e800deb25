"""SFT: the loss mask (only the explanation and its end tags are trained) and short runs.

The runs train the tiny random SmolLM2 of conftest.py (the embedded model's architecture and tokenizer, 2 layers):
they check the trainer's data, logs and saved files, not what is learnt (the notebooks and the teaching loop do)."""

import json
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: much faster on a shared CPU

import pytest  # noqa: E402

from workbench import formats  # noqa: E402
from workbench.training.config import load_recipe  # noqa: E402
from workbench.training.sft import IGNORE, build_examples, end_of_turn, tokenize_example  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PROBLEM = {"id": "p1", "question": "Tom has 12 apples and buys 7 more. How many apples does he have now?",
           "solution": "12 + 7 = 19. \\boxed{19}",
           "reasoning_trace": "Buying more means adding: 12 + 7 = 19.\n\nSo Tom has 19 apples."}


@pytest.fixture(scope="module")
def tok():
    from workbench.models import load_tokenizer

    return load_tokenizer("smollm2-135m")


def _trained_text(tok, ex):
    return tok.decode([t for t, label in zip(ex["input_ids"], ex["labels"]) if label != IGNORE])


@pytest.mark.slow
def test_teacher_mask_is_explanation_and_end_tags(tok):
    (ex,) = build_examples([PROBLEM], tok, "teacher")
    eot = end_of_turn(tok)
    assert eot == "<|im_end|>\n"  # the newline after it is trained too, as by the official collator
    # the trained tokens are exactly: explanation body, end tag, end of turn
    assert _trained_text(tok, ex) == PROBLEM["reasoning_trace"] + formats.EXPLANATION_END + eot
    # everything before them is the teacher prompt, ignored; the trained part is one contiguous run at the end
    prompt = formats.teacher_prompt(tok, PROBLEM["question"], PROBLEM["solution"])
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ex["input_ids"][:len(prompt_ids)] == prompt_ids
    assert ex["labels"][:len(prompt_ids)] == [IGNORE] * len(prompt_ids)
    assert all(label != IGNORE for label in ex["labels"][len(prompt_ids):])
    assert ex["labels"][len(prompt_ids):] == ex["input_ids"][len(prompt_ids):]
    # the solution, the question and the system prompt are never trained on
    assert "19}" not in _trained_text(tok, ex).split(formats.EXPLANATION_END)[1]
    assert tok.decode(ex["input_ids"]).startswith("<|im_start|>system")


@pytest.mark.slow
def test_student_mask_is_the_assistant_turn(tok):
    (ex,) = build_examples([PROBLEM], tok, "student")
    expected = formats.student_completion(formats.PAD + PROBLEM["reasoning_trace"], PROBLEM["solution"])
    assert _trained_text(tok, ex) == expected + end_of_turn(tok)
    text = tok.decode(ex["input_ids"])
    assert formats.SOLUTION_START in text.split("<|im_start|>assistant")[1]  # solution after the thought
    assert PROBLEM["solution"] not in text.split("<|im_start|>assistant")[0]  # the student never sees it before


@pytest.mark.slow
def test_truncation_keeps_the_mask(tok):
    ex = tokenize_example(tok, "prompt " * 20, "completion text", max_length=10)
    assert len(ex["input_ids"]) == 10 and all(label == IGNORE for label in ex["labels"])
    with pytest.raises(Exception, match="max_length"):
        build_examples([PROBLEM], tok, "teacher", max_length=16)


def test_sft_two_steps(tmp_path, tiny_dir):
    from workbench.training.sft import build_trainer

    out = tmp_path / "sft"
    recipe = load_recipe(RECIPES / "cpu" / "teacher_sft.yaml",
                         [f"output_dir={out}", f"model={tiny_dir}", "max_steps=2", "max_samples=4", "per_device_train_batch_size=2",
                          "save_steps=1", "save_only_model=true", "report_to=none"])
    trainer, examples, checkpoint = build_trainer(recipe)
    assert checkpoint is None
    # SFTTrainer keeps our labels as they are (no re-tokenisation, no new mask)
    ours = {tuple(e["input_ids"]): e["labels"] for e in examples}
    for row in trainer.train_dataset:
        assert ours[tuple(row["input_ids"])] == row["labels"]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        n = int(mask.sum())
        assert ours[tuple(ids[:n].tolist())] == labels[:n].tolist()
        assert (labels[n:] == IGNORE).all()
    trainer.train()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["loss"] is not None and r["loss"] > 0 and r["lr"] is not None for r in rows)
    assert (out / "recipe.yaml").is_file() and (out / "checkpoint-2").is_dir()


def test_sft_cli_writes_a_loadable_model(tmp_path, tiny_dir):
    from workbench.cli import main
    from workbench.models import load_model

    out = tmp_path / "sft"
    assert main(["train", "sft", "--recipe", str(RECIPES / "cpu" / "teacher_sft.yaml"), f"output_dir={out}",
                 f"model={tiny_dir}", "max_steps=1", "max_samples=2", "per_device_train_batch_size=2", "report_to=none", "save_strategy=no",
                 "format=student"]) == 0
    assert (out / "config.json").is_file() and (out / "train_summary.json").is_file()
    load_model(str(out), "cpu")
