"""A training run's sampled completions, step by step, from either log a run keeps:

- TRL's: with `log_completions: true`, GRPOTrainer writes `OUTPUT/completions/completions_{step:05d}.parquet` at
  every logging step: `step`, `prompt` (the teacher prompt: text, or messages for a conversational dataset),
  `completion`, one column per reward function (the workbench's is `rlt`), the columns reward functions log
  (`r_ss`, `r_kl`) and `advantage`. The question and the reference solution are not columns: they are recovered from
  the prompt with the chat template of the run's tokenizer (`split_teacher_prompt`).
- the workbench's own: `OUTPUT/completions.jsonl` (`completions_log_steps`), one row per sampled completion with its
  question, solution, reward components and, with `log_token_details`, per-token detail.

`read_run_log(path)` reads either (a run folder, its `completions/` folder, one parquet file, or a completions JSONL)
into samples; `problems_at(log, steps)` turns the samples of some steps into the problems that Compare and Heatmap
show (one column per step and sample); `score_rows(log, steps)` into the rows `workbench score` / `rank` read.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import formats
from .errors import WorkbenchError

TRL_FOLDER = "completions"  # OUTPUT/completions/completions_{step:05d}.parquet (TRL's GRPOTrainer)
TRL_FILE = re.compile(r"completions_(\d+)\.parquet$")
OWN_FILE = "completions.jsonl"  # training.rlt.COMPLETIONS_FILE
REWARD_COLUMNS = ("rlt", "reward")  # the logged reward: the workbench's reward function's column, or ours
_SENTINEL_Q = "\u2063WBQ\u2063"  # never in a real prompt (invisible separators around a marker)
_SENTINEL_S = "\u2063WBS\u2063"


@dataclass
class RunLog:
    """Samples of a run's completions log: dicts with step, problem (an id), question, solution, completion (the raw
    teacher text), sample (1, 2, ... within its problem and step) and logged (the numbers the run logged with it:
    reward, advantage, r_ss, r_kl, ...), file and location."""

    samples: list[dict]
    kind: str  # "trl" or "workbench"
    origin: str  # the file or folder read
    run: Path | None = None  # the run folder (recipe.yaml, checkpoints), when there is one
    skipped: list[str] = field(default_factory=list)
    config: object = None  # the RewardConfig its prompts were read with (tags, teacher system prompt)

    @property
    def steps(self) -> list[int]:
        return sorted({s["step"] for s in self.samples})

    def note(self) -> str:
        """One line for a user: what was read, and how many rows were skipped and why."""
        steps = self.steps
        span = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}–{steps[-1]} ({len(steps)} logged)"
        what = "TRL's completions log" if self.kind == "trl" else "the workbench's completions log"
        line = f"{what}: {len(self.samples)} samples, {span}"
        if self.skipped:
            line += f"; skipped {len(self.skipped)} rows: " + "; ".join(self.skipped[:3]) + ("; ..." if len(self.skipped) > 3 else "")
        return line


# ---------------------------------------------------------------------------------------------- finding the log


def find_run_log(path: str | Path) -> tuple[str, list[Path], Path | None] | None:
    """(kind, files, run folder) when `path` is a completions log or a folder holding one, else None.

    A run folder with both logs gives TRL's (it has the advantages); name `completions.jsonl` to read the other."""
    p = Path(path).expanduser()
    if p.is_file():
        if TRL_FILE.search(p.name):
            return "trl", [p], _run_folder(p.parent.parent if p.parent.name == TRL_FOLDER else p.parent)
        if p.name == OWN_FILE:
            return "workbench", [p], _run_folder(p.parent)
        return None
    if not p.is_dir():
        return None
    for folder, run in ((p / TRL_FOLDER, p), (p, p.parent if p.name == TRL_FOLDER else p)):
        files = sorted((f for f in folder.glob("completions_*.parquet") if TRL_FILE.search(f.name)),
                       key=lambda f: int(TRL_FILE.search(f.name).group(1)))
        if files:
            return "trl", files, _run_folder(run)
    if (p / OWN_FILE).is_file():
        return "workbench", [p / OWN_FILE], _run_folder(p)
    return None


