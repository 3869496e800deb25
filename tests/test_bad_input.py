"""Bad input a user can give is refused up front, with a message that names the key, file or field (issue 12, item 8).

- recipe numbers that cannot train (a batch size of -1, a learning rate of 0, num_generations=0 ...) fail
  `workbench train ... --dry-run`, not the run after the models are loaded;
- an output_dir that cannot be written fails before any model or tokenizer is loaded;
- a prompt file that is not UTF-8, or is a folder, is a clear error, not a UnicodeDecodeError;
- a model folder whose only weights are a pickle that torch refuses (weights_only) is a clear error that says how
  to convert it; so is an unreadable weights file;
- a score item whose field has the wrong type says which field and which type, and only that item fails.
"""

import datetime
import os
from pathlib import Path

import pytest
import torch

from workbench import formats, models
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.training.config import load_recipe, make_trl_config

ROOT = Path(__file__).resolve().parents[1]
SFT = str(ROOT / "recipes" / "cpu" / "teacher_sft.yaml")
RLT = str(ROOT / "recipes" / "cpu" / "teacher_rlt.yaml")
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _dry_run(stage: str, recipe: str, *overrides: str) -> int:
    return main(["train", stage, "--recipe", recipe, "--dry-run", *overrides])


# ---------------------------------------------------------------------------------------------- recipe numbers


@pytest.mark.parametrize("override,needle", [
    ("per_device_train_batch_size=-1", "'per_device_train_batch_size' must be an integer >= 1, got -1"),
    ("per_device_train_batch_size=0", "'per_device_train_batch_size' must be an integer >= 1, got 0"),
    ("per_device_eval_batch_size=0", "'per_device_eval_batch_size'"),
    ("gradient_accumulation_steps=0", "'gradient_accumulation_steps'"),
    ("learning_rate=-1e-5", "'learning_rate' must be > 0"),
    ("learning_rate=0", "'learning_rate' must be > 0"),
    ("learning_rate=nan", "'learning_rate' must be a finite number"),
    ("max_steps=-5", "'max_steps'"),
    ("max_steps=0", "'max_steps'"),
    ("num_train_epochs=-1", "'num_train_epochs'"),
    ("num_train_epochs=0", "'num_train_epochs'"),
    ("max_length=-3", "'max_length'"),
    ("warmup_steps=-1", "'warmup_steps'"),
    ("weight_decay=-0.1", "'weight_decay'"),
    ("adam_beta1=2", "'adam_beta1'"),
    ("adam_epsilon=-1", "'adam_epsilon'"),
    ("seed=-1", "'seed'"),
    ("save_steps=-1", "'save_steps'"),
    ("dataloader_num_workers=-1", "'dataloader_num_workers'"),
    ("max_samples=0", "max_samples"),
])
def test_nonsensical_sft_numbers_fail_the_dry_run(override, needle, capsys):
    assert _dry_run("sft", SFT, override) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


@pytest.mark.parametrize("override,needle", [
    ("num_generations=0", "'num_generations' must be an integer >= 2"),  # was a ZeroDivisionError traceback
    ("num_generations=-2", "'num_generations'"),
    ("per_device_train_batch_size=-8", "'per_device_train_batch_size'"),
    ("temperature=0", "'temperature' must be > 0"),
    ("temperature=-1", "'temperature'"),
    ("top_p=2", "'top_p'"),
    ("top_k=-1", "'top_k'"),
    ("max_completion_length=-1", "'max_completion_length'"),
    ("beta=-1", "'beta'"),
    ("epsilon=-0.2", "'epsilon'"),
    ("num_iterations=0", "'num_iterations'"),
    ("steps_per_generation=0", "'steps_per_generation'"),
    ("ref_model_mixup_alpha=1.5", "'ref_model_mixup_alpha'"),
    ("ref_model_sync_steps=0", "'ref_model_sync_steps'"),
    ("eval_batch_size=0", "'eval_batch_size'"),
    ("eval_max_problems=-1", "'eval_max_problems'"),
    ("completions_log_max=0", "'completions_log_max'"),
    ("reward.batch_size=0", "'reward.batch_size'"),
    ("reward.max_batch_tokens=-1", "'reward.max_batch_tokens'"),
    ("reward.logit_chunk=0", "'reward.logit_chunk'"),
    ("reward.max_length=0", "'reward.max_length'"),
    ("reward.format_penalty=.nan", "'reward.format_penalty' must be a finite number"),
])
def test_nonsensical_rlt_numbers_fail_the_dry_run(override, needle, capsys):
    assert _dry_run("rlt", RLT, override) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


