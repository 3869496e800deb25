"""Grading: is a model's answer equal to the reference answer?

Three kinds of answer:
- `math`: Math-Verify (`parse` + `verify`). The gold is wrapped in `$...$` (a bare `\\dfrac{9}{7}` parses to
  nothing otherwise) unless it already has an unescaped `$` or a `\\boxed`. The prediction is searched for
  `\\boxed{}` first, then for "final answer is ..." phrases and LaTeX / plain expressions.
- `mcq`: an option letter (A-D by default) taken from the prediction by `extract_choice`, which follows
  explicit priorities and returns None (abstains) instead of guessing when no rule applies.
- `countdown`: the expression is parsed with `ast` (numbers, + - * / and parentheses only), evaluated with
  exact fractions, and checked against the target and the numbers it may use (see `benchmarks.py`).

Math-Verify's own timeout uses `signal.alarm`, which only works in a process's main thread, and a sympy
call can run for minutes on a hostile input. So math (and SkyThought) grading runs in a helper process
(`python -m workbench.eval.grading --worker`) that reads one JSON request per line: inside it Math-Verify's
signal timeouts work, and the caller enforces a hard deadline per call from any thread, killing and
restarting the helper when it is exceeded. A timed-out call is graded not equal, with `status="timeout"`.

Every math and mcq grade also records SkyThought's verdict (`skythought=False` skips it): the grader RLT's
published numbers were produced with (SkyThought 4bb8f3e; `../shared/rlt-method.md` section 5), so runs report a
paper-comparable score beside the workbench's and the rate at which the two disagree (SkyThought's grader has
known false positives). It comes from the `skythought` package when that imports (it needs Python < 3.11), else
from the workbench's port of it, `skythought_grader.py`, which needs nothing more; `Verdict.skythought_grader`
says which. Math (SkyThought's sympy path) runs in the helper process, in a call of its own, so a slow SkyThought
check cannot cost the Math-Verify verdict.
"""

from __future__ import annotations

import ast
import json
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from ..errors import WorkbenchError

KINDS = ("math", "mcq", "countdown")
DEFAULT_TIMEOUT_S = 5.0


@dataclass
class Verdict:
    """The grade of one prediction.

    `equal` is the workbench's verdict (Math-Verify for math); `extracted` the answer taken from the
    prediction (None when nothing could be extracted); `status` one of ok, no_answer, timeout, error;
    `skythought` SkyThought's verdict (None when skipped, or for countdown, which is no SkyThought task), with the
    answer it extracted and `skythought_grader` naming the implementation (the package or the port).
    """

    equal: bool
    extracted: str | None = None
    status: str = "ok"
    error: str | None = None
    skythought: bool | None = None
    skythought_extracted: str | None = None
    skythought_grader: str | None = None
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["detail"]:
            d.pop("detail")
        return d


# ============================================================================================ multiple choice

_LETTER_TMPL = r"[\(\[\"'*_`{]*\s*({L})(?![A-Za-z0-9])"
# words that may stand between "answer is" and the letter ("the answer is for sure D", "is definitely C")
_FILLERS = r"(?:(?i:for\s+sure|definitely|clearly|certainly|surely|probably|likely|indeed|therefore|then|now|actually)[\s,]+)*"
_PICK = r"(?:(?i:option|choice|letter)\s*)?"