def is_run_log(path: str | Path) -> bool:
    try:
        return find_run_log(path) is not None
    except OSError:
        return False


def _run_folder(folder: Path) -> Path | None:
    """The folder as a run's output folder: the workbench's run files, a saved model or tokenizer, or checkpoints."""
    marks = ("recipe.yaml", "trl_config.json", "tokenizer_config.json", "config.json")
    return folder if any((folder / m).is_file() for m in marks) or any(folder.glob("checkpoint-*")) else None


def run_tokenizer(run: Path | None):
    """The tokenizer the run trained with: saved in the run folder or its newest checkpoint; None if neither has one."""
    if run is None:
        return None
    from transformers import AutoTokenizer

    checkpoints = sorted((c for c in run.glob("checkpoint-*") if c.name.split("-")[-1].isdigit()),
                         key=lambda c: int(c.name.split("-")[-1]), reverse=True)
    for folder in (run, *checkpoints):
        if (folder / "tokenizer_config.json").is_file():
            try:
                return AutoTokenizer.from_pretrained(str(folder))  # only its chat template is used
            except Exception as exc:  # a broken save: say which folder
                raise WorkbenchError(f"{folder}: its tokenizer does not load ({type(exc).__name__}: {exc})") from None
    return None


def run_reward_config(run: Path | None):
    """The run's reward configuration (its recipe.yaml), or the defaults for a run the workbench did not start."""
    from .rewards import RewardConfig

    if run is not None and (run / "recipe.yaml").is_file():
        from .training.config import reward_config

        return reward_config(run)
    return RewardConfig()


# ---------------------------------------------------------------------------------------------- the teacher prompt


def split_teacher_prompt(prompt, tokenizer=None, system_prompt: str | None = None,
                         tags: formats.Tags = formats.STRATOS) -> tuple[str, str]:
    """(question, solution) from a teacher prompt as the trainer saw it (`formats.teacher_prompt`).

    The solution is the text between the last solution tags before the explanation start tag. The question is the
    user turn of the chat template: the template is rendered around marker texts and the prompt matched against it,
    first with `system_prompt` (exact), then with any system prompt (the text after the template's system-to-user
    separator). A conversational prompt (messages) gives its last user message directly.
    Raises WorkbenchError when the prompt is not a teacher prompt of this template.
    """
    if isinstance(prompt, list):
        users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        assistant = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "assistant"]
        if not users or not isinstance(users[-1], str):
            raise WorkbenchError("the prompt's messages have no user message (the question)")
        solution = _solution_of(assistant[-1] if assistant and isinstance(assistant[-1], str) else "", tags)
        return users[-1], solution
    if not isinstance(prompt, str):
        raise WorkbenchError(f"the prompt is a {type(prompt).__name__}, not text or messages")
    start = prompt.rfind(tags.solution_start)
    if start < 0:
        raise WorkbenchError(f"the prompt has no {tags.solution_start} (not an RLT teacher prompt of tag style "
                             f"{'r1' if tags == formats.R1 else 'stratos'}?)")
    solution = _solution_of(prompt[start:], tags)
    head = prompt[:start]
    if tokenizer is None:
        raise WorkbenchError("the question is inside the chat template of the prompt: give the run's model (or its "
                             "tokenizer) to read it")
    question = _question_in(head, tokenizer, system_prompt, tags)
    if question is None:
        raise WorkbenchError("the prompt does not follow the chat template of the given tokenizer (is it the run's "
                             "model?)")
    return question, solution


def _solution_of(text: str, tags: formats.Tags) -> str:
    a = text.rfind(tags.solution_start)
    b = text.find(tags.solution_end, a + 1) if a >= 0 else -1
    if a < 0 or b < 0:
        raise WorkbenchError(f"the prompt has no reference solution between {tags.solution_start} and "
                             f"{tags.solution_end}")
    return text[a + len(tags.solution_start):b]


def _render(tokenizer, question: str, system_prompt: str | None, tags: formats.Tags) -> str | None:
    try:
        return tokenizer.apply_chat_template(formats.teacher_messages(question, system_prompt, tags), tokenize=False,
                                             add_generation_prompt=True)
    except Exception:  # a template that refuses a system turn, or no template: the other way is tried
        return None


