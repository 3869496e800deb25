"""Benchmarks: AIME 2024, MATH-500 and GPQA-Diamond (hub datasets or local files), and countdown (built in).

Every loader returns problems in one shape:
    {"id": str, "question": str, "gold": str | dict, "kind": "math" | "mcq" | "countdown", "meta": {...}}
`question` is the bare problem (for GPQA: the question and its shuffled options); the preset's template
turns it into the user message (see `presets.py`).

The hub ids, configs and splits are the ones SkyThought's task configs use (`skythought/evals/tasks/*/*.yaml`):
- AIME 2024: `AI-MO/aimo-validation-aime`, split `train`, rows whose `url` contains "2024" (30 problems).
- MATH-500: `qq8933/MATH500`, split `test` (500 problems; the same problems as `HuggingFaceH4/MATH-500`,
  which `--data HuggingFaceH4/MATH-500` loads instead).
- GPQA-Diamond: `Idavidrein/gpqa`, config `gpqa_diamond`, split `train` (198 problems; gated on the hub).
  SkyThought shuffles the four options of each question with Python's `random` seeded once with 41, in
  dataset order, and writes them as "A) ..., B) ..., C) ..., D) ..." after the question; `gpqa_options`
  does the same, so the first N problems of a limited run get the same options as in a full run.

`--data` replaces the hub: a local .jsonl/.json/.parquet/.csv file, a folder written by
`datasets.save_to_disk` or downloaded from the hub, or another hub id. Local rows need the columns the hub
rows have (`problem`/`question` and `answer`; GPQA: `Question`, `Correct Answer`, `Incorrect Answer 1..3`,
or `question` with the options already in it and `answer` as a letter).

Countdown needs no download: instances are generated from a seed. Reach the target from the given numbers
with + - * / and parentheses, using **each number at most once** (not every number has to be used; the
generator builds every target from all the numbers, so a full solution always exists). Graded exactly by
evaluating the expression (`grading.grade_countdown`). Three levels: `countdown` (easy: two numbers from
1-10), `countdown-medium` (three numbers from 1-20), `countdown-hard` (four numbers from 1-50).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import WorkbenchError
from ..io import as_integer

GPQA_SHUFFLE_SEED = 41
COUNTDOWN_SEED = 1234
COUNTDOWN_SIZE = 200


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: where its problems come from and how its answers are graded."""

    name: str
    title: str
    kind: str  # grading kind: math | mcq | countdown
    family: str  # prompt template family: math | gpqa | countdown
    hub_id: str | None = None
    config: str | None = None
    split: str | None = None
    size: int | None = None
    description: str = ""
    default_preset: str = "skythought"
    countdown: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "title", "kind", "family", "hub_id", "config", "split",
                                               "size", "description", "default_preset")}


COUNTDOWN_LEVELS = {
    "easy": {"count": 2, "low": 1, "high": 10, "ops": "+-*", "max_target": 100},
    "medium": {"count": 3, "low": 1, "high": 20, "ops": "+-*/", "max_target": 200},
    "hard": {"count": 4, "low": 1, "high": 50, "ops": "+-*/", "max_target": 1000},
}

BENCHMARKS: dict[str, Benchmark] = {
    "aime24": Benchmark("aime24", "AIME 2024", "math", "math", "AI-MO/aimo-validation-aime", None, "train", 30,
                        "30 AIME 2024 problems (integer answers)"),
    "math500": Benchmark("math500", "MATH-500", "math", "math", "qq8933/MATH500", None, "test", 500,
                         "500 MATH test problems (Lightman et al. subset)"),
    "gpqa-diamond": Benchmark("gpqa-diamond", "GPQA-Diamond", "mcq", "gpqa", "Idavidrein/gpqa", "gpqa_diamond",
                              "train", 198, "198 graduate-level science questions, 4 options shuffled with seed 41"),
    "countdown": Benchmark("countdown", "Countdown (easy)", "countdown", "countdown", size=COUNTDOWN_SIZE,
                           description="built in: reach a target from 2 numbers (1-10) with + - *",
                           default_preset="quick", countdown={"level": "easy"}),
    "countdown-medium": Benchmark("countdown-medium", "Countdown (medium)", "countdown", "countdown",
                                  size=COUNTDOWN_SIZE, description="built in: 3 numbers (1-20), + - * /",
                                  default_preset="quick", countdown={"level": "medium"}),
    "countdown-hard": Benchmark("countdown-hard", "Countdown (hard)", "countdown", "countdown", size=COUNTDOWN_SIZE,
                                description="built in: 4 numbers (1-50), + - * /", default_preset="quick",
                                countdown={"level": "hard"}),
}
ALIASES = {"aime": "aime24", "aime2024": "aime24", "aime-2024": "aime24", "math-500": "math500",
           "math_500": "math500", "gpqa": "gpqa-diamond", "gpqa_diamond": "gpqa-diamond", "gpqadiamond": "gpqa-diamond",
           "countdown-easy": "countdown"}


def list_benchmarks() -> list[Benchmark]:
    """All benchmarks, paper benchmarks first."""
    return list(BENCHMARKS.values())