def _choice_patterns(letters: str) -> list[tuple[str, list[re.Pattern]]]:
    L = f"[{letters}]"
    letter = _LETTER_TMPL.replace("{L}", L)
    # The letter group is always uppercase-only: the (?i:...) scopes keep the words case-insensitive.
    explicit = [
        # "Answer: B", "The answer is (C)", "final answer is B", "correct answer: **D**", "The answer: D"
        re.compile(r"(?i:answer)\*{0,2}\s*(?:(?i:is)\s*|:|=|-)\s*\*{0,2}\s*" + _FILLERS + _PICK + letter),
    ]
    conclusion = [
        # "I think it's B", "I'd go with (D)", "let's finalize B", "I choose C"
        re.compile(r"(?i:\b(?:I\s+think|I\s+believe|I\s+would\s+say|I'd\s+say|I\s+choose|I\s+pick|I\s+select|"
                   r"I'll\s+go\s+with|I\s+will\s+go\s+with|I'd\s+go\s+with|let's\s+go\s+with|finali[sz]e|"
                   r"my\s+choice\s+is|my\s+final\s+choice\s+is)\s*(?:it's|it\s+is|that\s+it's|with)?\s*)"
                   + _PICK + letter),
        # "B is correct", "(C) is the right answer", "Because B is valid"
        re.compile(r"(?<![A-Za-z0-9])[\(\[*]*(" + L + r")[\)\]*]*\s+(?i:is\s+(?:the\s+)?(?:correct|right|valid|true|best)"
                   r"(?:\s+(?:answer|option|choice))?)\b"),
    ]
    return [("explicit", explicit), ("conclusion", conclusion)]


_PATTERN_CACHE: dict[str, list[tuple[str, list[re.Pattern]]]] = {}
_BOXED_RE = re.compile(r"\\boxed\s*\{")


def _boxed_contents(text: str) -> list[str]:
    """The contents of every `\\boxed{...}` (balanced braces), in order."""
    out = []
    for m in _BOXED_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end():i - 1])
    return out


def _bare_letter(s: str, letters: str) -> str | None:
    """`s` is nothing but one option letter with formatting around it: `(C)`, `**C**`, `\\text{(C)}`, `C.`."""
    s = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*", "", s)
    s = re.sub(r"(?i:^\s*(?:option|choice)\s+)", "", s)
    core = re.sub(r"[^A-Za-z0-9]", "", s)
    return core if len(core) == 1 and core in letters else None


def extract_choice(prediction: str, letters: str = "ABCD") -> tuple[str | None, str]:
    """The option letter a response chose, and the rule that found it; (None, "none") when it abstains.

    Priorities, highest first; within a rule the last match in the text wins (a response may correct itself):
    1. `boxed`: the last `\\boxed{...}` that holds only a letter (`\\boxed{C}`, `\\boxed{\\text{(C)}}`).
    2. `explicit`: an answer statement: "Answer: B", "the answer is (C)", "final answer is for sure D".
    3. `conclusion`: "I think it's B", "let's finalize B", "B is correct".
    4. `bare`: the whole response, its first line or its last line is just a letter (`(B)`, `**C**`,
       `D. it can't be A or B`, `B) Paris`).
    Letters are uppercase only, so the article "a" is never read as an answer, and a sentence starting with
    "A " only counts when punctuation follows the letter. Text after the last `</think>` is used when a
    reasoning model wrote one. No rule guesses from letters merely mentioned in the text.
    """
    if not isinstance(prediction, str) or not prediction.strip():
        return None, "none"
    text = prediction
    if "</think>" in text:
        tail = text.rsplit("</think>", 1)[1]
        if tail.strip():
            text = tail
    for content in reversed(_boxed_contents(text)):
        letter = _bare_letter(content, letters)
        if letter:
            return letter, "boxed"
    groups = _PATTERN_CACHE.setdefault(letters, _choice_patterns(letters))
    for name, patterns in groups:
        best: tuple[int, str] | None = None
        for pat in patterns:
            for m in pat.finditer(text):
                if best is None or m.end(1) > best[0]:
                    best = (m.end(1), m.group(1))
        if best:
            return best[1], name
    whole = _bare_letter(text, letters) if len(text) <= 40 else None
    if whole:
        return whole, "bare"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    lead = re.match(r"^[\(\[*_\s]*([" + letters + r"])[\)\]*_]*(?:[.:)]|\s*$)", lines[0])
    if lead:
        return lead.group(1), "bare"
    last = _bare_letter(lines[-1], letters) if len(lines[-1]) <= 20 else None
    if last:
        return last, "bare"
    return None, "none"


