"""Recipes: loading, overrides, validation (unknown keys, types, stages), the shipped recipes and problem set."""

import json
from pathlib import Path

import pytest
import yaml

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.training import datasets as tds
from workbench.training.config import load_recipe, make_trl_config, parse_overrides, validate_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SHIPPED = sorted((RECIPES / "cpu").glob("*.yaml")) + sorted((RECIPES / "paper").glob("*.yaml"))


@pytest.fixture
def official_prompts(tmp_path, monkeypatch):
    """Stand-ins for the fetched official prompts (the paper recipes read them from the cache): synthetic texts,
    installed as `workbench prompts fetch` does, with the recorded checksums patched to theirs. The paper recipes stop
    when the prompts are missing (`--dry-run` too: a dry run says whether the recipe would run); tests/test_prompts.py
    checks that, and the fetch itself."""
    import dataclasses

    from workbench import prompts

    texts = {"teacher": "Teacher stand-in, ending with a space like the official one. ", "student": "Student stand-in:"}
    monkeypatch.setenv("RLT_WORKBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(prompts, "SOURCES", {w: dataclasses.replace(s, sha256=prompts.sha256_text(texts[w]))
                                             for w, s in prompts.SOURCES.items()})
    prompts.install_prompts(texts, source="tests")
    return texts


def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_recipes_validate(path, official_prompts):
    stage = yaml.safe_load(path.read_text())["stage"]
    recipe = validate_recipe(path)
    assert recipe.stage == stage
    assert recipe.trainer["logging_steps"] == 1  # one metrics row per step
    # the resolved recipe loads again to the same thing
    again = load_recipe(data=yaml.safe_load(recipe.to_yaml()), stage=stage)
    assert again.to_dict() == recipe.to_dict()


def test_expected_recipe_files_exist():
    for name in ("cpu/teacher_sft.yaml", "cpu/teacher_rlt.yaml", "paper/teacher_sft.yaml", "paper/teacher_rlt.yaml",
                 "paper/student_distill.yaml", "accelerate/zero3.yaml", "accelerate/zero3_offload.yaml",
                 "accelerate/multi_gpu.yaml", "README.md"):
        assert (RECIPES / name).is_file(), name


def test_paper_rlt_recipe_has_the_papers_numbers(official_prompts):
    r = validate_recipe(RECIPES / "paper" / "teacher_rlt.yaml")
    t = r.trainer
    assert t["num_generations"] == 64 and t["learning_rate"] == 1e-6 and t["beta"] == 0.04
    assert t["sync_ref_model"] and t["ref_model_mixup_alpha"] == 0.9 and t["ref_model_sync_steps"] == 32
    assert t["max_steps"] == 125 and t["temperature"] == 0.7 and t["max_completion_length"] == 16384
    assert t["per_device_train_batch_size"] * t["gradient_accumulation_steps"] * 4 == 1024  # 4 training GPUs
    assert r.reward.teacher_temperature == 0.7 and r.reward.student_temperature == 0.7
    assert r.reward.solution_coeffs == [1.0, 0.01] and r.reward.kl_coeffs == [3.0, 0.03]
    assert r.spec.student == "bespokelabs/Bespoke-Stratos-7B" and r.spec.student_offload
    sft = validate_recipe(RECIPES / "paper" / "teacher_sft.yaml")
    assert sft.trainer["num_train_epochs"] == 10 and sft.trainer["learning_rate"] == 1e-5
    assert sft.trainer["max_length"] == 16384 and sft.spec.model == "Qwen/Qwen2.5-7B-Instruct"


def test_paper_recipes_match_the_official_run(official_prompts):
    """Prompts, IS correction, tf32 and ddp_timeout against the official Hydra configs (commit 86a3f5c)."""
    rlt = validate_recipe(RECIPES / "paper" / "teacher_rlt.yaml")
    t = rlt.trainer
    assert t["use_vllm"] and t["vllm_importance_sampling_correction"] is False  # the official GRPO has none
    assert make_trl_config(rlt, validate_only=True).vllm_importance_sampling_correction is False
    assert t["tf32"] is True and t["ddp_timeout"] == 18000  # cfgs/trainer_cfg/base.yaml
    # both official prompts: the RL prompts and the reward's teacher term, the reward student's chat
    assert rlt.spec.teacher_system_prompt == rlt.reward.teacher_system_prompt == official_prompts["teacher"]
    assert rlt.spec.student_system_prompt == rlt.reward.student_system_prompt == official_prompts["student"]
    raw = yaml.safe_load((RECIPES / "paper" / "teacher_rlt.yaml").read_text())
    assert raw["teacher_system_prompt_file"] == "cache:prompts/rlt-official/teacher_system_prompt.txt"
    assert raw["student_system_prompt_file"] == "cache:prompts/rlt-official/student_system_prompt.txt"
    sft = validate_recipe(RECIPES / "paper" / "teacher_sft.yaml")
    assert sft.spec.teacher_system_prompt == official_prompts["teacher"]  # the trailing space kept
    assert sft.trainer["tf32"] is True and sft.trainer["ddp_timeout"] == 18000
    distill = validate_recipe(RECIPES / "paper" / "student_distill.yaml")
    assert distill.spec.student_system_prompt == official_prompts["student"]
    assert distill.trainer["tf32"] is True and distill.trainer["ddp_timeout"] == 18000