_PARTS: dict[tuple, tuple] = {}  # (template, BOS, system prompt, tags) -> the template's pieces around the question


def _template_parts(tokenizer, system_prompt: str | None, tags: formats.Tags) -> tuple:
    """((before, after) the question with this system prompt, (between system and question, after) with any) for
    the tokenizer's chat template; None for a piece the template cannot give. Rendered once per template."""
    key = (getattr(tokenizer, "chat_template", None), tokenizer.bos_token, system_prompt, tags)
    if key in _PARTS:
        return _PARTS[key]
    exact = _render(tokenizer, _SENTINEL_Q, system_prompt, tags)
    exact_parts = tuple(exact.split(_SENTINEL_Q, 1)) if exact is not None and _SENTINEL_Q in exact else None
    both = _render(tokenizer, _SENTINEL_Q, _SENTINEL_S, tags)
    any_parts = None
    if both is not None and _SENTINEL_S in both and _SENTINEL_Q in both and both.find(_SENTINEL_S) < both.find(_SENTINEL_Q):
        between = both[both.find(_SENTINEL_S) + len(_SENTINEL_S):both.find(_SENTINEL_Q)]
        any_parts = (between, both.split(_SENTINEL_Q, 1)[1]) if between else None
    if len(_PARTS) > 64:
        _PARTS.clear()
    _PARTS[key] = (exact_parts, any_parts)
    return _PARTS[key]


def _question_in(head: str, tokenizer, system_prompt: str | None, tags: formats.Tags) -> str | None:
    exact, any_system = _template_parts(tokenizer, system_prompt, tags)
    if exact is not None:
        pre, post = exact
        bos = tokenizer.bos_token or ""
        for p in (pre, pre[len(bos):] if bos and pre.startswith(bos) else None):  # trainer_prompt may drop BOS
            if p is not None and head.startswith(p) and head.endswith(post) and len(head) >= len(p) + len(post):
                return head[len(p):len(head) - len(post)]
    # Any system prompt: [A] system [B] question [C]; the question follows the first B after the system text.
    if any_system is None:
        return None
    between, post = any_system
    if not head.endswith(post):
        return None
    k = head.find(between)
    return head[k + len(between):len(head) - len(post)] if k >= 0 else None


# ---------------------------------------------------------------------------------------------- reading


def read_run_log(path: str | Path, tokenizer=None, config=None, fallback_tokenizer=None) -> RunLog:
    """The samples of a run's completions log (see the module docstring). `tokenizer` and `config` (a RewardConfig:
    tags and teacher system prompt) read TRL's prompts; by default the run's own (its saved tokenizer, else
    `fallback_tokenizer`; its recipe.yaml). Rows that cannot be read are skipped and named; a log without a usable
    row raises."""
    from .io import as_integer, finite_number, read_rows

    found = find_run_log(path)
    if found is None:
        raise WorkbenchError(f"{path}: not a completions log: give a run folder (with {TRL_FOLDER}/completions_*.parquet "
                             f"from `log_completions: true`, or {OWN_FILE}), a completions_*.parquet or a "
                             f"{OWN_FILE}")
    kind, files, run = found
    if config is None:
        config = run_reward_config(run)
    if kind == "trl" and tokenizer is None:
        tokenizer = run_tokenizer(run) or fallback_tokenizer
    samples, skipped = [], []
    ids: dict[tuple[str, str], str] = {}
    counts: dict[tuple[int, str], int] = {}
    for f in files:
        for row in read_rows(f):
            where = f"{f.name}: {row.loc}"
            if not row.ok:
                skipped.append(row.error)
                continue
            r = row.data
            try:
                step = _step(r, f)
                if kind == "trl":
                    question, solution = split_teacher_prompt(r.get("prompt"), tokenizer, config.teacher_system_prompt,
                                                              config.tags)
                    completion = _completion_text(r.get("completion"))
                else:
                    question, solution, completion = (r.get(k) for k in ("question", "solution", "completion"))
                    if not all(isinstance(v, str) for v in (question, solution, completion)):
                        raise WorkbenchError("needs text columns question, solution and completion")
            except WorkbenchError as exc:
                skipped.append(f"{where}: {exc}")
                continue
            key = (question, solution)
            pid = ids.setdefault(key, str(r["id"]) if kind == "workbench" and r.get("id") is not None
                                 else f"p{len(ids) + 1}")
            n = counts[(step, pid)] = counts.get((step, pid), 0) + 1
            logged = {k: finite_number(v) for k, v in r.items()
                      if k not in ("step", "prompt", "completion", "policy_step", "id", "completion_tokens") and finite_number(v) is not None
                      and not isinstance(v, bool)}
            for name in REWARD_COLUMNS:
                if name in logged:
                    logged["reward"] = logged.pop(name)  # the reward function's column (TRL's table)
                    break
            sample = {"step": step, "problem": pid, "question": question, "solution": solution,
                      "completion": completion, "sample": n, "logged": logged, "file": str(f), "location": row.loc}
            if kind == "workbench" and isinstance(r.get("completion_ids"), list):
                sample["completion_ids"] = r["completion_ids"]
            if kind == "workbench" and r.get("policy_step") is not None:
                sample["policy_step"] = r["policy_step"]
            tokens = as_integer(r.get("completion_tokens"))
            if tokens is not None:
                sample["logged"]["completion_tokens"] = float(tokens)
            samples.append(sample)
    _count_tokens([s for s in samples if "completion_tokens" not in s["logged"]], tokenizer)
    log = RunLog(samples, kind, str(path), run, skipped, config)
    if not samples:
        first = "; ".join(skipped[:3]) or "it has no rows"
        raise WorkbenchError(f"{path}: no usable sample in the completions log: {first}")
    return log


