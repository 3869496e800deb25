"""Recipes: one YAML file per training stage, whose keys are config fields, overridable as `key=value`.

A recipe is flat. Its keys are of three kinds, all checked (an unknown key is an error that names it):

- the workbench's own keys, the fields of `SFTRecipe` / `RLTRecipe` below (model, dataset, student, ...);
- two nested sections: `reward:` (fields of `workbench.rewards.RewardConfig`, RLT only) and `lora:` (fields of
  `peft.LoraConfig`; null or absent means full fine-tuning);
- every other key is a field of TRL's trainer config, `trl.SFTConfig` or `trl.GRPOConfig`, passed through as is
  (learning_rate, num_generations, beta, sync_ref_model, use_vllm, ...). Their help text is TRL's.

Overrides use the same names, dotted for the nested sections: `learning_rate=2e-5 reward.kl_coeffs=[3,0.03]
lora.r=8 lora=null`. Values are parsed as YAML and then converted to the field's type, so `1e-6` is a float.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import WorkbenchError
from ..models import DEFAULT_MODEL
from ..rewards import RewardConfig

STAGES = ("sft", "rlt")
# RewardConfig fields that a recipe sets at top level (they are shared with the prompts of the trainer's dataset).
_REWARD_TOP_LEVEL = ("tag_style", "teacher_system_prompt", "student_system_prompt")


@dataclass
class CommonRecipe:
    """Keys shared by every stage. Everything not listed here or in the subclasses goes to TRL's config."""

    stage: str = ""  # "sft" or "rlt": which `workbench train` verb the recipe is for
    model: str = DEFAULT_MODEL  # model to train: alias (smollm2-135m), local folder or hub id
    dataset: str = "builtin:arith"  # builtin:arith | builtin:demo | a .jsonl/.json/.parquet file | a hub dataset id
    dataset_split: str = "train"  # split of the dataset (builtin:arith has "train" and "heldout")
    max_samples: int | None = None  # use only the first N problems (after filtering)
    tag_style: str = "stratos"  # student thought tags: "stratos" or "r1"
    teacher_system_prompt: str | None = None  # the text itself; None: the project's default wording
    teacher_system_prompt_file: str | None = None  # or a UTF-8 file with it (e.g. the official prompt)
    student_system_prompt: str | None = None
    student_system_prompt_file: str | None = None
    dtype: str = "auto"  # weights of the trained model: auto | float32 | bfloat16 | float16 (auto: see README)
    lora: dict | None = None  # peft.LoraConfig fields, e.g. {r: 16, lora_alpha: 32, target_modules: all-linear}
    merge_lora: bool = True  # with LoRA, also save the merged model in output_dir (loadable by `workbench score`)


@dataclass
class SFTRecipe(CommonRecipe):
    """Supervised fine-tuning: the teacher warm-up (format=teacher) or a student (format=student)."""

    format: str = "teacher"  # teacher: solution first, explanation trained; student: thought then solution


@dataclass
class RLTRecipe(CommonRecipe):
    """GRPO on the teacher with the RLT reward."""

    student: str = DEFAULT_MODEL  # the frozen reward student: alias, local folder or hub id
    student_device: str = "auto"  # auto: the training device of each process; or cpu, cuda, cuda:1 ...
    student_offload: bool = False  # keep the student on the CPU; move it to the device only to score
    reward: dict = field(default_factory=dict)  # RewardConfig fields (tag_style and prompts are top-level keys)
    eval_dataset: str | None = None  # held-out problems scored before and after training; None: `dataset`
    eval_split: str | None = "heldout"  # None: no held-out evaluation
    eval_max_problems: int | None = 32
    eval_samples_per_problem: int = 2
    eval_before: bool = True  # sample + score the held-out problems with the initial teacher
    eval_after: bool = True  # and with the trained teacher
    eval_batch_size: int = 16  # prompts per generate() call in the held-out evaluation
    completions_log_steps: int = 1  # write sampled completions (with reward components) every N steps; 0: never
    completions_log_max: int | None = None  # at most N completions per logged step; None: all
    log_token_details: bool = False  # also write per-token log-probs of every logged completion (large)


RECIPE_CLASSES: dict[str, type[CommonRecipe]] = {"sft": SFTRecipe, "rlt": RLTRecipe}