@pytest.mark.parametrize("name", ["zero3.yaml", "zero3_offload.yaml", "multi_gpu.yaml"])
def test_accelerate_configs(name):
    cfg = yaml.safe_load((RECIPES / "accelerate" / name).read_text())
    assert cfg["distributed_type"] in ("DEEPSPEED", "MULTI_GPU")
    assert cfg["mixed_precision"] == "bf16"
    if cfg["distributed_type"] == "DEEPSPEED":
        assert cfg["deepspeed_config"]["zero_stage"] == 3


def test_overrides_are_typed_and_dotted():
    ov = parse_overrides(["learning_rate=2e-5", "reward.kl_coeffs=[3, 0.03]", "lora.r=8", "max_steps=7",
                          "report_to=none", "beta=0", "sync_ref_model=false"])
    assert ov["learning_rate"] == "2e-5"  # YAML 1.1 reads it as text; the loader converts it
    r = load_recipe(RECIPES / "cpu" / "teacher_rlt.yaml", ov)
    assert r.trainer["learning_rate"] == 2e-5 and isinstance(r.trainer["learning_rate"], float)
    assert r.reward.kl_coeffs == [3.0, 0.03]
    assert r.spec.lora == {"r": 8}
    assert r.trainer["max_steps"] == 7 and r.trainer["beta"] == 0.0
    r = load_recipe(RECIPES / "cpu" / "teacher_rlt.yaml", ["lora={r: 4, lora_alpha: 8}", "sync_ref_model=false"])
    assert r.spec.lora == {"r": 4, "lora_alpha": 8}
    assert load_recipe(RECIPES / "cpu" / "teacher_rlt.yaml", ["lora=null"]).spec.lora is None


def test_yaml_exponent_floats(tmp_path):
    r = load_recipe(_write(tmp_path, "stage: sft\nlearning_rate: 1e-6\nweight_decay: 1e-4\nbf16: false\n"))
    assert r.trainer["learning_rate"] == 1e-6 and r.trainer["weight_decay"] == 1e-4


def test_bare_no_is_a_strategy_not_false(tmp_path):  # YAML 1.1 reads `no` as false
    r = load_recipe(_write(tmp_path, "stage: sft\nsave_strategy: no\n"), ["eval_strategy=no"])
    assert r.trainer["save_strategy"] == "no" and r.trainer["eval_strategy"] == "no"
    assert make_trl_config(r).save_strategy == "no"


@pytest.mark.parametrize("text,override,needle", [
    ("stage: rlt\nlerning_rate: 1.0e-5\n", None, "'lerning_rate'"),
    ("stage: rlt\n", ["num_generatons=4"], "'num_generatons'"),
    ("stage: rlt\nreward:\n  kl_coef: [3]\n", None, "'reward.kl_coef'"),
    ("stage: rlt\n", ["reward.nope=1"], "'reward.nope'"),
    ("stage: sft\nlora:\n  rank: 8\n", None, "'lora.rank'"),
    ("stage: sft\nstudent: smollm2-135m\n", None, "'student'"),
    ("stage: sft\n", ["trainer.x=1"], "'trainer.x'"),
])
def test_unknown_keys_are_named(tmp_path, text, override, needle):
    with pytest.raises(WorkbenchError, match="unknown recipe key") as exc:
        load_recipe(_write(tmp_path, text), override)
    assert needle in str(exc.value)


def test_typo_gets_a_suggestion(tmp_path):
    with pytest.raises(WorkbenchError, match="did you mean 'learning_rate'"):
        load_recipe(_write(tmp_path, "stage: rlt\nlerning_rate: 1.0e-5\n"))