def grade_mcq(gold: str, prediction: str, letters: str = "ABCD") -> Verdict:
    """Equal when the extracted letter is the gold letter; no extractable letter is not equal (status no_answer)."""
    gold_letter = _bare_letter(str(gold), letters)
    if gold_letter is None:
        raise WorkbenchError(f"mcq gold {gold!r} is not one of the letters {', '.join(letters)}")
    letter, rule = extract_choice(prediction, letters)
    if letter is None:
        return Verdict(False, None, "no_answer", detail={"rule": rule})
    return Verdict(letter == gold_letter, letter, "ok", detail={"rule": rule})


# ================================================================================================== countdown

_MAX_EXPR_CHARS = 200
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_EXPR_CHARS_RE = re.compile(r"[0-9+\-*/×÷−–()\[\]\s.xX·]+")


class _ExprError(ValueError):
    pass


def _normalise_expr(s: str) -> str:
    s = s.replace("\\times", "*").replace("\\cdot", "*").replace("\\div", "/").replace("×", "*").replace("·", "*")
    s = s.replace("÷", "/").replace("−", "-").replace("–", "-").replace("[", "(").replace("]", ")")
    s = re.sub(r"\\left|\\right", "", s)
    s = re.sub(r"(?<=\d)\s*[xX]\s*(?=[\d(])", "*", s)  # 3 x 4 written with a letter x
    s = s.replace("$", "").replace("\\(", "").replace("\\)", "").replace("{", "(").replace("}", ")")
    return s.strip().rstrip(".")


def evaluate_expression(expr: str) -> tuple[Fraction, list[int]]:
    """Value (exact) and the integer literals of an arithmetic expression: numbers, + - * /, parentheses, unary -.

    Uses `ast` and allows nothing else (no names, calls, powers or attribute access), so it is safe on any
    input. Raises ValueError on anything else, a non-integer literal, or a division by zero.
    """
    if len(expr) > _MAX_EXPR_CHARS:
        raise _ExprError("expression too long")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise _ExprError(f"not an expression: {exc.msg}") from None
    numbers: list[int] = []

    def ev(node) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            numbers.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if b == 0:
                raise _ExprError("division by zero")
            return a / b
        raise _ExprError(f"only numbers, + - * / and parentheses are allowed (found {type(node).__name__})")

    return ev(tree), numbers


def _expression_candidates(text: str) -> list[str]:
    """Expression-like pieces of `text`, best first: each side of `=` that contains an operator."""
    out = []
    for side in _normalise_expr(text).split("="):
        for m in _EXPR_CHARS_RE.finditer(side):
            piece = m.group(0).strip().rstrip(".").strip()
            if re.search(r"\d", piece) and re.search(r"\d\s*[-+*/x×÷]\s*[\d(]|\)\s*[-+*/]", piece):
                out.append(piece)
    return out


def extract_countdown(prediction: str) -> tuple[str | None, str]:
    """The expression a response proposes, and the rule that found it (see `extract_choice` for the idea).

    Priorities: the last `\\boxed{...}`, then the last `<answer>...</answer>`, then the last line that holds
    an arithmetic expression. Within the chosen text, an `expr = value` statement gives `expr`.
    """
    if not isinstance(prediction, str) or not prediction.strip():
        return None, "none"
    text = prediction.rsplit("</think>", 1)[1] if "</think>" in prediction else prediction
    for rule, pieces in (("boxed", _boxed_contents(text)), ("answer_tag", _ANSWER_TAG_RE.findall(text))):
        for piece in reversed(pieces):
            cands = _expression_candidates(piece)
            if cands:
                return cands[0], rule
    for line in reversed([ln for ln in text.splitlines() if ln.strip()]):
        cands = _expression_candidates(line)
        if cands:
            return cands[0], "last_line"
    return None, "none"


