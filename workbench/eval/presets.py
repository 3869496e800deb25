"""Evaluation presets: prompt templates and sampling settings.

`skythought` reproduces SkyThought at commit 4bb8f3e, the harness RLT's numbers come from
(`../shared/rlt-method.md` section 5): the user message is "Return your final response within \\boxed{}. "
followed by the problem (GPQA also asks for the letter only), rendered with the model's own chat template; GPQA
options shuffled with seed 41 (`benchmarks.gpqa_options`); the system message SkyThought's model table gives the
model id (Qwen2.5 instruct models: a one-line "think step-by-step" prompt; Sky-T1: the Sky-T1 prompt), and none
for models it does not list: the Bespoke-Stratos students and any local folder (give one with
`--system-prompt-file`). The sampling (greedy: temperature 0, top_p 1; 32,768 new tokens; one sample, pass@1) is
SkyThought 4bb8f3e's default (`SAMPLING_PARAMS_DEFAULT` in its cli.py): RLT names the harness, and we assume it ran
with these defaults; the paper's own decoding settings are not checked here. The other presets keep the prompts
and change the sampling.

Countdown is not a SkyThought task: every preset uses the workbench's countdown template for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..errors import WorkbenchError

# SkyThought's `templating_parameters.template` for its aime24/math500 and gpqa_diamond tasks (Python format
# strings there, with the braces of \boxed{} doubled); `{problem}` is the benchmark's question.
SKYTHOUGHT_TEMPLATES = {
    "math": "Return your final response within \\boxed{{}}. {problem}",
    "gpqa": "Return your final response within \\boxed{{}} and only include the letter choice (A, B, C, or D) "
            "as your final response. {problem}",
    "countdown": "{problem} Put the expression alone inside \\boxed{{}}.",
}


# SkyThought chose the system message by model id: `skythought/evals/models/model_configs.yaml` at 4bb8f3e (the same
# file is in the PyPI wheel skythought==0.1.0). A model not listed there gets no system message at all; that
# includes the Bespoke-Stratos students and every local folder. Its API models (o1, gpt-4o-mini) and PRIME-RL's
# file prompt are left out; pass --system-prompt-file for those.
_QWEN_COT = "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. You should think step-by-step."
# The YAML file writes the Sky-T1 prompt as one double-quoted scalar continued over lines with "\": in YAML an escaped
# line break joins the lines with nothing between them and drops the next line's indentation, so each piece below
# ends with the single space that stood before the backslash (`'\n\n'` is a YAML escape: two newlines).
_SKY_T1 = "".join([
    "Your role as an assistant involves thoroughly exploring questions through a systematic long ",
    "thinking process before providing the final precise and accurate solutions. This requires ",
    "engaging in a comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, ",
    "backtracing, and iteration to develop well-considered thinking process. ",
    "Please structure your response into two main sections: Thought and Solution. ",
    "In the Thought section, detail your reasoning process using the specified format: ",
    "<|begin_of_thought|> {thought with steps separated with '\n\n'} ",
    "<|end_of_thought|> ",
    "Each step should include detailed considerations such as analisying questions, summarizing ",
    "relevant findings, brainstorming new ideas, verifying the accuracy of the current steps, refining ",
    "any errors, and revisiting previous steps. ",
    "In the Solution section, based on various attempts, explorations, and reflections from the Thought ",
    "section, systematically present the final solution that you deem correct. The solution should ",
    "remain a logical, accurate, concise expression style and detail necessary step needed to reach the ",
    "conclusion, formatted as follows: ",
    "<|begin_of_solution|> ",
    "{final formatted, precise, and clear solution} ",
    "<|end_of_solution|> ",
    "Now, try to solve the following question through the above guidelines:",
])
SKYTHOUGHT_SYSTEM_PROMPTS = {
    **{m: _QWEN_COT for m in ("Qwen/Qwen2-7B-Instruct", "Qwen/QwQ-32B-Preview", "Qwen/Qwen2.5-72B-Instruct",
                              "Qwen/Qwen2.5-32B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct",
                              "Qwen/Qwen2.5-Math-7B-Instruct", "Qwen/Qwen2.5-Math-72B-Instruct")},
    **{m: _SKY_T1 for m in ("NovaSky-AI/Sky-T1-32B-Preview", "NovaSky-AI/Sky-T1-32B-Flash")},
}


@dataclass(frozen=True)
class Preset:
    """Sampling and prompting of an evaluation run. A field set on the command line overrides the preset."""

    name: str
    description: str
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 32768
    n: int = 1  # samples per problem
    pass_k: tuple[int, ...] = (1,)
    templates: dict = field(default_factory=lambda: dict(SKYTHOUGHT_TEMPLATES))
    system_prompt: str | None = None  # None: no system message (the chat template may still add its default)
    model_system_prompts: bool = True  # no system_prompt given: use SkyThought's for the model ids it knew
    seed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pass_k"] = list(self.pass_k)
        return d

    def system_for(self, model: str) -> str | None:
        """The system message for a model: the preset's, else SkyThought's for that model id, else none."""
        if self.system_prompt is not None:
            return self.system_prompt or None
        return SKYTHOUGHT_SYSTEM_PROMPTS.get(model) if self.model_system_prompts else None

    def prompt(self, family: str, problem: str) -> str:
        """The user message for a problem of a template family (math, gpqa, countdown)."""
        if family not in self.templates:
            raise WorkbenchError(f"preset {self.name!r} has no prompt template for {family!r} problems")
        return self.templates[family].format(problem=problem)


PRESETS: dict[str, Preset] = {
    "skythought": Preset("skythought", "SkyThought 4bb8f3e's prompts and default sampling (greedy, 32,768 new tokens, "
                                       "pass@1); RLT used this harness, its sampling settings are assumed"),
    "quick": Preset("quick", "the skythought prompts, greedy, 256 new tokens: a CPU smoke test", max_new_tokens=256),
    "sample-8": Preset("sample-8", "temperature 0.7, top_p 0.95, 8 samples per problem, pass@1/4/8",
                       temperature=0.7, top_p=0.95, n=8, pass_k=(1, 4, 8)),
    "sample-16": Preset("sample-16", "temperature 0.6, top_p 0.95, 16 samples per problem, pass@1/4/16",
                        temperature=0.6, top_p=0.95, n=16, pass_k=(1, 4, 16)),
}


def list_presets() -> list[Preset]:
    return list(PRESETS.values())


def get_preset(name: str, **overrides) -> Preset:
    """A preset by name, with fields overridden (None values are ignored). Validates the result."""
    if name not in PRESETS:
        raise WorkbenchError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - set(Preset.__dataclass_fields__)
    if unknown:
        raise WorkbenchError(f"unknown preset field(s): {', '.join(sorted(unknown))}")
    if "pass_k" in changes:
        changes["pass_k"] = tuple(int(k) for k in changes["pass_k"])
    preset = replace(PRESETS[name], **changes)
    validate_preset(preset)
    return preset


def validate_preset(p: Preset) -> None:
    """Raise WorkbenchError for settings that cannot run."""
    if p.temperature < 0:
        raise WorkbenchError(f"temperature must be >= 0 (got {p.temperature})")
    if not 0 < p.top_p <= 1:
        raise WorkbenchError(f"top_p must be in (0, 1] (got {p.top_p})")
    if p.max_new_tokens < 1:
        raise WorkbenchError(f"max_new_tokens must be at least 1 (got {p.max_new_tokens})")
    if p.n < 1:
        raise WorkbenchError(f"n (samples per problem) must be at least 1 (got {p.n})")
    if p.temperature == 0 and p.n > 1:
        raise WorkbenchError(f"greedy decoding (temperature 0) gives {p.n} identical samples; use n=1 or a temperature > 0")
    if not p.pass_k or any(k < 1 or k > p.n for k in p.pass_k):
        raise WorkbenchError(f"pass@k needs 1 <= k <= n (n={p.n}, k={list(p.pass_k)})")


__all__ = ["Preset", "PRESETS", "SKYTHOUGHT_TEMPLATES", "SKYTHOUGHT_SYSTEM_PROMPTS", "get_preset", "list_presets", "validate_preset"]