@pytest.mark.parametrize("override,needle", [
    (["max_steps=abc"], "max_steps"),
    (["num_generations=2.5"], "num_generations"),
    (["reward.kl_coeffs=3"], "reward.kl_coeffs"),
    (["format=teachr"], "format"),
])
def test_bad_values(tmp_path, override, needle):
    stage = "sft" if override[0].startswith("format") else "rlt"
    with pytest.raises(WorkbenchError, match=needle):
        load_recipe(_write(tmp_path, f"stage: {stage}\n"), override)


def test_stage_mismatch_and_missing(tmp_path):
    with pytest.raises(WorkbenchError, match="workbench train sft"):
        load_recipe(RECIPES / "cpu" / "teacher_sft.yaml", stage="rlt")
    with pytest.raises(WorkbenchError, match="stage"):
        load_recipe(_write(tmp_path, "learning_rate: 1.0e-5\n"))
    with pytest.raises(WorkbenchError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(WorkbenchError, match="not key=value"):
        parse_overrides(["max_steps"])


def test_teacher_temperature_follows_sampling_temperature(tmp_path):
    r = load_recipe(_write(tmp_path, "stage: rlt\ntemperature: 0.6\n"))
    assert r.reward.teacher_temperature == 0.6 and r.trainer["temperature"] == 0.6
    with pytest.raises(WorkbenchError, match="teacher_temperature"):
        load_recipe(_write(tmp_path, "stage: rlt\ntemperature: 0.7\nreward:\n  teacher_temperature: 1.0\n"))


def test_prompt_files_and_defaults_are_written_out(tmp_path):
    prompt = tmp_path / "teacher.txt"
    prompt.write_text("Explain the solution.\n", encoding="utf-8")
    r = load_recipe(_write(tmp_path, f"stage: rlt\nteacher_system_prompt_file: {prompt}\n"))
    assert r.reward.teacher_system_prompt == "Explain the solution."
    d = r.to_dict()
    assert d["teacher_system_prompt"] == "Explain the solution." and d["teacher_system_prompt_file"] is None
    assert d["student_system_prompt"]  # the default wording, written out
    with pytest.raises(WorkbenchError, match="top level"):
        load_recipe(_write(tmp_path, "stage: rlt\nreward:\n  tag_style: r1\n"))


def test_lora_with_ref_sync_is_refused(tmp_path):
    with pytest.raises(WorkbenchError, match="sync_ref_model=false"):
        load_recipe(RECIPES / "cpu" / "teacher_rlt.yaml", ["lora={r: 8}", "sync_ref_model=true"])


def test_cpu_run_takes_bf16_autocast_and_refuses_fp16(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA machine")
    r = load_recipe(RECIPES / "cpu" / "teacher_rlt.yaml", ["bf16=true", f"output_dir={tmp_path / 'a'}"])
    assert make_trl_config(r).bf16 is True  # bf16 autocast on a CPU (fp32 master weights)
    r = load_recipe(RECIPES / "cpu" / "teacher_rlt.yaml", ["fp16=true", f"output_dir={tmp_path / 'b'}"])
    with pytest.raises(WorkbenchError, match="fp16"):
        make_trl_config(r)
    make_trl_config(r, validate_only=True)  # --dry-run still checks the rest


def test_cli_dry_run_and_errors(tmp_path, capsys):
    assert main(["train", "rlt", "--recipe", str(RECIPES / "cpu" / "teacher_rlt.yaml"), "--dry-run",
                 "max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert "max_steps: 3" in out and "kl_coeffs" in out
    assert main(["train", "sft", "--recipe", str(RECIPES / "cpu" / "teacher_rlt.yaml"), "--dry-run"]) == 2
    assert "workbench train rlt" in capsys.readouterr().err
    assert main(["train", "rlt", "--recipe", str(RECIPES / "cpu" / "teacher_rlt.yaml"), "--dry-run",
                 "bogus_key=1"]) == 2
    assert "'bogus_key'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- data


def test_builtin_problems_are_reproducible_and_split():
    from workbench.training import problems

    assert problems.main(["--check"]) == 0
    train, held = problems.load_train_problems("train"), problems.load_train_problems("heldout")
    assert len(train) == problems.N_PROBLEMS - problems.N_HELDOUT and len(held) == problems.N_HELDOUT
    assert not {p["question"] for p in train} & {p["question"] for p in held}
    for p in train[:50]:
        assert p["solution"].rstrip().endswith("}") and "\\boxed{" in p["solution"] and p["reasoning_trace"]
    test = tds.load_problems("builtin:arith", "test")  # generated, not shipped: same every time, disjoint, all topics
    assert len(test) == problems.N_TEST and test == tds.load_problems("builtin:arith", "test")
    assert not {p["question"] for p in test} & {p["question"] for p in train + held}
    assert len({p["question"] for p in test}) == len(test)
    assert {p["topic"] for p in problems.make_test_problems()} == set(problems.KINDS)


def test_normalize_rows():
    stratos = {"system": "x", "conversations": [
        {"from": "user", "value": "What is 2+2?"},
        {"from": "assistant", "value": "<|begin_of_thought|>\n\nTwo plus two.\n\n<|end_of_thought|>\n\n"
                                       "<|begin_of_solution|>\n\n4\n\n<|end_of_solution|>"}]}
    p = tds.normalize_row(stratos, 0)
    assert p["question"] == "What is 2+2?" and p["solution"] == "\n\n4\n\n"
    assert p["reasoning_trace"] == "Two plus two.\n\n"  # one leading "\n\n" is the prompt's padding
    p = tds.normalize_row({"prompt": "Q?", "solution": "S", "reasoning_trace": "no padding"}, 3)
    assert (p["question"], p["reasoning_trace"], p["id"]) == ("Q?", "no padding", 3)
    p = tds.normalize_row({"question": "Q?", "solution": "S", "completion": "Body.<|end_of_explanation|>junk"}, 0)
    assert p["reasoning_trace"] == "Body."
    with pytest.raises(WorkbenchError, match="column 'solution': is empty"):
        tds.normalize_row({"question": "Q?", "solution": "  "}, 0)


def test_load_problems_from_file(tmp_path):
    f = tmp_path / "data.jsonl"
    rows = [{"question": f"q{i}", "solution": f"s{i}", "reasoning_trace": f"t{i}"} for i in range(5)]
    rows.append({"question": "no solution"})
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    got = tds.load_problems(str(f), max_samples=3, need_trace=True)
    assert [p["question"] for p in got] == ["q0", "q1", "q2"]
    assert len(tds.load_problems(str(f))) == 5  # the bad row is skipped
    with pytest.raises(WorkbenchError, match="unknown dataset"):
        tds.load_problems("no-such-thing")
    assert len(tds.load_problems("builtin:demo")) == 14


def test_shipped_recipes_load_from_any_folder(tmp_path, monkeypatch):
    """A notebook's kernel starts in notebooks/ and a user may train from anywhere: `recipes/...` is the repository's."""
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe("recipes/cpu/teacher_sft.yaml", stage="sft")
    assert recipe.spec.model == "smollm2-135m"
    with pytest.raises(WorkbenchError, match=r"recipe 'recipes/cpu/nope.yaml' does not exist \(looked in"):
        load_recipe("recipes/cpu/nope.yaml", stage="sft")
    (tmp_path / "recipes" / "cpu").mkdir(parents=True)  # a user's own file of the same name wins
    (tmp_path / "recipes" / "cpu" / "teacher_sft.yaml").write_text("stage: sft\nmodel: my-model\n")
    assert load_recipe("recipes/cpu/teacher_sft.yaml", stage="sft").spec.model == "my-model"


def test_one_reward_configuration_for_every_entry_point(tmp_path):
    """score/rank/demo: defaults < the recipe's (or a run's) reward < generated flags and reward.key=value."""
    import dataclasses

    from workbench.cli import build_parser, reward_config_from_args
    from workbench.rewards import RewardConfig

    def config(*argv):
        return reward_config_from_args(build_parser().parse_args(["score", "--input", "i", "--output", "o", *argv]))

    assert config() == RewardConfig()
    run = config("--recipe", "results/cpu/teacher_rlt")  # a training run's folder: its recipe.yaml
    assert (run.teacher_tokenization, run.trailing_text_penalty) == ("generated", -1.0)
    assert run.teacher_system_prompt.startswith("You are a teacher.")
    got = config("--recipe", "recipes/cpu/teacher_rlt.yaml", "--kl-coeffs", "1", "0.1", "--no-teacher-entropy",
                 "reward.batch_size=2", "--teacher-tokenization", "joint")
    assert (got.kl_coeffs, got.teacher_entropy, got.batch_size, got.teacher_tokenization) == ([1.0, 0.1], False, 2, "joint")
    assert got.trailing_text_penalty == -1.0  # from the recipe
    parser = build_parser()
    for f in dataclasses.fields(RewardConfig):  # every field is a flag (the prompts come as files)
        if f.name.endswith("system_prompt"):
            continue
        assert f"--{f.name.replace('_', '-')}" in parser._subparsers._group_actions[0].choices["score"].format_help()
    with pytest.raises(WorkbenchError, match="did you mean 'reward.kl_coeffs'"):
        config("reward.kl_coef=[1,2]")
    with pytest.raises(WorkbenchError, match="reward.batch_size' must be an integer >= 1"):
        config("--batch-size", "0")