# Defaults of TRL config fields that differ from TRL's own, for every stage (a recipe overrides them).
TRAINER_DEFAULTS: dict[str, Any] = {
    "logging_steps": 1,  # metrics.jsonl has one row per step
    "save_strategy": "steps",
    "save_steps": 50,
    "report_to": "auto",  # tensorboard when installed, else none
    "seed": 42,
}


@dataclass(frozen=True)
class _Range:
    """The numbers a key accepts: `low`/`high` bounds (open or closed), integers only, and a hint for the message."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    hint: str = ""

    def accepts(self, v: float) -> bool:
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        return not (self.high is not None and (v >= self.high if self.high_open else v > self.high))

    def describe(self) -> str:
        def num(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {num(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {num(self.high)}")
        return ("an integer " if self.integer else "") + " and ".join(parts)


_POSITIVE_INT = _Range(1, integer=True)
_FRACTION = _Range(0, 1)
# Numbers that cannot train (TRL and transformers accept most of them and fail later, after the models are loaded,
# or silently do something else). Keys absent from a stage's config never reach the check. None passes where the
# field's type allows it (`_coerce` already refused null elsewhere).
TRAINER_RANGES: dict[str, _Range] = {
    "per_device_train_batch_size": _POSITIVE_INT,
    "per_device_eval_batch_size": _POSITIVE_INT,
    "gradient_accumulation_steps": _POSITIVE_INT,
    "learning_rate": _Range(0, low_open=True),
    "num_train_epochs": _Range(0),  # > 0 when max_steps does not set the length: see _check_trainer
    "warmup_steps": _Range(0, hint=" (a count of steps, or a fraction of the run when < 1)"),
    "weight_decay": _Range(0),
    "adam_beta1": _Range(0, 1, high_open=True),
    "adam_beta2": _Range(0, 1, high_open=True),
    "adam_epsilon": _Range(0),
    "max_grad_norm": _Range(0, hint=" (0 turns gradient clipping off)"),
    "logging_steps": _Range(0, low_open=True, hint=" (a count of steps, or a fraction of the run when < 1)"),
    "save_steps": _Range(0, low_open=True, hint=" (a count of steps, or a fraction of the run when < 1)"),
    "eval_steps": _Range(0, low_open=True, hint=" (or null)"),
    "seed": _Range(0, 2**32 - 1, integer=True),
    "data_seed": _Range(0, 2**32 - 1, integer=True),
    "dataloader_num_workers": _Range(0, integer=True),
    "max_length": _Range(1, integer=True, hint=" (or null: no truncation)"),
    # GRPO
    "num_generations": _Range(2, integer=True, hint=" (GRPO compares the completions of a prompt with each other)"),
    "num_generations_eval": _POSITIVE_INT,
    "max_completion_length": _POSITIVE_INT,
    "generation_batch_size": _Range(1, integer=True, hint=" (or null)"),
    "steps_per_generation": _Range(1, integer=True, hint=" (or null)"),
    "temperature": _Range(0, low_open=True),
    "top_p": _Range(0, 1, low_open=True),
    "top_k": _Range(0, integer=True, hint=" (0: no top-k filtering)"),
    "min_p": _FRACTION,
    "repetition_penalty": _Range(0, low_open=True),
    "beta": _Range(0, hint=" (0: no KL term, no reference model)"),
    "num_iterations": _POSITIVE_INT,
    "epsilon": _Range(0),
    "epsilon_high": _Range(0),
    "ref_model_mixup_alpha": _FRACTION,
    "ref_model_sync_steps": _POSITIVE_INT,
    "vllm_gpu_memory_utilization": _Range(0, 1, low_open=True),
    "vllm_tensor_parallel_size": _POSITIVE_INT,
}
SPEC_RANGES: dict[str, _Range] = {  # the workbench's own keys (max_samples & co. keep their older checks)
    "eval_max_problems": _Range(1, integer=True, hint=" (or null: all)"),
    "eval_batch_size": _POSITIVE_INT,
    "completions_log_max": _Range(1, integer=True, hint=" (or null: all)"),
}
REWARD_RANGES: dict[str, _Range] = {  # reward.* (RewardConfig checks temperatures, reductions and names itself)
    "batch_size": _POSITIVE_INT,
    "max_batch_tokens": _POSITIVE_INT,
    "logit_chunk": _POSITIVE_INT,
    "max_length": _Range(1, integer=True, hint=" (or null: the model's context length)"),
    "student_temperature": _Range(0, low_open=True),
    "teacher_temperature": _Range(0, low_open=True),
}
LORA_RANGES: dict[str, _Range] = {
    "r": _POSITIVE_INT,
    "lora_alpha": _Range(0, low_open=True),
    "lora_dropout": _Range(0, 1, high_open=True),
}


def check_number(key: str, value: Any, rule: _Range | None = None) -> None:
    """Refuse NaN (and, for a ranged key, infinity) and values outside the key's range; the message names the key."""
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_number(f"{key}[{i}]", v, rule)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return  # null, text, mappings: typed elsewhere
    if isinstance(value, float) and (math.isnan(value) or (rule is not None and math.isinf(value))):
        raise WorkbenchError(f"recipe key {key!r} must be a finite number, got {value!r}")
    if rule is not None and not rule.accepts(value):
        raise WorkbenchError(f"recipe key {key!r} must be {rule.describe()}, got {value!r}{rule.hint}")