@pytest.mark.parametrize("override,needle", [
    ("lora.r=-1", "'lora.r' must be an integer >= 1"),
    ("lora.r=0", "'lora.r'"),
    ("lora.lora_alpha=-8", "'lora.lora_alpha'"),
    ("lora.lora_dropout=2", "'lora.lora_dropout'"),
])
def test_nonsensical_lora_numbers_fail_the_dry_run(override, needle, capsys):
    assert _dry_run("rlt", RLT, "lora={r: 8, lora_alpha: 16}", "sync_ref_model=false", override) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_sensible_edge_values_still_pass(capsys):
    assert _dry_run("sft", SFT, "warmup_steps=0", "weight_decay=0", "seed=0", "max_length=null",
                    "max_steps=1", "num_train_epochs=0") == 0  # epochs are unused when max_steps > 0
    assert _dry_run("rlt", RLT, "num_generations=2", "beta=0", "top_k=0", "top_p=1", "eval_max_problems=null",
                    "completions_log_steps=0", "reward.max_length=null", "lora={r: 1, lora_dropout: 0}",
                    "sync_ref_model=false") == 0
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------- output_dir


def test_output_dir_under_a_file_fails_the_dry_run(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert _dry_run("sft", SFT, f"output_dir={blocker}/run") == 2
    err = capsys.readouterr().err
    assert "output_dir" in err and str(blocker) in err and "not a folder" in err and "Traceback" not in err
    assert _dry_run("rlt", RLT, f"output_dir={blocker}") == 2  # output_dir is itself a file
    err = capsys.readouterr().err
    assert "output_dir" in err and "is a file" in err


@pytest.mark.skipif(AS_ROOT, reason="root can write into a read-only folder")
def test_read_only_output_dir_fails_the_dry_run(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert _dry_run("sft", SFT, f"output_dir={ro}/run") == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


def test_unwritable_output_dir_fails_training_before_any_model_loads(tmp_path, monkeypatch):
    from workbench.training import common, rlt, sft

    def no_loading(*a, **k):
        raise AssertionError("a model or tokenizer was loaded before output_dir was checked")

    for mod in (sft, rlt, common):
        monkeypatch.setattr(mod, "resolve_model", no_loading, raising=False)
    monkeypatch.setattr(sft, "load_tokenizer", no_loading)
    monkeypatch.setattr(rlt, "load_tokenizer", no_loading)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(WorkbenchError, match="output_dir"):
        sft.run_sft(SFT, [f"output_dir={blocker}/run"])
    with pytest.raises(WorkbenchError, match="output_dir"):
        rlt.run_rlt(RLT, [f"output_dir={blocker}/run"])


def test_output_dir_that_fails_at_creation_is_a_workbench_error(tmp_path, monkeypatch):
    """A folder that passes the early check and still cannot be made (a race, a full disk) is not a traceback."""
    from workbench.training import common

    recipe = load_recipe(SFT, [f"output_dir={tmp_path}/out"])
    args = make_trl_config(recipe)

    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(WorkbenchError, match="output_dir"):
        common.prepare_output_dir(recipe, args, ("metrics.jsonl",))


# ---------------------------------------------------------------------------------------------- prompt files


@pytest.fixture
def latin1_prompt(tmp_path) -> Path:
    p = tmp_path / "prompt-latin1.txt"
    p.write_bytes("Vous êtes un professeur.\n".encode("latin-1"))
    return p


def test_non_utf8_prompt_file_is_a_clear_error(latin1_prompt, tmp_path):
    with pytest.raises(WorkbenchError, match=r"prompt file .*prompt-latin1.txt.* is not UTF-8 text.*byte 0xea"):
        formats.load_prompt(latin1_prompt)
    with pytest.raises(WorkbenchError, match="is a folder"):
        formats.load_prompt(tmp_path)


def test_prompt_file_with_a_bom_reads_as_its_text(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes("\ufeffYou are a teacher.\n".encode())
    assert formats.load_prompt(p) == "You are a teacher."


def test_non_utf8_prompt_file_in_a_recipe_fails_the_dry_run(latin1_prompt, tmp_path, capsys):
    assert _dry_run("sft", SFT, f"teacher_system_prompt_file={latin1_prompt}") == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and str(latin1_prompt) in err and "Traceback" not in err
    assert _dry_run("rlt", RLT, f"student_system_prompt_file={tmp_path}") == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--teacher-system-prompt-file", "--student-system-prompt-file"])
def test_non_utf8_prompt_file_on_the_score_command(flag, latin1_prompt, tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text('{"question": "1+1?", "solution": "2", "completion": "one and one"}\n', encoding="utf-8")
    rc = main(["score", "--input", str(data), "--output", str(tmp_path / "out.jsonl"), flag, str(latin1_prompt)])
    err = capsys.readouterr().err
    assert rc == 2 and "not UTF-8" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- model folders


def _tiny_config(vocab_size: int = 64):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096)


def _tiny_model(vocab_size: int = 64):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(_tiny_config(vocab_size)).eval()


@pytest.fixture
def pickle_folder(tmp_path) -> Path:
    """A model folder whose only weights are a pytorch_model.bin holding a global that torch's weights_only refuses."""
    folder = tmp_path / "pickled-model"
    model = _tiny_model()
    model.config.save_pretrained(folder)
    state = dict(model.state_dict())
    state["saved_on"] = datetime.date(2024, 1, 1)  # any non-tensor global: what a hostile pickle would smuggle in
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_refused_pickle_model_folder_is_a_clear_error(pickle_folder):
    with pytest.raises(WorkbenchError) as err:
        models.load_model(str(pickle_folder), "cpu")
    msg = str(err.value)
    assert str(pickle_folder) in msg and "pytorch_model.bin" in msg and "pickle" in msg
    assert "safetensors" in msg and "datetime.date" in msg
    with pytest.raises(WorkbenchError, match="pickle"):  # the check training runs before it loads anything
        models.check_weights(str(pickle_folder))


def test_the_suggested_conversion_makes_the_folder_loadable(pickle_folder):
    """The message's recipe (trusted files only) turns the pickle into model.safetensors."""
    from transformers import AutoConfig, AutoModelForCausalLM

    state = torch.load(pickle_folder / "pytorch_model.bin", weights_only=False)  # what the message tells to do
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(pickle_folder))
    model.load_state_dict({k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, strict=False)
    model.save_pretrained(pickle_folder)
    models.check_weights(str(pickle_folder))
    assert models.load_model(str(pickle_folder), "cpu") is not None


def test_plain_pickle_state_dict_still_loads(tmp_path):
    folder = tmp_path / "plain"
    model = _tiny_model()
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    models.check_weights(str(folder))
    assert models.load_model(str(folder), "cpu") is not None


def test_model_folder_without_a_tokenizer_is_a_clear_error(pickle_folder):
    with pytest.raises(WorkbenchError, match="has no tokenizer"):  # was a ValueError traceback from transformers
        models.load_tokenizer(str(pickle_folder))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.safetensors"])
def test_unreadable_weights_file_is_a_clear_error(tmp_path, name):
    folder = tmp_path / "broken"
    _tiny_config().save_pretrained(folder)
    (folder / name).write_bytes(b"not weights at all" * 8)
    for call in (lambda: models.load_model(str(folder), "cpu"), lambda: models.check_weights(str(folder))):
        with pytest.raises(WorkbenchError, match=f"{name}.*(cannot be read|corrupt)"):
            call()


def test_training_checks_the_model_weights_before_loading(pickle_folder, tmp_path, monkeypatch):
    from workbench.training import rlt, sft

    def no_loading(*a, **k):
        raise AssertionError("the tokenizer was loaded before the weights were checked")

    monkeypatch.setattr(sft, "load_tokenizer", no_loading)
    monkeypatch.setattr(rlt, "load_tokenizer", no_loading)
    out = f"output_dir={tmp_path}/out"
    with pytest.raises(WorkbenchError, match="pickle"):
        sft.run_sft(SFT, [f"model={pickle_folder}", out])
    with pytest.raises(WorkbenchError, match="pickle"):
        rlt.run_rlt(RLT, [f"model={pickle_folder}", "student=smollm2-135m", out])
    with pytest.raises(WorkbenchError, match="pickle"):  # the reward student too, before the teacher's tokenizer
        rlt.run_rlt(RLT, ["model=smollm2-135m", f"student={pickle_folder}", out])


# ---------------------------------------------------------------------------------------------- score items


@pytest.fixture(scope="module")
def tiny_scorer():
    """An RLTScorer on a tiny random model with SmolLM2's tokenizer: checks inputs, not numbers."""
    from workbench.rewards import RLTScorer

    tok = models.load_tokenizer("smollm2-135m")
    model = _tiny_model(len(tok))
    return RLTScorer(model, model, tok)


GOOD = {"question": "What is 1+1?", "solution": "2", "completion": "One and one make two.<|end_of_explanation|>"}


@pytest.mark.parametrize("bad,needles", [
    ({"solution": ["2"]}, ["'solution'", "expected text, got a list"]),
    ({"solution": {"value": "2"}}, ["'solution'", "expected text, got a mapping"]),
    ({"solution": 2}, ["'solution'", "expected text, got a number"]),
    ({"solution": None}, ["missing 'solution'"]),
    ({"solution": "  "}, ["empty solution"]),
    ({"question": 5}, ["'question'", "expected text, got a number"]),
    ({"question": ["q"]}, ["'question'", "got a list"]),
    ({"question": None}, ["missing 'question'"]),
    ({"question": ""}, ["'question' is empty"]),
    ({"completion": ["x"]}, ["'completion'", "expected text, got a list"]),
    ({"completion": 42}, ["'completion'", "got a number"]),
    ({"completion": None}, ["needs 'completion'"]),
    ({"completion": None, "explanation": ["x"]}, ["'explanation'", "got a list"]),
    ({"completion_ids": "abc"}, ["'completion_ids'", "expected a list of token ids, got text"]),
    ({"completion_ids": [1, 2.5]}, ["'completion_ids'", "position 1", "got a number"]),
    ({"completion_ids": [True]}, ["'completion_ids'", "position 0", "got a boolean"]),
])
def test_score_item_errors_name_the_field_and_type(tiny_scorer, bad, needles):
    res = tiny_scorer.score([{**GOOD, **bad, "id": "bad"}, {**GOOD, "id": "good"}])
    assert res[0].error and res[0].reward is None
    for needle in needles:
        assert needle in res[0].error, res[0].error
    assert res[1].ok, res[1].error


@pytest.mark.parametrize("tokenization", ["joint", "generated"])
@pytest.mark.parametrize("ids", [[-5, 3], [10**30], [10**6], [3, 10**5000]], ids=["negative", "huge", "past-vocab",
                                                                                 "5000-digits"])
@pytest.mark.parametrize("with_text", [True, False], ids=["with-text", "ids-only"])
def test_out_of_range_completion_ids_fail_only_their_item(tiny_scorer, tokenization, ids, with_text):
    import dataclasses

    from workbench.rewards import RLTScorer

    scorer = RLTScorer(tiny_scorer.teacher, tiny_scorer.student, tiny_scorer.tokenizer,
                       dataclasses.replace(tiny_scorer.config, teacher_tokenization=tokenization))
    bad = {**GOOD, "completion_ids": ids, "id": "bad"}
    if not with_text:
        bad.pop("completion")
    res = scorer.score([bad, {**GOOD, "id": "good"}])
    assert res[1].ok, res[1].error
    if with_text and tokenization == "joint":  # the text is scored; the ids are unused (they may be another model's)
        assert res[0].ok, res[0].error
        return
    assert res[0].error and "'completion_ids'" in res[0].error and "out of range" in res[0].error, res[0].error