def _count_tokens(samples: list[dict], tokenizer) -> None:
    """logged["completion_tokens"]: the completion's length in the run's tokens (TRL's table has no length)."""
    if not samples or tokenizer is None:
        return
    ids = tokenizer([s["completion"] for s in samples], add_special_tokens=False)["input_ids"]
    for s, t in zip(samples, ids):
        s["logged"]["completion_tokens"] = float(len(t))


_CACHE: dict[tuple, RunLog] = {}


def cached_run_log(path: str | Path, fallback_tokenizer=None) -> RunLog:
    """read_run_log, read again only when the log's files change (the app rereads the log at each step change)."""
    found = find_run_log(path)
    if found is None:
        return read_run_log(path, fallback_tokenizer=fallback_tokenizer)
    files = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in found[1])
    recipe = found[2] / "recipe.yaml" if found[2] is not None else None
    key = (str(Path(path).expanduser().resolve()), files, id(fallback_tokenizer),
           recipe.stat().st_mtime_ns if recipe is not None and recipe.is_file() else None)
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = read_run_log(path, fallback_tokenizer=fallback_tokenizer)
    return _CACHE[key]


def _step(r: dict, f: Path) -> int:
    from .io import as_integer

    step = as_integer(r.get("step"))
    if step is None:
        m = TRL_FILE.search(f.name)
        if m is None:
            raise WorkbenchError("no integer column 'step'")
        step = int(m.group(1))
    return step


def _completion_text(c) -> str:
    if isinstance(c, str):
        return c
    if isinstance(c, list) and c and isinstance(c[-1], dict) and isinstance(c[-1].get("content"), str):
        return c[-1]["content"]  # a conversational completion: the assistant message
    raise WorkbenchError("the completion is neither text nor messages")


# ---------------------------------------------------------------------------------------------- views


def parse_steps(spec, available: list[int]) -> list[int]:
    """Steps from "3", "1,5,9", "10-20", "first", "last", "first,last", "all" or a list of step numbers (None or
    empty: all), checked against the log's."""
    if isinstance(spec, (list, tuple)):
        spec = ",".join(str(s) for s in spec)
    if spec is None or not str(spec).strip() or str(spec).strip() == "all":
        return list(available)
    out: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        try:
            if part in ("first", "last"):
                out.append(available[0] if part == "first" else available[-1])
            elif "-" in part.strip("-"):
                a, b = (int(x) for x in part.split("-", 1))
                out.extend(s for s in available if a <= s <= b)
            else:
                out.append(int(part))
        except ValueError:
            raise WorkbenchError(f"steps {spec!r}: {part!r} is not a step, a range a-b, first, last or all") from None
    missing = sorted(set(out) - set(available))
    if missing:
        raise WorkbenchError(f"steps {spec!r}: the log has no step {', '.join(map(str, missing))} (it has "
                             f"{_span(available)})")
    return sorted(set(out))