def _parse_countdown_gold(gold) -> tuple[Fraction, list[int]]:
    if isinstance(gold, str):
        try:
            gold = json.loads(gold)
        except json.JSONDecodeError:
            raise WorkbenchError('countdown gold must be JSON like {"target": 24, "numbers": [3, 8, 1]}') from None
    if not isinstance(gold, dict) or "target" not in gold or "numbers" not in gold:
        raise WorkbenchError('countdown gold must be an object like {"target": 24, "numbers": [3, 8, 1]}')
    from ..io import as_integer

    target, numbers = as_integer(gold["target"]), gold["numbers"]
    if target is None:
        raise WorkbenchError(f"countdown gold: target must be an integer, got {str(gold['target'])[:40]!r}")
    if not isinstance(numbers, list) or not numbers or any(as_integer(n) is None for n in numbers):
        raise WorkbenchError(f"countdown gold: numbers must be a non-empty list of integers, got {str(numbers)[:60]}")
    return Fraction(target), [as_integer(n) for n in numbers]


def grade_countdown(gold, prediction: str) -> Verdict:
    """Equal when the extracted expression uses each given number at most once and evaluates to the target.

    `gold` is {"target": int, "numbers": [int, ...]} (or that object as JSON text).
    """
    target, numbers = _parse_countdown_gold(gold)
    expr, rule = extract_countdown(prediction)
    if expr is None:
        return Verdict(False, None, "no_answer", detail={"rule": rule})
    try:
        value, used = evaluate_expression(expr)
    except ValueError as exc:
        return Verdict(False, expr, "ok", detail={"rule": rule, "reason": str(exc)})
    pool = list(numbers)
    for n in used:
        if n in pool:
            pool.remove(n)
        else:
            return Verdict(False, expr, "ok", detail={"rule": rule, "reason": f"{n} is not available (numbers {numbers})"})
    ok = value == target
    return Verdict(ok, expr, "ok", detail={"rule": rule, "value": str(value), **({} if ok else {"reason": "wrong value"})})


# ==================================================================================== math: the worker process

_DOLLAR_RE = re.compile(r"(?<!\\)\$")


def wrap_gold(gold: str) -> str:
    """Put a bare gold answer in a LaTeX environment for Math-Verify, unless it already has one."""
    gold = str(gold).strip()
    if _DOLLAR_RE.search(gold) or "\\boxed" in gold:
        return gold
    return f"${gold}$"


def _import_skythought():
    """SkyThought's grading helpers (extract_answer, strip_answer_string, math_equal, get_multiple_choice_answer)."""
    import importlib

    for name in ("skythought.evals.util.math_parsing_util", "skythought_evals.util.math_parsing_util"):
        try:
            return importlib.import_module(name)
        except Exception:  # not installed, or its dependencies do not import here (e.g. latex2sympy2 on antlr 4.13)
            continue
    return None


def skythought_package_available() -> bool:
    """True when the `skythought` package (or its older `skythought_evals` name) is installed."""
    import importlib.util

    return any(importlib.util.find_spec(n) is not None for n in ("skythought", "skythought_evals"))


def skythought_available() -> bool:
    """True: a SkyThought verdict can always be given (the package when it imports, else the port)."""
    return True


def _skythought_package_name(mod) -> str:
    try:
        from importlib.metadata import version

        dist = mod.__name__.split(".")[0].replace("_", "-")
        return f"{dist} {version(dist)} package"
    except Exception:
        return "skythought package"