def _check_trainer(stage: str, trainer: dict[str, Any]) -> None:
    for key, value in trainer.items():
        check_number(key, value, TRAINER_RANGES.get(key))
    max_steps = trainer.get("max_steps", -1)
    if isinstance(max_steps, int) and max_steps != -1 and max_steps < 1:
        raise WorkbenchError(f"recipe key 'max_steps' must be >= 1 (the number of optimizer steps), or -1 to train "
                             f"for num_train_epochs; got {max_steps}")
    if isinstance(max_steps, int) and max_steps < 1:
        defaults = {f.name: f.default for f in dataclasses.fields(trl_config_class(stage))}
        epochs = trainer.get("num_train_epochs", defaults.get("num_train_epochs"))
        if isinstance(epochs, (int, float)) and epochs <= 0:
            raise WorkbenchError(f"recipe key 'num_train_epochs' must be > 0 when max_steps is -1 (the run's length "
                                 f"is then num_train_epochs), got {epochs}; or set max_steps")


def check_output_dir(path: str | Path) -> None:
    """Fail before any model is loaded when output_dir cannot be created or written (a file in the way, no rights)."""
    p = Path(os.path.expanduser(str(path)))
    shown = repr(str(path))
    try:
        if p.exists() and not p.is_dir():
            raise WorkbenchError(f"output_dir {shown} is a file; give a folder (it is created when missing)")
        probe = p.absolute()
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir():
            raise WorkbenchError(f"output_dir {shown} cannot be created: {probe} is not a folder; give another "
                                 "output_dir=...")
        writable = os.access(probe, os.W_OK | os.X_OK)
    except OSError as exc:
        raise WorkbenchError(f"output_dir {shown} cannot be checked ({exc.strerror or exc}); give another "
                             "output_dir=...") from None
    if not writable:
        where = "" if probe == p.absolute() else f" ({probe} does not let you create it)"
        raise WorkbenchError(f"output_dir {shown} is not writable{where}; give a folder you can write to: "
                             "output_dir=...")


def trl_config_class(stage: str):
    """trl.SFTConfig or trl.GRPOConfig."""
    if stage == "sft":
        from trl import SFTConfig

        return SFTConfig
    from trl import GRPOConfig

    return GRPOConfig


@dataclass
class Recipe:
    """A validated recipe: workbench fields, TRL kwargs, the RewardConfig (RLT) and LoRA settings."""

    stage: str
    spec: CommonRecipe
    trainer: dict[str, Any]
    reward: RewardConfig | None = None
    source: str | None = None

    def __getattr__(self, name: str):  # recipe.model, recipe.learning_rate ...
        spec = self.__dict__.get("spec")
        if spec is not None and hasattr(spec, name):
            return getattr(spec, name)
        trainer = self.__dict__.get("trainer", {})
        if name in trainer:
            return trainer[name]
        raise AttributeError(name)

    @property
    def output_dir(self) -> str:
        return self.trainer["output_dir"]

    def to_dict(self) -> dict:
        """The resolved recipe: loadable again with `load_recipe` (prompts are written out as text)."""
        d = dataclasses.asdict(self.spec)
        d["teacher_system_prompt_file"] = d["student_system_prompt_file"] = None  # their text is inlined below
        if self.reward is not None:
            r = dataclasses.asdict(self.reward)
            for k in _REWARD_TOP_LEVEL:
                r.pop(k)
            d["reward"] = r
        d.update({k: _plain(v) for k, v in self.trainer.items() if k != "resume_from_checkpoint"})
        return d

    def to_yaml(self) -> str:
        head = f"# resolved recipe (stage {self.stage})" + (f", from {self.source}" if self.source else "") + "\n"
        return head + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=110)