def _span(steps: list[int]) -> str:
    if len(steps) <= 8:
        return ", ".join(map(str, steps))
    return f"{len(steps)} steps: {', '.join(map(str, steps[:4]))}, ..., {', '.join(map(str, steps[-2:]))}"


def source_name(step: int, sample: int) -> str:
    return f"step {step}" + (f" #{sample}" if sample > 1 else "")


def problems_at(log: RunLog, steps: list[int] | None = None, per_step: int | None = None) -> list[dict]:
    """The problems (question + solution) sampled at `steps` (None: all), each with one source per step and sample
    ("step 12", "step 12 #2", ...: at most `per_step` samples of a step), in the order the log first has them.
    The raw completion is kept (a missing end tag is penalised when scored); meta["recorded"] holds the reward the
    run logged and meta["logged"] every number it logged (advantage, r_ss, r_kl ...), per source."""
    chosen = set(log.steps if steps is None else steps)
    tags = log.config.tags if log.config is not None else formats.STRATOS
    out: dict[str, dict] = {}
    for s in sorted((s for s in log.samples if s["step"] in chosen), key=lambda s: s["step"]):
        if per_step is not None and s["sample"] > per_step:
            continue
        p = out.setdefault(s["problem"], {
            "id": s["problem"], "question": s["question"], "solution": s["solution"], "sources": {},
            "completions": {}, "meta": {"topic": f"sampled in training ({log.kind} log)", "recorded": {},
                                        "logged": {}, "file": s["file"], "location": s["location"]}})
        name = source_name(s["step"], s["sample"])
        p["completions"][name] = s["completion"]
        p["sources"][name] = formats.parse_completion(s["completion"], tags).body.strip()
        if s["logged"].get("reward") is not None:
            p["meta"]["recorded"][name] = s["logged"]["reward"]
        p["meta"]["logged"][name] = {**s["logged"], "step": s["step"]}
    order = {pid: k for k, pid in enumerate(dict.fromkeys(s["problem"] for s in log.samples))}
    return sorted(out.values(), key=lambda p: order[p["id"]])


def step_table(log: RunLog) -> list[dict]:
    """Per logged step: samples, problems, and the mean of every number logged (reward, advantage, r_ss, r_kl ...)."""
    by_step: dict[int, list[dict]] = {}
    for s in log.samples:
        by_step.setdefault(s["step"], []).append(s)
    rows = []
    for step, at in sorted(by_step.items()):
        row: dict = {"step": step, "samples": len(at), "problems": len({s["problem"] for s in at})}
        keys = dict.fromkeys(k for s in at for k in s["logged"])
        for k in keys:
            vals = [s["logged"][k] for s in at if s["logged"].get(k) is not None and math.isfinite(s["logged"][k])]
            if vals:
                row[k] = sum(vals) / len(vals)
        rows.append(row)
    return rows


def score_rows(log: RunLog, steps: list[int] | None = None) -> list[dict]:
    """Rows for `workbench score` / `rank`: id "PROBLEM@STEP#SAMPLE", question, solution, completion (and the sampled
    token ids when the workbench logged them), step, and the reward the run logged (`logged_reward`)."""
    chosen = set(log.steps if steps is None else steps)
    out = []
    for s in log.samples:
        if s["step"] not in chosen:
            continue
        row = {"id": f"{s['problem']}@{s['step']}#{s['sample']}", "problem": s["problem"], "step": s["step"],
               "question": s["question"], "solution": s["solution"], "completion": s["completion"],
               "logged_reward": s["logged"].get("reward")}
        if "completion_ids" in s:
            row["completion_ids"] = s["completion_ids"]
        out.append(row)
    return out


__all__ = ["RunLog", "find_run_log", "is_run_log", "read_run_log", "cached_run_log", "split_teacher_prompt", "parse_steps",
           "problems_at", "score_rows", "step_table", "run_tokenizer", "run_reward_config", "source_name"]