def _worker_math(gold: str, prediction: str, timeout_s: float) -> dict:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    inner = max(1, int(timeout_s))
    gold_parsed = parse(wrap_gold(gold), extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
                        parsing_timeout=inner)
    if not gold_parsed:
        return {"equal": False, "extracted": None, "status": "error", "error": f"could not parse the gold answer {gold!r}"}
    pred = parse(prediction, extraction_config=[LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
                 parsing_timeout=inner)
    if not pred:
        return {"equal": False, "extracted": None, "status": "no_answer"}
    extracted = pred[-1] if isinstance(pred[-1], str) else str(pred[0])
    equal = bool(verify(gold_parsed, pred, timeout_seconds=inner))
    return {"equal": equal, "extracted": extracted, "status": "ok"}


def _port_skythought(kind: str, gold: str, prediction: str) -> dict:
    from . import skythought_grader

    equal, pred = skythought_grader.verdict(kind, gold, prediction)
    return {"skythought": bool(equal), "skythought_extracted": pred, "skythought_grader": skythought_grader.NAME}


def _worker_skythought(kind: str, gold: str, prediction: str) -> dict:
    """SkyThought's verdict: its own functions when the package imports, else the port (same checks, same order)."""
    mod = _import_skythought() if skythought_package_available() else None
    if mod is None:
        return _port_skythought(kind, gold, prediction)
    name = _skythought_package_name(mod)
    if kind == "mcq":
        pred = mod.get_multiple_choice_answer(prediction)
        return {"skythought": bool(pred == str(gold).strip()), "skythought_extracted": pred, "skythought_grader": name}
    pred = mod.strip_answer_string(mod.extract_answer(prediction))
    return {"skythought": bool(mod.math_equal(pred, mod.strip_answer_string(str(gold)))), "skythought_extracted": pred,
            "skythought_grader": name}


def _worker_main() -> int:
    """Serve grading requests: one JSON object per line on stdin, one answer per line on stdout."""
    import logging
    import signal

    # Ctrl-C (or a notebook kernel's interrupt) reaches the whole process group: the parent decides when this helper
    # ends (it closes stdin, or kills it on a deadline), so the helper ignores SIGINT instead of printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints of the graders must not corrupt the protocol
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        res: dict = {}
        try:
            if req["kind"] == "_sleep":  # for tests of the deadline: a call that takes too long
                time.sleep(float(req.get("seconds", 0)))
            if req["kind"] == "math":
                res.update(_worker_math(req["gold"], req["prediction"], req.get("timeout", DEFAULT_TIMEOUT_S)))
            if req["kind"] == "skythought":  # SkyThought's verdict alone, for an answer of kind `answer_kind`
                req = {**req, "kind": req["answer_kind"], "skythought": True}
            if req.get("skythought"):
                try:
                    res.update(_worker_skythought(req["kind"], req["gold"], req["prediction"]))
                except Exception as exc:  # SkyThought's own failure must not hide our verdict
                    res.update({"skythought": False, "skythought_error": f"{type(exc).__name__}: {exc}"})
        except Exception as exc:
            res = {"equal": False, "extracted": None, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(res) + "\n")
        out.flush()
    return 0


class GradingWorker:
    """A helper process that runs Math-Verify (and SkyThought) with a hard deadline per call.

    Thread-safe (calls are serialised). Killed and restarted when a call exceeds its deadline or the process
    dies; `close()` stops it (also at interpreter exit, since the pipe closes).
    """

    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._buf = b""
        self.restarts = 0

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        root = str(Path(__file__).resolve().parents[2])  # `-m workbench...` works from a clone that is not installed
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen([sys.executable, "-m", "workbench.eval.grading", "--worker"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=env)
        self._buf = b""
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None:
            try:
                self._proc.kill()
                self._proc.wait(timeout=5)
            except Exception:
                pass
            self._proc = None
            self.restarts += 1

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                try:
                    self._proc.stdin.close()  # type: ignore[union-attr]
                    self._proc.wait(timeout=5)
                except Exception:
                    self._proc.kill()
                self._proc = None

    def call(self, request: dict, deadline_s: float) -> dict | None:
        """Send one request; its answer, or None when the deadline passed or the helper died (it is restarted)."""
        with self._lock:
            proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
            try:
                proc.stdin.write((json.dumps(request) + "\n").encode())  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
            except (BrokenPipeError, OSError):
                self._kill()
                return None
            fd = proc.stdout.fileno()  # type: ignore[union-attr]
            end = time.monotonic() + deadline_s
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                while b"\n" not in self._buf:
                    left = end - time.monotonic()
                    if left <= 0 or not sel.select(timeout=left):
                        self._kill()
                        return None
                    chunk = os.read(fd, 65536)
                    if not chunk:  # the helper died
                        self._kill()
                        return None
                    self._buf += chunk
            line, self._buf = self._buf.split(b"\n", 1)
            return json.loads(line)


_WORKER: GradingWorker | None = None
_WORKER_LOCK = threading.Lock()


def _worker() -> GradingWorker:
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = GradingWorker()
        return _WORKER


def _startup_allowance(worker: GradingWorker) -> float:
    """Extra seconds for the first call of a fresh helper process (importing sympy and Math-Verify)."""
    return 0.0 if worker._proc is not None and worker._proc.poll() is None else 60.0


# ==================================================================================================== public


def grade(gold, prediction: str, kind: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
          skythought: bool | str = "auto", letters: str = "ABCD") -> Verdict:
    """Grade one prediction against its gold answer; never hangs longer than about `timeout_s` per call.

    kind: "math" (Math-Verify), "mcq" (option letter) or "countdown" (gold {"target", "numbers"}).
    skythought: "auto" or True records SkyThought's verdict too (math and mcq; from the package when it imports,
    else from the port); False skips it. Raises WorkbenchError for an unknown kind or a malformed gold.
    """
    if kind not in KINDS:
        raise WorkbenchError(f"unknown answer kind {kind!r}; use one of {', '.join(KINDS)}")
    if skythought not in ("auto", True, False):
        raise WorkbenchError(f"skythought must be 'auto', True or False (got {skythought!r})")
    if prediction is None:
        prediction = ""
    if not isinstance(prediction, str):
        raise WorkbenchError(f"prediction must be text, got {type(prediction).__name__}")
    if kind == "countdown":
        return grade_countdown(gold, prediction)
    if gold is None or (isinstance(gold, str) and not gold.strip()):
        raise WorkbenchError("gold answer is empty")
    gold = str(gold)
    if kind == "mcq":
        verdict = grade_mcq(gold, prediction, letters)
    else:
        worker = _worker()
        res = worker.call({"kind": "math", "gold": gold, "prediction": prediction, "timeout": timeout_s},
                          timeout_s + 1.0 + _startup_allowance(worker))
        if res is None:
            verdict = Verdict(False, None, "timeout", error=f"grading took longer than {timeout_s:g} s")
        else:
            verdict = Verdict(bool(res.get("equal")), res.get("extracted"), res.get("status", "ok"), res.get("error"))
    if skythought is not False:
        _add_skythought(verdict, kind, gold, prediction, timeout_s)
    return verdict


def _add_skythought(verdict: Verdict, kind: str, gold: str, prediction: str, timeout_s: float) -> None:
    """Set SkyThought's verdict on `verdict`. The port's mcq check is a regex and runs here; the rest in the helper."""
    if kind == "mcq" and not skythought_package_available():
        res: dict | None = _port_skythought(kind, gold, prediction)
    else:
        worker = _worker()
        res = worker.call({"kind": "skythought", "answer_kind": kind, "gold": gold, "prediction": prediction},
                          timeout_s + 1.0 + _startup_allowance(worker))
    if res is None:  # SkyThought sets no limit; a check that outlives ours counts as not equal, and says so
        from . import skythought_grader

        res = {"skythought": False, "skythought_error": f"SkyThought's check took longer than {timeout_s:g} s",
               "skythought_grader": skythought_grader.NAME if not skythought_package_available() else "skythought package"}
    verdict.skythought = bool(res.get("skythought"))
    verdict.skythought_extracted = res.get("skythought_extracted")
    verdict.skythought_grader = res.get("skythought_grader")
    if res.get("skythought_error"):
        verdict.detail["skythought_error"] = res["skythought_error"]


def grade_rows(rows: Iterable[dict], *, timeout_s: float = DEFAULT_TIMEOUT_S, skythought: bool | str = "auto"):
    """Grade dicts with gold, prediction, kind; yields each row with `equal`, `extracted`, `status` added.

    A row with a missing or bad field gets `equal: false`, `status: "error"` and `error` saying what is wrong,
    so one bad line never stops a file.
    """
    for row in rows:
        out = dict(row)
        missing = [k for k in ("gold", "prediction", "kind") if k not in row]
        try:
            if missing:
                raise WorkbenchError(f"missing field(s) {', '.join(missing)}; each line needs gold, prediction, kind")
            v = grade(row["gold"], row["prediction"], row["kind"], timeout_s=timeout_s, skythought=skythought)
            out.update(equal=v.equal, extracted=v.extracted, status=v.status)
            if v.error:
                out["error"] = v.error
            if v.skythought is not None:
                out.update(skythought_equal=v.skythought, skythought_extracted=v.skythought_extracted,
                           skythought_grader=v.skythought_grader)
        except WorkbenchError as exc:
            out.update(equal=False, extracted=None, status="error", error=str(exc))
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # one bad row never stops a file
            out.update(equal=False, extracted=None, status="error",
                       error=f"cannot grade this row ({type(exc).__name__}: {str(exc)[:200]})")
        yield out


def grade_file(input_path, output_path, *, timeout_s: float = DEFAULT_TIMEOUT_S,
               skythought: bool | str = "auto") -> dict:
    """`workbench grade`: grade a JSONL file (gold, prediction, kind per line), write it with verdicts atomically.

    Returns counts: {"rows", "equal", "errors", "by_kind": {kind: {"rows", "equal"}}, "skythought": {...}}.
    """
    from ..io import check_output, read_rows, write_jsonl_atomic

    check_output(output_path, inputs=[input_path])
    rows: list[dict] = [r.data if r.ok else {"line": r.number, "_bad": r.error} for r in read_rows(input_path)]
    graded = []
    for row in rows:
        if "_bad" in row:
            graded.append({"line": row["line"], "equal": False, "extracted": None, "status": "error", "error": row["_bad"]})
        else:
            graded.extend(grade_rows([row], timeout_s=timeout_s, skythought=skythought))
    write_jsonl_atomic(output_path, graded)
    return summarize_verdicts(graded)


def summarize_verdicts(rows: list[dict]) -> dict:
    """Counts of a list of graded rows, per kind, with SkyThought agreement when its verdicts are present."""
    out: dict = {"rows": len(rows), "equal": sum(bool(r.get("equal")) for r in rows),
                 "errors": sum(r.get("status") == "error" for r in rows),
                 "timeouts": sum(r.get("status") == "timeout" for r in rows), "by_kind": {}}
    for r in rows:
        k = out["by_kind"].setdefault(r.get("kind", "?"), {"rows": 0, "equal": 0})
        k["rows"] += 1
        k["equal"] += bool(r.get("equal"))
    sky = [r for r in rows if r.get("skythought_equal") is not None]
    if sky:
        out["skythought"] = {"rows": len(sky), "equal": sum(bool(r["skythought_equal"]) for r in sky),
                             "disagree": sum(bool(r["skythought_equal"]) != bool(r.get("equal")) for r in sky),
                             "grader": ", ".join(sorted({str(r.get("skythought_grader")) for r in sky}))}
    return out


def close_worker() -> None:
    """Stop the grading helper process (it is restarted on the next call)."""
    if _WORKER is not None:
        _WORKER.close()


def skythought_grader_name() -> str:
    """Which implementation gives SkyThought's verdict here: the package, when it imports, else the port."""
    from . import skythought_grader

    if skythought_package_available():
        mod = _import_skythought()
        if mod is not None:
            return _skythought_package_name(mod)
    return skythought_grader.NAME


def math_verify_version() -> str:
    try:
        from importlib.metadata import version

        return version("math-verify")
    except Exception:
        return "unknown"


__all__ = ["Verdict", "grade", "grade_rows", "grade_file", "extract_choice", "extract_countdown", "grade_mcq",
           "grade_countdown", "evaluate_expression", "wrap_gold", "skythought_available",
           "skythought_package_available", "skythought_grader_name", "summarize_verdicts",
           "close_worker", "GradingWorker", "math_verify_version", "DEFAULT_TIMEOUT_S", "KINDS"]


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(_worker_main())
    print("usage: python -m workbench.eval.grading --worker   (internal: the grading helper process)", file=sys.stderr)
    sys.exit(2)