def get_benchmark(name: str) -> Benchmark:
    """Look a benchmark up by name or alias (case-insensitive)."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in BENCHMARKS:
        raise WorkbenchError(f"unknown benchmark {name!r}; use one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]


# ============================================================================================== countdown


def _countdown_instance(rng: random.Random, spec: dict) -> tuple[list[int], int, str]:
    """Numbers, target and one solution: the numbers combined in a random order with random operations."""
    while True:
        numbers = [rng.randint(spec["low"], spec["high"]) for _ in range(spec["count"])]
        items: list[tuple[int, str]] = [(n, str(n)) for n in numbers]
        ok = True
        while len(items) > 1:
            a = items.pop(rng.randrange(len(items)))
            b = items.pop(rng.randrange(len(items)))
            choices = []
            for op in spec["ops"]:
                if op == "+":
                    choices.append((a[0] + b[0], f"{a[1]} + {b[1]}"))
                elif op == "*":
                    choices.append((a[0] * b[0], f"{_paren(a[1])} * {_paren(b[1])}"))
                elif op == "-":
                    hi, lo = (a, b) if a[0] >= b[0] else (b, a)
                    if hi[0] - lo[0] > 0:
                        choices.append((hi[0] - lo[0], f"{hi[1]} - {_paren(lo[1])}"))
                elif op == "/":
                    hi, lo = (a, b) if a[0] >= b[0] else (b, a)
                    if lo[0] > 1 and hi[0] % lo[0] == 0:
                        choices.append((hi[0] // lo[0], f"{_paren(hi[1])} / {_paren(lo[1])}"))
            if not choices:
                ok = False
                break
            items.append(rng.choice(choices))
        target, solution = items[0]
        if ok and 1 <= target <= spec["max_target"] and target not in numbers:
            return numbers, target, solution


def _paren(expr: str) -> str:
    return f"({expr})" if any(c in expr for c in "+-*/") else expr


def countdown_problems(level: str = "easy", n: int = COUNTDOWN_SIZE, seed: int = COUNTDOWN_SEED) -> list[dict]:
    """`n` countdown instances of a level; instance i depends only on (seed, level, i), never on `n`."""
    if level not in COUNTDOWN_LEVELS:
        raise WorkbenchError(f"unknown countdown level {level!r}; use one of {', '.join(COUNTDOWN_LEVELS)}")
    spec = COUNTDOWN_LEVELS[level]
    out = []
    for i in range(n):
        rng = random.Random(f"countdown/{seed}/{level}/{i}")
        numbers, target, solution = _countdown_instance(rng, spec)
        out.append(countdown_problem(numbers, target, f"countdown-{level}-{i:04d}", {"level": level, "solution": solution}))
    return out


def countdown_problem(numbers: list[int], target: int, pid: str, meta: dict | None = None) -> dict:
    nums = ", ".join(str(x) for x in numbers[:-1]) + f" and {numbers[-1]}" if len(numbers) > 1 else str(numbers[0])
    question = (f"Using the numbers {nums}, write an arithmetic expression that equals {target}. You may use "
                f"+, -, * and / and parentheses, and each number at most once.")
    return {"id": pid, "question": question, "gold": {"target": int(target), "numbers": [int(x) for x in numbers]},
            "kind": "countdown", "meta": dict(meta or {})}


# ================================================================================================= loading


def gpqa_options(row: dict, rng: random.Random) -> tuple[str, str]:
    """SkyThought's GPQA prompt body and gold letter: options shuffled by `rng`, "A) x, B) y, C) z, D) w"."""
    try:
        answers = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"]]
    except KeyError as exc:
        raise WorkbenchError(f"GPQA row has no column {exc.args[0]!r}; expected Question, Correct Answer, "
                             "Incorrect Answer 1..3") from None
    rng.shuffle(answers)
    letters = "ABCD"
    options = ", ".join(f"{letter}) {answer}" for letter, answer in zip(letters, answers))
    gold = next(letter for letter, answer in zip(letters, answers) if answer == row["Correct Answer"])
    return f"{row['Question']}\n{options}", gold


def _last_boxed(text: str) -> str | None:
    from .grading import _boxed_contents

    found = _boxed_contents(text or "")
    return found[-1] if found else None


def _first(row: dict, names: tuple[str, ...]):
    for n in names:
        if n in row and row[n] is not None and str(row[n]).strip() != "":
            return row[n]
    return None