def _plain(v):
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, Path):
        return str(v)
    return v


# ---------------------------------------------------------------------------------------------- type coercion


def _type_args(hint) -> tuple:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _coerce(key: str, value: Any, hint) -> Any:
    """Convert a YAML/CLI value to the declared type of `key` where the conversion is unambiguous."""
    if hint is None or hint is Any:
        return value
    options = _type_args(hint)
    if value is None:
        if type(None) in options or any(o is Any for o in options):
            return None
        raise WorkbenchError(f"recipe key {key!r} cannot be null (expected {_type_name(hint)})")
    bases = [typing.get_origin(o) or o for o in options]
    if isinstance(value, bool):
        if bool in bases or any(b in (str, Any) or (isinstance(b, type) and issubclass(b, enum.Enum)) for b in bases):
            return value
        raise WorkbenchError(f"recipe key {key!r} expects {_type_name(hint)}, got {value!r}")
    if isinstance(value, str):
        if bool in bases and str not in bases and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        for t in (int, float):
            if t in bases and str not in bases:
                try:
                    num = float(value)
                except ValueError:
                    continue
                if t is int and not num.is_integer():
                    continue
                return int(num) if t is int else num
        if str in bases or any(isinstance(b, type) and issubclass(b, enum.Enum) for b in bases) or Any in bases:
            return value
        if dict in bases or list in bases:
            return value  # TRL accepts JSON strings for dict fields
        raise WorkbenchError(f"recipe key {key!r} expects {_type_name(hint)}, got the string {value!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        if int in bases:
            return value
        if float in bases:
            return float(value)
        if str in bases:
            return str(value)
        raise WorkbenchError(f"recipe key {key!r} expects {_type_name(hint)}, got {value!r}")
    if isinstance(value, float):
        if float in bases:
            return value
        if int in bases and value.is_integer():
            return int(value)
        raise WorkbenchError(f"recipe key {key!r} expects {_type_name(hint)}, got {value!r}")
    if isinstance(value, list):
        for o in options:
            if (typing.get_origin(o) or o) is list:
                (elem,) = typing.get_args(o) or (Any,)
                return [_coerce(f"{key}[{i}]", v, elem) for i, v in enumerate(value)]
        if Any in bases or str in bases and key == "report_to":
            return value
        raise WorkbenchError(f"recipe key {key!r} expects {_type_name(hint)}, got a list")
    if isinstance(value, dict):
        if dict in bases or Any in bases:
            return value
        raise WorkbenchError(f"recipe key {key!r} expects {_type_name(hint)}, got a mapping")
    return value


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


@functools.cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _init_fields(cls) -> dict[str, Any]:
    hints = _hints(cls)
    return {f.name: hints.get(f.name) for f in dataclasses.fields(cls) if f.init}


def _lora_fields() -> dict[str, Any]:
    from peft import LoraConfig

    return _init_fields(LoraConfig)


def _unknown(key: str, valid, where: str) -> WorkbenchError:
    close = difflib.get_close_matches(key, list(valid), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return WorkbenchError(f"unknown recipe key {key!r} {where}{hint}")


# ---------------------------------------------------------------------------------------------- loading


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`["a=1", "reward.kl_coeffs=[3,0.03]"]` -> {"a": 1, "reward.kl_coeffs": [3, 0.03]} (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise WorkbenchError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise WorkbenchError(f"override {item!r} has an empty key")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key] = raw
    return out


def read_recipe_file(path: str | Path) -> dict:
    """A recipe's keys; a relative path is looked up from here, then in the repository (recipes/cpu/...)."""
    from ..io import REPO_ROOT, repo_path

    p = repo_path(path)
    if not p.is_file():
        raise WorkbenchError(f"recipe {str(path)!r} does not exist (looked in {Path.cwd()}"
                             + ("" if Path(path).is_absolute() else f" and {REPO_ROOT}") + "); the shipped ones are "
                             "recipes/cpu/*.yaml and recipes/paper/*.yaml")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise WorkbenchError(f"recipe {p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WorkbenchError(f"recipe {p}: expected a mapping of keys to values at the top level")
    return data


def load_recipe(path: str | Path | None = None, overrides: list[str] | dict | None = None,
                stage: str | None = None, data: dict | None = None) -> Recipe:
    """Read a recipe file (or `data`), apply `key=value` overrides, check every key, fill defaults."""
    raw = dict(data or {})
    if path is not None:
        raw = read_recipe_file(path)
    ov = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    file_stage = raw.get("stage")
    stage = stage or ov.get("stage") or file_stage
    if stage not in STAGES:
        raise WorkbenchError(f"recipe stage must be one of {STAGES} (set `stage:` in the recipe), got {stage!r}")
    if file_stage not in (None, stage):
        raise WorkbenchError(f"recipe {path} is for stage {file_stage!r}; use `workbench train {file_stage}`")
    raw["stage"] = stage
    for key, value in ov.items():  # dotted keys go into their section
        if "." in key:
            section, sub = key.split(".", 1)
            if section not in ("reward", "lora"):
                raise _unknown(key, ["reward.<field>", "lora.<field>"], "(only reward.* and lora.* can be dotted)")
            current = raw.get(section)
            if not isinstance(current, dict):
                current = {}
            raw[section] = {**current, sub: value}
        else:
            raw[key] = value
    return build_recipe(stage, raw, source=str(path) if path else None)


def build_recipe(stage: str, raw: dict, source: str | None = None) -> Recipe:
    cls = RECIPE_CLASSES[stage]
    own = _init_fields(cls)
    trl_cls = trl_config_class(stage)
    trl_fields = _init_fields(trl_cls)
    spec_kwargs: dict[str, Any] = {}
    trainer: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise WorkbenchError(f"recipe keys must be strings, got {key!r}")
        if key in own:
            spec_kwargs[key] = _coerce(key, value, own[key])
        elif key in trl_fields:
            if key.endswith("_strategy") and value is False:  # YAML reads a bare `no` as false: save_strategy=no
                value = "no"
            trainer[key] = _coerce(key, value, trl_fields[key])
        else:
            extra = ""
            if stage == "sft" and key in _init_fields(RLTRecipe):
                extra = " (it belongs to RLT recipes)"
            err = _unknown(key, list(own) + list(trl_fields), f"for stage {stage!r}{extra}")
            raise err
    spec = cls(**spec_kwargs)
    _check_spec(spec)
    for k, v in TRAINER_DEFAULTS.items():
        trainer.setdefault(k, v)
    trainer.setdefault("output_dir", f"outputs/{stage}")
    _check_trainer(stage, trainer)
    reward = None
    if isinstance(spec, RLTRecipe):
        reward = _build_reward(spec)
        temp = trainer.get("temperature", 1.0)
        trainer["temperature"] = temp
        t_t = spec.reward.get("teacher_temperature")
        if t_t is None:
            reward.teacher_temperature = temp
        elif abs(float(t_t) - float(temp)) > 1e-9:
            raise WorkbenchError(
                f"reward.teacher_temperature ({t_t}) differs from temperature ({temp}): the teacher is the policy, "
                "and its log-probs in the reward must use its sampling temperature (TRL computes the policy's "
                "log-probs at `temperature` too). Set them equal, or leave reward.teacher_temperature out."
            )
    if spec.lora is not None and trainer.get("sync_ref_model"):
        raise WorkbenchError("TRL cannot soft-sync the reference model of a LoRA run: pass sync_ref_model=false (the "
                             "reference is then the base model, adapters disabled) or lora=null")
    if spec.lora is not None:
        lora_fields = _lora_fields()
        for k, v in spec.lora.items():
            if k not in lora_fields:
                raise _unknown(f"lora.{k}", [f"lora.{f}" for f in lora_fields], "(not a peft.LoraConfig field)")
            spec.lora[k] = _coerce(f"lora.{k}", v, lora_fields[k])
            check_number(f"lora.{k}", spec.lora[k], LORA_RANGES.get(k))
    return Recipe(stage=stage, spec=spec, trainer=trainer, reward=reward, source=source)


def _check_spec(spec: CommonRecipe) -> None:
    from .. import formats

    formats.get_tags(spec.tag_style)
    if spec.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise WorkbenchError(f"dtype must be auto, float32, bfloat16 or float16, got {spec.dtype!r}")
    if isinstance(spec, SFTRecipe) and spec.format not in ("teacher", "student"):
        raise WorkbenchError(f"format must be 'teacher' or 'student', got {spec.format!r}")
    if spec.max_samples is not None and spec.max_samples < 1:
        raise WorkbenchError("max_samples must be >= 1 (or null for all)")
    for which in ("teacher", "student"):
        text, file = getattr(spec, f"{which}_system_prompt"), getattr(spec, f"{which}_system_prompt_file")
        if text is not None and file is not None:
            raise WorkbenchError(f"set {which}_system_prompt or {which}_system_prompt_file, not both")
        if file is not None:  # a path, or `cache:REL` under the workbench cache (the fetched official prompts)
            from .. import prompts

            try:
                text = prompts.load_prompt_file(file)
            except WorkbenchError as exc:
                raise WorkbenchError(f"recipe key '{which}_system_prompt_file': {exc}") from None
            setattr(spec, f"{which}_system_prompt", text)
            setattr(spec, f"{which}_system_prompt_file", None)
        if getattr(spec, f"{which}_system_prompt") is None:  # write the default text out: prompts are part of results
            default = getattr(formats, f"default_{which}_system_prompt")(formats.get_tags(spec.tag_style))
            setattr(spec, f"{which}_system_prompt", default)
    if isinstance(spec, RLTRecipe):
        if spec.eval_samples_per_problem < 1:
            raise WorkbenchError("eval_samples_per_problem must be >= 1")
        if spec.completions_log_steps < 0:
            raise WorkbenchError("completions_log_steps must be >= 0")
    for key, rule in SPEC_RANGES.items():
        if hasattr(spec, key):
            check_number(key, getattr(spec, key), rule)


def reward_config(recipe: str | Path | None = None, overrides: dict | None = None) -> RewardConfig:
    """The one reward configuration of every entry point (score, rank, demo, the app, training).

    `recipe`: a recipe file or a run's saved `recipe.yaml`; its `reward:` section, `tag_style` and system prompts
    (text or `*_system_prompt_file`) are read and every other key is ignored, so any RLT recipe or run folder works.
    `overrides`: {field: value} on top (the flags generated from RewardConfig, or `reward.key=value`; the keys may
    carry the `reward.` prefix). Values are checked as a recipe's are; an unknown field is named with suggestions.
    """
    raw: dict = {}
    if recipe is not None:
        raw = read_recipe_file(Path(recipe) / "recipe.yaml" if Path(recipe).is_dir() else recipe)
        if not isinstance(raw.get("reward") or {}, dict):
            raise WorkbenchError(f"recipe {recipe}: `reward:` must be a mapping of RewardConfig fields")
    fields = _init_fields(RewardConfig)
    section = dict(raw.get("reward") or {})
    for k in _REWARD_TOP_LEVEL:
        if raw.get(k) is not None:
            section[k] = raw[k]
    for which in ("teacher", "student"):
        ref = raw.get(f"{which}_system_prompt_file")
        if ref and raw.get(f"{which}_system_prompt") is None:
            from .. import prompts

            try:
                section[f"{which}_system_prompt"] = prompts.load_prompt_file(ref)
            except WorkbenchError as exc:
                raise WorkbenchError(f"recipe {recipe}, key '{which}_system_prompt_file': {exc}") from None
    if "teacher_temperature" not in section and raw.get("temperature") is not None:
        section["teacher_temperature"] = raw["temperature"]  # as training does: the teacher is the sampling policy
    for k, v in (overrides or {}).items():
        section[k.removeprefix("reward.")] = v
    kwargs = {}
    for k, v in section.items():
        if k not in fields:
            raise _unknown(f"reward.{k}", [f"reward.{f}" for f in fields], "(not a RewardConfig field)")
        kwargs[k] = _coerce(f"reward.{k}", v, fields[k])
        check_number(f"reward.{k}", kwargs[k], REWARD_RANGES.get(k))
    return RewardConfig(**kwargs)


def _build_reward(spec: RLTRecipe) -> RewardConfig:
    fields = _init_fields(RewardConfig)
    kwargs = {}
    for k, v in (spec.reward or {}).items():
        if k in _REWARD_TOP_LEVEL:
            raise WorkbenchError(f"set {k!r} at the top level of the recipe, not under reward: (the trainer's prompts use it too)")
        if k not in fields:
            raise _unknown(f"reward.{k}", [f"reward.{f}" for f in fields], "(not a RewardConfig field)")
        kwargs[k] = _coerce(f"reward.{k}", v, fields[k])
        check_number(f"reward.{k}", kwargs[k], REWARD_RANGES.get(k))
    kwargs.update(tag_style=spec.tag_style, teacher_system_prompt=spec.teacher_system_prompt,
                  student_system_prompt=spec.student_system_prompt)
    return RewardConfig(**kwargs)


# ---------------------------------------------------------------------------------------------- TRL config


def resolve_report_to(value):
    """"auto": TensorBoard when it is installed (logs under output_dir/runs), else no tracker."""
    if value != "auto":
        return value
    import importlib.util

    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        return ["tensorboard"]
    return "none"


def make_trl_config(recipe: Recipe, validate_only: bool = False):
    """Build trl.SFTConfig / trl.GRPOConfig from the recipe. With validate_only, hardware checks are relaxed.

    On a machine without CUDA, `fp16: true` is rejected; validate_only checks everything else by building the config
    with fp16 off. `bf16: true` on a CPU trains with bf16 autocast.
    """
    import torch

    check_output_dir(recipe.output_dir)
    kwargs = {k: v for k, v in recipe.trainer.items() if k != "resume_from_checkpoint"}
    kwargs["report_to"] = resolve_report_to(kwargs.get("report_to", "auto"))
    has_cuda = torch.cuda.is_available()
    if kwargs.get("bf16") is None and not kwargs.get("fp16"):
        kwargs["bf16"] = bool(has_cuda and torch.cuda.is_bf16_supported())
    # bf16 on a CPU is autocast (fp32 master weights, bf16 matmuls): 2-3x faster where the CPU has AMX or AVX512-BF16
    # (benchmarks/cpu_levers.py). fp16 autocast has no fast CPU kernels and needs a loss scaler: GPU only.
    if not has_cuda and kwargs.get("fp16"):
        if validate_only:
            kwargs["fp16"] = False
        else:
            raise WorkbenchError("fp16 needs a GPU; on a CPU pass fp16=false (bf16=true autocasts to bf16 on a CPU)")
    if not has_cuda and kwargs.get("bf16"):
        kwargs.setdefault("use_cpu", True)  # transformers accepts bf16 without a GPU only when told it runs on the CPU
    if not has_cuda and kwargs.get("tf32"):
        if validate_only:
            kwargs["tf32"] = None
        else:
            raise WorkbenchError("tf32 needs an NVIDIA GPU; on a CPU pass tf32=null")
    if kwargs.get("use_vllm") and not validate_only:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            where = "'.[gpu]'" if has_cuda else "'.[cpu]' (vLLM's CPU build, Linux x86-64)"
            raise WorkbenchError(f"use_vllm=true needs vLLM: pip install -e {where} (or pass use_vllm=false)")
        if not has_cuda and kwargs.get("vllm_mode", "colocate") == "server":
            # trl/generation/vllm_client.py (VLLMClient.init_communicator, called when the trainer starts): the
            # weight push to a server runs on vLLM's NCCL weight-transfer engine and needs a CUDA trainer device.
            raise WorkbenchError("vllm_mode=server needs a GPU: TRL pushes the trainer's weights to the vLLM server "
                                 "over NCCL. On a CPU use vllm_mode=colocate (vLLM's CPU build) or use_vllm=false")
    cls = trl_config_class(recipe.stage)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise WorkbenchError(f"invalid trainer settings in the recipe: {exc}") from None


def validate_recipe(path: str | Path, overrides: list[str] | None = None, stage: str | None = None) -> Recipe:
    """Load a recipe and build its TRL config without training (what `workbench train ... --dry-run` does)."""
    recipe = load_recipe(path, overrides, stage)
    make_trl_config(recipe, validate_only=True)
    return recipe


__all__ = ["SFTRecipe", "RLTRecipe", "Recipe", "load_recipe", "parse_overrides", "make_trl_config",
           "validate_recipe", "check_output_dir", "check_number", "TRAINER_DEFAULTS", "STAGES"]
