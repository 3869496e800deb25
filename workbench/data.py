"""Problems and explanations: the shipped demo set and conversions between formats."""

from __future__ import annotations

import json
from importlib import resources

DEMO_FIELDS = ("id", "topic", "difficulty", "question", "solution", "rlt_explanation", "r1_trace", "illustrative")


def load_demo_set() -> list[dict]:
    """The illustrative demo problems shipped with the package (written for the project, not from a benchmark).

    Each has question, reference solution, an RLT-style explanation and an R1-style trace with hesitations.
    """
    text = resources.files("workbench").joinpath("data/demo_set.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line.strip()]  # "\n" only: U+2028 is text


def demo_score_items(problems: list[dict] | None = None) -> list[dict]:
    """Score items for the demo: each problem's RLT explanation and its R1 trace, as explanation bodies."""
    problems = load_demo_set() if problems is None else problems
    items = []
    for p in problems:
        for source, key in (("rlt", "rlt_explanation"), ("r1", "r1_trace")):
            if p.get(key):
                items.append({"id": f"{p['id']}:{source}", "problem": p["id"], "source": source,
                              "question": p["question"], "solution": p["solution"], "explanation": p[key]})
    return items


# ================================================================================================================
# The data layer. Every command, the app, training and evaluation read problems through here:
#
#   load_rows(spec)          a file (workbench.io.read_rows: JSONL / JSON / CSV / Parquet), a folder of such files or
#                            a saved `datasets` folder, or a hub id (one rule: `is_hub_id`) -> Loaded rows
#   normalize_problem(row)   one row normaliser: Bespoke-Stratos rows (`conversations`) and custom rows (`question`
#                            or `prompt`, `solution`, optional traces and explanations)
#   load_problems(spec)      the app / generate view: {"id", "question", "solution", "sources", "completions", "meta"}
#   training.datasets.load_problems   the training view: {"id", "question", "solution", "reasoning_trace"}
#   eval.benchmarks.load_benchmark    the evaluation view: {"id", "question", "gold", "kind", "meta"}
#
# A bad row never aborts a file: it is skipped, reported (file, line, column) in `Loaded.skipped` and logged, and the
# rest is read. Only a file with no usable row at all, or a problem with the whole file, raises WorkbenchError.
# ================================================================================================================

import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

from .errors import WorkbenchError  # noqa: E402
from .io import TABLE_SUFFIXES, Row, _type_name, read_rows  # noqa: E402

QUESTION_COLUMNS = ("question", "prompt")  # the official code reads `prompt`; accept both
TRACE_COLUMNS = ("reasoning_trace", "trace")  # an R1-style reasoning trace (the "r1" source in the app)
EXPLANATION_COLUMNS = ("explanation",)  # a teacher explanation body; `completion` is a raw teacher completion
META_COLUMNS = ("topic", "difficulty", "level", "type", "source", "subject")
SHOWN_ERRORS = 3  # skipped rows named in a message; all of them are in Loaded.skipped

log = logging.getLogger("workbench.data")


@dataclass
class Loaded:
    """What a loader read: the usable items, and one message per skipped row (file, line, column, what is wrong)."""

    items: list
    skipped: list[str] = field(default_factory=list)
    origin: str = ""

    @property
    def total(self) -> int:
        return len(self.items) + len(self.skipped)

    def note(self) -> str:
        """One line for a user: how many rows were skipped and why (empty when none was)."""
        if not self.skipped:
            return ""
        shown = "; ".join(m.removeprefix(f"{self.origin}: ") for m in self.skipped[:SHOWN_ERRORS])
        shown += "; ..." if len(self.skipped) > SHOWN_ERRORS else ""
        return f"skipped {len(self.skipped)} of {self.total} rows of {self.origin}: {shown}"

    def require(self, what: str = "row") -> Loaded:
        """Raise WorkbenchError when nothing is usable; log the skipped rows otherwise."""
        if not self.items:
            first = "; ".join(self.skipped[:SHOWN_ERRORS]) or "it has no rows"
            raise WorkbenchError(f"{self.origin}: no usable {what}" + (f" ({len(self.skipped)} bad)" if self.skipped
                                                                        else "") + f": {first}")
        if self.skipped:
            log.warning("%s", self.note())
        return self


def demo_problems() -> list[dict]:
    """The demo set in the normalised problem shape: sources "rlt" (RLT explanation) and "r1" (R1 trace)."""
    out = []
    for p in load_demo_set():
        sources = {k: p[f] for k, f in (("rlt", "rlt_explanation"), ("r1", "r1_trace")) if p.get(f)}
        meta = {k: p[k] for k in ("topic", "difficulty", "illustrative") if k in p}
        out.append({"id": p["id"], "question": p["question"], "solution": p["solution"], "sources": sources,
                    "completions": {}, "meta": meta})
    return out


def in_file_order(messages: list[str]) -> list[str]:
    """Messages about rows sorted by their line (or row) number, so a report reads from the top of the file."""
    def key(m: str) -> int:
        found = re.search(r": (?:line|row) (\d+)", m)
        return int(found.group(1)) if found else 0

    return sorted(messages, key=key)


def is_hub_id(spec: str) -> bool:
    """The one rule for hub ids: `org/name` (letters, digits, `_.-`) that is not a local path."""
    spec = str(spec)
    return (bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", spec)) and not spec.startswith((".", "~"))
            and not os.path.exists(spec))


def _hub_rows(spec: str, config: str | None, split: str) -> list[Row]:
    try:
        import datasets

        ds = datasets.load_dataset(spec, config, split=split)
    except Exception as exc:  # offline, gated, missing: all the same to the user
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WorkbenchError(
            f"could not load the hub dataset {spec!r} (config {config}, split {split}; "
            f"{'HF_HUB_OFFLINE=1 is set' if offline else 'is the Hub reachable?'}): {why}. On a machine with network "
            f"access, download it (`hf download {spec} --repo-type dataset --local-dir DIR`; a gated dataset such "
            f"as GPQA needs its terms accepted and `hf auth login` first) and pass the folder, or export the split "
            f"to a .jsonl/.parquet file and pass that (`--data` for an evaluation)"
        ) from None
    return [Row(f"row {k}", dict(r)) for k, r in enumerate(ds, 1)]


def _folder_rows(path: Path, config: str | None, split: str, limit: int | None) -> list[Row]:
    """A folder: a saved `datasets` folder, table files (those named after the split first), or a downloaded repo."""
    if any((path / f).is_file() for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as exc:
            raise WorkbenchError(f"{path}: could not read it as a saved dataset "
                                 f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise WorkbenchError(f"{path}: no split {split!r} (has {', '.join(ds)})")
            ds = ds[split]
        return [Row(f"row {k}", dict(r)) for k, r in enumerate(ds, 1)]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)
    if files:
        named = [p for p in files if p.stem.startswith(split)] or files
        rows: list[Row] = []
        for f in named:
            rows.extend(read_rows(f, limit))
            if limit and sum(r.ok for r in rows) >= limit:
                break
        return rows
    try:
        import datasets

        ds = datasets.load_dataset(str(path), config, split=split)
    except Exception as exc:
        raise WorkbenchError(f"{path}: a folder with no .jsonl/.json/.parquet/.csv file that `datasets` can read "
                             f"either (split {split}): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                             ) from None
    return [Row(f"row {k}", dict(r)) for k, r in enumerate(ds, 1)]


def load_rows(spec: str | Path, split: str = "train", config: str | None = None, limit: int | None = None,
              hub: Callable[[str, str | None, str], list] | None = None) -> Loaded:
    """Rows of a file, a folder or a hub id (`hub(spec, config, split)` replaces the hub access, e.g. in tests).

    Bad rows are in `skipped`; a problem with the source as a whole raises WorkbenchError.
    """
    text = os.path.expanduser(str(spec).strip())
    path = Path(text)
    if path.is_dir():
        rows = _folder_rows(path, config, split, limit)
    elif path.exists() or Path(text).suffix.lower() in TABLE_SUFFIXES or not is_hub_id(text):
        if not path.exists():
            raise WorkbenchError(f"{text}: no such file or folder" + ("" if "/" in text or path.suffix else
                                                                       ", and not a hub id (org/name)"))
        rows = read_rows(path, limit)
    else:
        rows = [r if isinstance(r, Row) else Row(*r) if isinstance(r, tuple) else Row("row ?", r)
                for r in (hub or _hub_rows)(text, config, split)]
        if limit:
            rows = rows[:limit]
    return Loaded([r for r in rows if r.ok], [r.error for r in rows if not r.ok], text)


def _show(v) -> str:
    return json.dumps(v, default=str, ensure_ascii=False)[:40]


def _text(where: str, row: dict, names: tuple[str, ...], required: bool = True) -> tuple[str | None, str | None]:
    """(value, column) of the first of `names` present in row, checked to be text (non-empty when required)."""
    for name in names:
        if name in row and row[name] is not None:
            v = row[name]
            if isinstance(v, list) and name in QUESTION_COLUMNS:  # a conversational prompt: its last user message
                v = next((m.get("content") for m in reversed(v) if isinstance(m, dict) and m.get("role") == "user"), v)
            if not isinstance(v, str):
                raise WorkbenchError(f"{where}, column {name!r}: expected text, got {_type_name(v)} ({_show(v)}); "
                                     "write it as a string")
            if required and not v.strip():
                raise WorkbenchError(f"{where}, column {name!r}: is empty")
            return v, name
    if required:
        alts = " or ".join(repr(n) for n in names)
        raise WorkbenchError(f"{where}: missing column {alts} (the row has: {', '.join(map(str, row)) or 'nothing'})")
    return None, None


def _stratos(where: str, row: dict, tags) -> tuple[str, str, str | None]:
    """(question, solution, thought) of a Bespoke-Stratos row: conversations = [user, assistant]."""
    from . import formats

    conv = row.get("conversations")
    if not isinstance(conv, list) or len(conv) < 2:
        raise WorkbenchError(f"{where}, column 'conversations': expected a list of at least 2 turns "
                             f"(user, assistant), got {_type_name(conv)}")
    turns = []
    for t in conv:
        if not isinstance(t, dict):
            raise WorkbenchError(f"{where}, column 'conversations': each turn must be an object, got {_type_name(t)}")
        role = t.get("from", t.get("role"))
        value = t.get("value", t.get("content"))
        if not isinstance(value, str):
            raise WorkbenchError(f"{where}, column 'conversations': turn {str(role)[:20]!r} has no text "
                                 "('value' or 'content')")
        turns.append((role, value))
    users = [v for r, v in turns if r in ("user", "human")]
    assistants = [v for r, v in turns if r in ("assistant", "gpt")]
    if not users or not assistants:
        raise WorkbenchError(f"{where}, column 'conversations': needs a user and an assistant turn")
    if not users[0].strip():
        raise WorkbenchError(f"{where}, column 'conversations': the user turn is empty")
    thought, solution = formats.split_student_response(assistants[0], tags)
    if solution is None or not solution.strip():
        raise WorkbenchError(f"{where}, column 'conversations': the assistant turn has no "
                             f"{tags.solution_start}...{tags.solution_end} part")
    # the solution exactly as it stands between the tags (Bespoke-Stratos pads it with "\n\n"): the training path
    # and the official code keep that padding, so the teacher prompt is the same everywhere
    return users[0], solution, thought


def normalize_problem(row: dict, where: str, tags=None) -> dict:
    """One row -> {"id" (str or None), "question", "solution", "trace", "explanation", "rlt_explanation", "meta"}.

    `trace` is an R1-style reasoning trace (`reasoning_trace`, `trace`, or the thought of a Stratos answer),
    `explanation` a teacher explanation body (`explanation`, or the body of a raw `completion`); both raw, as in
    the file. `where` ("file: line 3") starts every error message. Raises WorkbenchError naming the column.
    """
    from . import formats

    tags = tags or formats.STRATOS
    if not isinstance(row, dict):
        raise WorkbenchError(f"{where}: expected an object, got {_type_name(row)}")
    trace = explanation = None
    if "conversations" in row and row["conversations"] is not None:
        question, solution, trace = _stratos(where, row, tags)
    else:
        question, _ = _text(where, row, QUESTION_COLUMNS)
        solution, _ = _text(where, row, ("solution",))
        trace, _ = _text(where, row, TRACE_COLUMNS, required=False)
        explanation, _ = _text(where, row, EXPLANATION_COLUMNS, required=False)
        completion, _ = _text(where, row, ("completion",), required=False)
        if explanation is None and completion is not None:
            explanation = formats.parse_completion(completion, tags).body
    rlt, _ = _text(where, row, ("rlt_explanation",), required=False)
    rid = row.get("id")
    pid = str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) and str(rid).strip() else None
    meta = {k: row[k] for k in META_COLUMNS if isinstance(row.get(k), (str, int, float)) and not isinstance(row[k], bool)}
    return {"id": pid, "question": question, "solution": solution, "trace": trace, "explanation": explanation,
            "rlt_explanation": rlt, "meta": meta}


def normalize_rows(loaded: Loaded, convert: Callable[[dict, str], dict]) -> Loaded:
    """Apply `convert(row, where)` to every row; a row it rejects (WorkbenchError) joins `skipped`."""
    out, skipped = [], list(loaded.skipped)
    for row in loaded.items:
        where = f"{loaded.origin}: {row.loc}"
        try:
            out.append(convert(row.data, where) | {"_loc": row.loc})
        except WorkbenchError as exc:
            skipped.append(str(exc))
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # nothing in one row aborts a file
            skipped.append(f"{where}: not usable ({type(exc).__name__}: {str(exc)[:200]})")
    return Loaded(out, in_file_order(skipped), loaded.origin)


def dedupe_ids(items: list[dict], first_suffix: int = 2) -> None:
    """Make ids unique in place (`x`, `x#2`, `x#3`...): records and joins are keyed by them. Evaluation runs
    number repeats from `#1` (`first_suffix=1`), as their records on disk already do."""
    seen: dict[str, int] = {}
    for it in items:
        n = seen.get(it["id"], 0)
        seen[it["id"]] = n + 1
        if n:
            it["id"] = f"{it['id']}#{n + first_suffix - 1}"


# The workbench's own teacher before and after RL training on this kind of machine (recipes/cpu/teacher_rlt.yaml):
# the held-out samples its run recorded. Unlike the demo set's hand-written texts, these are real generations.
TRAINED_TEACHER = "cpu-teacher"
TRAINED_TEACHER_RUN = "results/cpu/teacher_rlt"
TRAINED_TEACHER_SOURCES = {"before": "heldout_before.jsonl", "after": "heldout_after.jsonl"}


def repo_path_of_run(run: str | Path | None = None) -> Path:
    """The folder of the recorded CPU RLT run (results/cpu/teacher_rlt in the repository)."""
    from .io import repo_path

    return repo_path(run or TRAINED_TEACHER_RUN)


def trained_teacher_report(run: str | Path | None = None, limit: int | None = None) -> Loaded:
    """Problems with two sources, "before" and "after" (RL training): the first sample of each held-out problem that
    the run recorded, as raw completions (a missing end tag is penalised when scored). The rewards the run recorded
    are kept in meta["recorded"]; score with the run's reward configuration (`training.config.reward_config(run)`)
    to reproduce them."""
    folder = repo_path_of_run(run)
    problems: dict[str, dict] = {}
    skipped: list[str] = []
    for source, name in TRAINED_TEACHER_SOURCES.items():
        for row in read_rows(folder / name):
            if not row.ok:
                skipped.append(row.error)
                continue
            r = row.data
            pid = str(r.get("problem") or r.get("id"))
            if not isinstance(r.get("completion"), str) or not isinstance(r.get("question"), str):
                skipped.append(f"{folder / name}: {row.loc}: no question or completion")
                continue
            pr = problems.setdefault(pid, {"id": pid, "question": r["question"], "solution": r["solution"],
                                           "sources": {}, "completions": {},
                                           "meta": {"topic": "arithmetic (held out)", "recorded": {},
                                                    "file": str(folder), "location": row.loc}})
            if source in pr["completions"]:
                continue  # the first sample only: no picking
            from . import formats

            pr["completions"][source] = r["completion"]
            pr["sources"][source] = formats.parse_completion(r["completion"]).body.strip()
            if isinstance(r.get("reward"), (int, float)):
                pr["meta"]["recorded"][source] = r["reward"]
    items = list(problems.values())
    return Loaded(items[:limit] if limit else items, skipped, str(folder)).require("problem")


def run_log_path(spec) -> str | None:
    """The path (with ~ expanded) when `spec` names a training run's completions log (a run folder, its completions/
    folder, a completions_*.parquet or completions.jsonl; see workbench.runlog), else None."""
    from .runlog import is_run_log

    text = os.path.expanduser(str(spec or "").strip())
    return text if text and text not in ("demo", TRAINED_TEACHER) and is_run_log(text) else None


def run_log_report(spec: str | Path, steps=None, limit: int | None = None, columns: int | None = None,
                   tokenizer=None) -> tuple[Loaded, object, list[int]]:
    """Problems from a training run's completions log (TRL's `completions/*.parquet` or the workbench's
    `completions.jsonl`; see workbench.runlog): those sampled at `steps` (a list, or text such as "first,last", "12",
    "10-20"; None: all), one source per step and sample ("step 12", "step 12 #2"), at most `columns` sources per
    problem (as many samples of each step as fit). `tokenizer` reads TRL's prompts when the run saved none.
    Returns (Loaded, the RunLog, the steps chosen)."""
    from . import runlog

    log = runlog.cached_run_log(spec, fallback_tokenizer=tokenizer)
    chosen = runlog.parse_steps(steps, log.steps)
    items = runlog.problems_at(log, chosen, max(1, columns // len(chosen)) if columns else None)
    return Loaded(items[:limit] if limit else items, list(log.skipped), str(spec)).require("problem"), log, chosen


def load_problems_report(spec: str | None = None, limit: int | None = None) -> Loaded:
    """The app / generate view: problems from "demo" (or None), "cpu-teacher" (the workbench's own teacher before
    and after RL training, recorded under results/cpu/), a file, a folder or a hub id, with skipped rows.
    A training run's completions log (a run folder, its completions/ folder, a completions_*.parquet or
    completions.jsonl) gives every logged step's samples (see `run_log_report` to choose steps).

    Sources: "r1" (a reasoning trace or a Stratos thought) and "rlt" (an `rlt_explanation` column).
    """
    if spec is None or str(spec).strip() in ("", "demo"):
        problems = demo_problems()
        return Loaded(problems[:limit] if limit else problems, [], "the demo set")
    if str(spec).strip() == TRAINED_TEACHER:
        return trained_teacher_report(limit=limit)
    if (path := run_log_path(spec)) is not None:
        return run_log_report(path, limit=limit)[0]
    loaded = normalize_rows(load_rows(spec, limit=limit), normalize_problem)
    out = []
    stem = Path(loaded.origin).stem if not is_hub_id(loaded.origin) else loaded.origin.split("/")[-1]
    for k, p in enumerate(loaded.items, 1):
        sources = {}
        if p["trace"] and p["trace"].strip():
            sources["r1"] = p["trace"].strip()
        if p["rlt_explanation"] and p["rlt_explanation"].strip():
            sources["rlt"] = p["rlt_explanation"].strip()
        out.append({"id": p["id"] or f"{stem}-{k}", "question": p["question"], "solution": p["solution"],
                    "sources": sources, "completions": {},
                    "meta": {**p["meta"], "file": loaded.origin, "location": p["_loc"]}})
    dedupe_ids(out)
    return Loaded(out, loaded.skipped, loaded.origin).require("problem")


def load_problems(spec: str | None = None, limit: int | None = None) -> list[dict]:
    """Problems from "demo" (or None), a file (Bespoke-Stratos or custom columns), a folder or a hub id.

    Bad rows are skipped and logged (see `load_problems_report` for the list); no usable row raises WorkbenchError.
    """
    return load_problems_report(spec, limit).items


def load_problem_file(path: str | Path, limit: int | None = None) -> list[dict]:
    """Problems from a JSONL/JSON/Parquet/CSV file: Bespoke-Stratos rows or question/solution/reasoning_trace."""
    return load_problems(str(path), limit)


def load_stratos(source: str, limit: int | None = None) -> list[dict]:
    """Bespoke-Stratos-format problems from a file or a hub id (e.g. bespokelabs/Bespoke-Stratos-17k)."""
    return load_problems(source, limit)


def load_explanation_file(path: str | Path) -> list[dict]:
    """Teacher explanations: rows with `question` (or `prompt`) and `explanation` (the body) or `completion`
    (raw teacher output, cut at the first end tag; kept so a missing tag is penalised when scored).

    Bad rows are skipped and logged; a file with no usable row raises WorkbenchError."""
    return load_explanations_report(path).items


def _explanation_row(row: dict, where: str) -> dict:
    from . import formats

    q, _ = _text(where, row, QUESTION_COLUMNS)
    completion, _ = _text(where, row, ("completion",), required=False)
    if completion is not None:
        body = formats.parse_completion(completion).body.strip()
    else:
        body, _ = _text(where, row, ("explanation",), required=False)
        if body is None:
            raise WorkbenchError(f"{where}: missing column 'explanation' or 'completion' "
                                 f"(the row has: {', '.join(map(str, row))})")
        body = body.strip()
    if not body:
        raise WorkbenchError(f"{where}, column {'completion' if completion is not None else 'explanation'!r}: is empty")
    return {"question": q, "explanation": body, "completion": completion}


def load_explanations_report(path: str | Path) -> Loaded:
    """`load_explanation_file` with the skipped rows."""
    loaded = normalize_rows(load_rows(path), _explanation_row)
    for e in loaded.items:
        e["location"] = e.pop("_loc")
    return loaded.require("explanation")


def normalize_question(text: str) -> str:
    """Join key for explanations: the question with runs of whitespace collapsed."""
    return " ".join(text.split())


def join_explanations(problems: list[dict], explanations: list[dict], source: str,
                      path: str | Path = "explanations") -> dict:
    """Add explanations to the problems (in place) as source `source`, matched by question text.

    Returns a report {"matched", "unmatched" (locations), "duplicates"}. Raises WorkbenchError when no
    explanation matches a problem, so a wrong file is noticed.
    """
    if not source or not source.strip():
        raise WorkbenchError("give the explanation source a name")
    by_q: dict[str, list[dict]] = {}
    for pr in problems:
        by_q.setdefault(normalize_question(pr["question"]), []).append(pr)
    matched, unmatched, duplicates, done = 0, [], 0, set()
    for e in explanations:
        key = normalize_question(e["question"])
        targets = by_q.get(key)
        if not targets:
            unmatched.append(e.get("location", "?"))
            continue
        if key in done:
            duplicates += 1
            continue
        done.add(key)
        for pr in targets:
            pr["sources"][source] = e["explanation"]
            if e.get("completion") is not None:
                pr.setdefault("completions", {})[source] = e["completion"]
            else:
                pr.setdefault("completions", {}).pop(source, None)
            matched += 1
    if not matched:
        raise WorkbenchError(
            f"{path}: none of its {len(explanations)} explanations matches a loaded problem (joined by question "
            "text with whitespace collapsed); is it for the same data set?"
        )
    return {"matched": matched, "unmatched": unmatched, "duplicates": duplicates}