def _row_to_problem(bench: Benchmark, loc: str, row: dict, k: int, origin: str, rng: random.Random) -> dict:
    """One raw row (hub or file) -> a problem; raises WorkbenchError naming `origin`, the row and the column."""
    where = f"{origin}: {loc}"
    meta = {"source": origin, "row": loc}
    if bench.kind == "countdown":
        if "numbers" not in row or "target" not in row:
            raise WorkbenchError(f"{where}: a countdown row needs `numbers` (list of integers) and `target`")
        numbers = row["numbers"]
        if (not isinstance(numbers, list) or not numbers
                or any(as_integer(x) is None or not 0 < as_integer(x) < 10**9 for x in numbers)):
            raise WorkbenchError(f"{where}, column 'numbers': must be a non-empty list of integers (each from 1 to "
                                 f"10^9), got {str(numbers)[:60]}")
        target = as_integer(row["target"])
        if target is None or abs(target) >= 10**12:
            raise WorkbenchError(f"{where}, column 'target': must be an integer below 10^12, got "
                                 f"{str(row['target'])[:40]!r}")
        return countdown_problem([as_integer(x) for x in numbers], target, str(row.get("id", f"countdown-{k:04d}")), meta)
    pid = str(_first(row, ("id", "unique_id", "url", "Record ID")) or f"{bench.name}-{k:04d}")
    if bench.kind == "mcq":
        if "Correct Answer" in row:
            if not all(isinstance(row.get(c), (str, int, float)) for c in GPQA_COLUMNS):
                raise WorkbenchError(f"{where}: a raw GPQA row needs text in {', '.join(GPQA_COLUMNS)}")
            question, gold = gpqa_options(row, rng)
        else:
            question, gold = _first(row, ("question", "prompt", "problem")), _first(row, ("answer", "gold"))
            if not isinstance(question, str) or gold is None or str(gold).strip() not in ("A", "B", "C", "D"):
                raise WorkbenchError(f"{where}: a GPQA row needs Question, Correct Answer, Incorrect Answer 1..3 "
                                     "(raw GPQA) or question (with options) and answer (A-D)")
            gold = str(gold).strip()
        return {"id": pid, "question": str(question), "gold": gold, "kind": "mcq", "meta": meta}
    question = _first(row, ("problem", "question", "prompt"))
    gold = _first(row, ("answer", "gold"))
    if gold is None and isinstance(row.get("solution"), str):
        gold = _last_boxed(row["solution"])
    if not isinstance(question, str) or gold is None:
        raise WorkbenchError(f"{where}: a {bench.title} row needs `problem` (or question) as text and `answer` "
                             "(or a solution with a \\boxed{} answer)")
    if not isinstance(gold, (str, int, float)) or isinstance(gold, bool):
        raise WorkbenchError(f"{where}, column 'answer': expected text or a number, got {type(gold).__name__}")
    return {"id": pid, "question": question, "gold": str(gold).strip(), "kind": "math", "meta": meta}


GPQA_COLUMNS = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


def load_benchmark_report(name: str, data: str | None = None, limit: int | None = None,
                          loader: Callable[[str, str | None, str], list] | None = None):
    """Problems of a benchmark, in dataset order, at most `limit` of them, with the rows that were skipped.

    data: None for the benchmark's own source (its hub dataset, or the built-in generator), else a local
    file, a dataset folder or another hub id, read by the one data layer (`workbench.data.load_rows`).
    `loader(hub_id, config, split)` replaces the hub access (tests). Returns a `workbench.data.Loaded`.
    """
    from ..data import Loaded, dedupe_ids, in_file_order, load_rows

    bench = get_benchmark(name)
    if limit is not None and limit < 1:
        raise WorkbenchError(f"--limit must be at least 1 (got {limit})")
    if bench.kind == "countdown" and data is None:
        return Loaded(countdown_problems(bench.countdown["level"], n=limit or COUNTDOWN_SIZE), [], bench.name)
    if data is None:
        rows = load_rows(bench.hub_id, bench.split or "train", bench.config, hub=loader)
        rows.origin = bench.hub_id or bench.name
    else:
        rows = load_rows(str(data), bench.split or "train", bench.config, hub=loader)
    items = rows.items
    if bench.name == "aime24" and any("url" in r.data for r in items):
        items = [r for r in items if "2024" in str(r.data.get("url") or "")]
        if not items:
            raise WorkbenchError(f"{rows.origin}: no row has '2024' in its url column (AIME 2024 is selected by url)")
    # GPQA options are shuffled over the whole dataset in order, then the limit applies (same as a full run)
    rng = random.Random(GPQA_SHUFFLE_SEED)
    problems, skipped = [], list(rows.skipped)
    for k, r in enumerate(items):
        try:
            problems.append(_row_to_problem(bench, r.loc, r.data, k, rows.origin, rng))
        except WorkbenchError as exc:
            skipped.append(str(exc))
    dedupe_ids(problems, first_suffix=1)  # ids must be unique: records are keyed by them when a run resumes
    out = Loaded(problems[:limit] if limit else problems, in_file_order(skipped), rows.origin)
    return out.require("problem")


def load_benchmark(name: str, data: str | None = None, limit: int | None = None,
                   loader: Callable[[str, str | None, str], list] | None = None) -> list[dict]:
    """Problems of a benchmark (see `load_benchmark_report`); bad rows are skipped and logged."""
    return load_benchmark_report(name, data, limit, loader).items


__all__ = ["Benchmark", "BENCHMARKS", "COUNTDOWN_LEVELS", "GPQA_SHUFFLE_SEED", "list_benchmarks", "get_benchmark",
           "load_benchmark", "load_benchmark_report", "countdown_problems", "countdown_problem", "gpqa_options"]
