"""SkyThought's answer checking, ported: the grade RLT's published numbers were produced with.

The paper evaluated with SkyThought at commit 4bb8f3e (`../shared/rlt-method.md` section 5). Its grading code
is the same in the PyPI wheel `skythought==0.1.0`, but that wheel requires Python < 3.11 and vLLM 0.7.0, and its
LaTeX parser `latex2sympy2` pins antlr4-python3-runtime 4.7.2, which cannot live beside Math-Verify's 4.13.2. So
the workbench carries this port, which needs nothing beyond the project's own dependencies. It follows, step by
step and in the same order (NovaSky-AI/SkyThought@4bb8f3e):

- `skythought/evals/util/math_parsing_util.py`: `extract_answer`, `strip_answer_string`, `math_equal`,
  `symbolic_equal`, `get_multiple_choice_answer` (themselves taken from the Qwen2.5-Math evaluation code);
- `skythought/evals/tasks/math/math_handler.py` (MATH-500; AIME 2024 uses the same check):
  `math_equal(strip(extract_answer(output)), strip(answer))`;
- `skythought/evals/tasks/gpqa_diamond/gpqa_diamond_handler.py`: `answer == get_multiple_choice_answer(output)`;
- `word2number==1.1` (`w2n.word_to_num`), which `strip_answer_string` calls to turn number words into digits.

Quirks are kept on purpose: they are what the published numbers measured. E.g. a GPQA answer is the last
standalone A-D anywhere in the upper-cased text ("Answer: B. Not C." reads as C), a math answer with no `\\boxed`
falls back to the last number in the text, and a unit in `\\text{...}` at the end is dropped.

Two parts depend on libraries, and the port uses what SkyThought's environment effectively ran:
- `symbolic_equal` tries sympy's `parse_latex`, then `parse_expr`, then `latex2sympy`. In SkyThought's pinned
  environment `parse_latex` always raised ImportError (sympy wants antlr 4.11, latex2sympy2 installs 4.7.2), so the
  port starts at `parse_expr`.
- `latex2sympy` is `latex2sympy2_extended` (Math-Verify's fork, already installed) with its extra normalisation
  turned off, standing in for `latex2sympy2==1.9.1`. The two grammars differ on a few forms, and there the port's
  verdict can differ: a mixed number `1\\frac{1}{2}` (1.9.1 reads 1*1/2, the fork 3/2), a brace set or `;` list
  (1.9.1 makes an ordered list, the fork a set), and text after an answer (antlr 4.7.2's error recovery reads
  `10).I hope` as 10, the fork refuses it). `tests/test_skythought_port.py` checks the port against verdicts
  recorded from the original code (skythought 0.1.0 with latex2sympy2 1.9.1, antlr 4.7.2, sympy 1.13.1) on the
  334 peer grader cases and 84 cases chosen to hit each rule: 413 of 418 agree, and the 5 that differ are these.

SkyThought sets no time limit; `symbolic_equal` can run for a long time on a hostile answer. The workbench runs this
module inside its grading helper process, under the same hard deadline as Math-Verify (see `grading.py`).
"""

from __future__ import annotations

import math
import re

SOURCE = "NovaSky-AI/SkyThought@4bb8f3e skythought/evals/util/math_parsing_util.py"
NAME = "workbench port of SkyThought 4bb8f3e"

# ========================================================================================= word2number 1.1

_WORD_VALUES = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000, "million": 10**6,
    "billion": 10**9, "point": ".",
}
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _group_value(words: list[str]) -> int:
    """w2n.number_formation: the value of the words before a multiplier (IndexError on no words, as there)."""
    v = [_WORD_VALUES[w] for w in words]
    if len(v) == 4:
        return v[0] * v[1] + v[2] + v[3]
    if len(v) == 3:
        return v[0] * v[1] + v[2]
    if len(v) == 2:
        return v[0] * v[1] if 100 in v else v[0] + v[1]
    return v[0]


def word_to_num(text: str):
    """w2n.word_to_num: the number that the number words in `text` spell; raises when there is none.

    Words that are not number words are skipped ("x plus one" gives 1), as in word2number.
    """
    if not isinstance(text, str):
        raise ValueError("not a string")
    text = text.replace("-", " ").lower()
    if text.isdigit():
        return int(text)
    words = [w for w in text.strip().split() if w in _WORD_VALUES]
    if not words:
        raise ValueError("no number words")
    if any(words.count(w) > 1 for w in ("thousand", "million", "billion", "point")):
        raise ValueError("redundant number word")
    decimals: list[str] = []
    if "point" in words:
        at = words.index("point")
        words, decimals = words[:at], words[at + 1:]
    bi, mi, th = (words.index(w) if w in words else -1 for w in ("billion", "million", "thousand"))
    if (th > -1 and (th < mi or th < bi)) or (mi > -1 and mi < bi):
        raise ValueError("malformed number")
    total = 0
    if len(words) == 1:
        total += _WORD_VALUES[words[0]]
    elif words:
        if bi > -1:
            total += _group_value(words[:bi]) * 10**9
        if mi > -1:
            total += _group_value(words[bi + 1:mi] if bi > -1 else words[:mi]) * 10**6
        if th > -1:
            start = mi + 1 if mi > -1 else (bi + 1 if bi > -1 else 0)
            total += _group_value(words[start:th]) * 1000
        if th > -1 and th != len(words) - 1:
            total += _group_value(words[th + 1:])
        elif mi > -1 and mi != len(words) - 1:
            total += _group_value(words[mi + 1:])
        elif bi > -1 and bi != len(words) - 1:
            total += _group_value(words[bi + 1:])
        elif th == mi == bi == -1:
            total += _group_value(words)
    if decimals:
        if all(w in _DIGIT_WORDS for w in decimals):
            total += float("0." + "".join(str(_WORD_VALUES[w]) for w in decimals))
    return total


def _convert_word_number(text: str) -> str:
    try:
        return str(word_to_num(text))
    except Exception:
        return text


# ============================================================================================ normalisation


def _fix_fracs(s: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`, `\\frac1b` -> `\\frac{1}{b}`, `\\frac1{72}` -> `\\frac{1}{72}`."""
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part[:1] == "{":
            out += part
        elif len(part) < 2:
            return s
        elif part[1] != "{":
            out += "{" + part[0] + "}{" + part[1] + "}" + part[2:]
        else:
            out += "{" + part[0] + "}" + part[1:]
    return out


def _fix_a_slash_b(s: str) -> str:
    """`3/4` -> `\\frac{3}{4}` when both sides are integers (or contain sqrt)."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    a, b = parts
    try:
        a = a if "sqrt" in a else int(a)
        b = b if "sqrt" in b else int(b)
        if s != f"{a}/{b}":
            return s
        return "\\frac{" + str(a) + "}{" + str(b) + "}"
    except Exception:
        return s


def _number_word(m: re.Match) -> str:
    word = m.group(1).lower()
    return m.group(0) if _convert_word_number(word) == word else _convert_word_number(word)


def strip_answer_string(s) -> str:
    """SkyThought's `strip_answer_string`: normalise an answer (fractions, number words, units, spacing)."""
    s = str(s).strip().replace("\n", "").rstrip(".")
    s = s.replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    s = re.sub(r"\\text\{([a-zA-Z]+)\}", _number_word, s)
    s = re.sub(r"(cm|inches)\}\^2", r"\1}", s)
    no_unit = re.sub(r"\\text{.*?}$", "", s).strip()  # a trailing \text{...} (a unit), unless it is all there is
    if no_unit != "" and no_unit != s:
        s = no_unit
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = _convert_word_number(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for key in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(key, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    # (SkyThought's "strip {x} / (x) / [x] when alphanumeric" test can never pass: a bracketed string is not
    # alphanumeric. Its two quote replacements discard their result. Both are no-ops and left out.)
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty")
    s = s.replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox{.*?}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:  # "k = 5" -> "5"
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    s = _fix_a_slash_b(_fix_fracs(s))
    s = re.sub(r"\\(?=\-?\d+(\\|\)|,|\]|$))", "", s)
    s = re.sub(r"thgrade$", "", s)
    if re.fullmatch(r"(\s*-?\d+\s*,)*\s*-?\d+\s*", s):  # a list of integers: sorted
        try:
            values = [int(x) for x in s.split(",")]
        except Exception:
            values = [-1, -1]
        s = ",".join(str(v) for v in sorted(values))
    return s


# =============================================================================================== extraction


def extract_answer(text: str) -> str:
    """SkyThought's `extract_answer`: the last `\\boxed{}`, else "the answer is ...", else the last number."""
    text = text.replace("\u043a\u0438", "")
    if "final answer is $" in text and "$. I hope" in text:
        pred = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        tail = text.split("boxed")[-1]
        if not tail:
            return ""
        if tail[0] == "{":
            depth, pred = 1, ""
            for c in tail[1:]:
                depth += {"{": 1, "}": -1}.get(c, 0)
                if depth == 0:
                    break
                pred += c
        else:
            pred = tail.split("$")[0].strip()
    elif "he answer is" in text:
        pred = text.split("he answer is")[-1].strip()
    elif "final answer is" in text:
        pred = text.split("final answer is")[-1].strip()
    elif "答案是" in text:
        pred = text.split("答案是")[1].strip().split("\n\n")[0].strip()
    else:
        numbers = re.findall(r"-?\d*\.?\d+", text.replace(",", ""))
        pred = numbers[-1] if numbers else ""
    pred = re.sub(r"\n\s*", "", pred)
    if pred[:1] == ":":
        pred = pred[1:]
    if pred[-1:] == ".":
        pred = pred[:-1]
    if pred[-1:] == "/":
        pred = pred[:-1]
    return strip_answer_string(pred)


def get_multiple_choice_answer(text: str) -> str:
    """SkyThought's `get_multiple_choice_answer`: the last standalone A-D in the upper-cased text, else the text."""
    letters = re.findall(r"\b(A|B|C|D)\b", text.upper())
    pred = letters[-1] if letters else text.strip().strip(".")
    return pred.rstrip(".").rstrip("/")


def _choice_answer_clean(pred: str) -> str:
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    letters = re.findall(r"\b(A|B|C|D|E)\b", pred.upper())
    pred = letters[-1] if letters else pred.strip().strip(".")
    return pred.rstrip(".").rstrip("/")


# ================================================================================================ equality


def _parse_digits(s):
    s = str(s).replace(",", "")
    try:
        return float(s)
    except Exception:
        if s.endswith("%"):
            s = s[:-1]
            if s.endswith("\\"):
                s = s[:-1]
            try:
                return float(s) / 100
            except Exception:
                pass
    return None


def _is_digit(s) -> bool:
    return _parse_digits(s) is not None


def _numeric_equal(a: float, b: float) -> bool:
    return math.isclose(b, a, rel_tol=1e-4)


def _str_to_pmatrix(s: str) -> str:
    rows = re.findall(r"\{.*,.*\}", s.strip())
    return ", ".join(r"\begin{pmatrix}" + m.strip("{}").replace(",", "\\") + r"\end{pmatrix}" for m in rows)


def _matrix_rows(s: str) -> list[str]:
    body = s[len("\\begin{pmatrix}"):-len("\\end{pmatrix}")]
    return [line.strip() for line in body.split("\\\\") if line.strip()]


def math_equal(prediction, reference, include_percentage: bool = True, is_close: bool = True) -> bool:
    """SkyThought's `math_equal`: string, choice letter, numeric (also x100 and /100), then symbolic equality."""
    if prediction is None or reference is None:
        return False
    if prediction.strip().lower() == reference.strip().lower():
        return True
    if reference in ("A", "B", "C", "D", "E") and _choice_answer_clean(prediction) == reference:
        return True
    try:
        if _is_digit(prediction) and _is_digit(reference):
            p, r = _parse_digits(prediction), _parse_digits(reference)
            for item in ([r / 100, r, r * 100] if include_percentage else [r]):
                try:
                    if _numeric_equal(p, item) if is_close else item == p:
                        return True
                except Exception:
                    continue
            return False
    except Exception:
        pass
    if not prediction and prediction not in (0, False):
        return False

    reference, prediction = str(reference).strip(), str(prediction).strip()
    if "pmatrix" in prediction and "pmatrix" not in reference:
        reference = _str_to_pmatrix(reference)
    # brackets: [a, b] against (a, b) only when the other side does not use the other bracket
    p_str, r_str = prediction, reference
    if ((prediction.startswith("[") and prediction.endswith("]") and not reference.startswith("("))
            or (prediction.startswith("(") and prediction.endswith(")") and not reference.startswith("["))):
        p_str, r_str = p_str.strip("[]()"), r_str.strip("[]()")
    for ch in "{}()":
        p_str, r_str = p_str.replace(ch, ""), r_str.replace(ch, "")
    if p_str.lower() == r_str.lower():
        return True
    # tuples / intervals, element by element
    if re.match(r"(\(|\[).+(\)|\])", prediction) and re.match(r"(\(|\[).+(\)|\])", reference):
        p_parts, r_parts = prediction[1:-1].split(","), reference[1:-1].split(",")
        if len(p_parts) == len(r_parts) and all(
                math_equal(a, b, include_percentage, is_close) for a, b in zip(p_parts, r_parts)):
            return True
    # matrices, entry by entry
    opens, closes = ("\\begin{pmatrix}", "\\begin{bmatrix}"), ("\\end{pmatrix}", "\\end{bmatrix}")
    if prediction.startswith(opens) and prediction.endswith(closes) and reference.startswith(opens) \
            and reference.endswith(closes):
        p_rows, r_rows = _matrix_rows(prediction), _matrix_rows(reference)
        matched = len(p_rows) == len(r_rows)
        if matched:
            for p_row, r_row in zip(p_rows, r_rows):
                p_cells, r_cells = p_row.split("&"), r_row.split("&")
                if len(p_cells) != len(r_cells) or not all(
                        math_equal(a, b, include_percentage, is_close) for a, b in zip(p_cells, r_cells)):
                    matched = False
                    break
        if matched:
            return True
    # equations
    if prediction.count("=") == 1 and reference.count("=") == 1:
        pl, pr = prediction.split("=")
        rl, rr = reference.split("=")
        pred, ref = f"{pl.strip()} - ({pr.strip()})", f"{rl.strip()} - ({rr.strip()})"
        if symbolic_equal(pred, ref) or symbolic_equal(f"-({pred})", ref):
            return True
    elif prediction.count("=") == 1 and len(prediction.split("=")[0].strip()) <= 2 and "=" not in reference:
        if math_equal(prediction.split("=")[1], reference, include_percentage, is_close):
            return True
    elif reference.count("=") == 1 and len(reference.split("=")[0].strip()) <= 2 and "=" not in prediction:
        if math_equal(prediction, reference.split("=")[1], include_percentage, is_close):
            return True
    return symbolic_equal(prediction, reference)


def _latex2sympy(s: str):
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy

    return latex2sympy(s, normalization_config=None,
                       conversion_config=ConversionConfig(interpret_as_mixed_fractions=False,
                                                          interpret_simple_eq_as_assignment=False,
                                                          lowercase_symbols=False))


# sympy's parse_expr runs `eval` on its input with Python's builtins in reach, so a model's answer such as
# `__import__('os').system(...)` would run. SkyThought calls it on model output unguarded; the port refuses
# (treats as unparsable, so latex2sympy gets it) any text with a dunder, a quote, or a name that reaches eval,
# the file system or the interpreter. No math answer needs them; it is the one place the port departs on purpose.
_UNSAFE_NAMES = frozenset({
    "eval", "exec", "compile", "open", "input", "breakpoint", "getattr", "setattr", "delattr", "globals", "locals",
    "vars", "dir", "chr", "import", "exit", "quit", "help", "memoryview", "bytes", "bytearray", "type", "object",
    "sympify", "S", "lambdify", "preview", "test", "doctest", "init_printing", "var", "os", "sys", "subprocess",
    "system", "parse_expr", "srepr", "lambda", "print"})


def _parse_expr(s: str):
    from sympy.parsing.sympy_parser import parse_expr

    if "__" in s or "'" in s or '"' in s or _UNSAFE_NAMES.intersection(re.findall(r"[A-Za-z_]\w*", s)):
        raise ValueError("not parsed: the text could reach Python's eval")
    return parse_expr(s)


def _sym_parse(s: str):
    """sympy's parse_expr, then latex2sympy, each on `s` with `\\\\` -> `\\` first; the string itself if neither parses."""
    for f in (_parse_expr, _latex2sympy):
        for text in (s.replace("\\\\", "\\"), s):
            try:
                return f(text)
            except Exception:
                pass
    return s


def symbolic_equal(a: str, b: str) -> bool:
    """SkyThought's `symbolic_equal`: parse both, then compare directly, by simplification, numerically, as matrices."""
    from sympy import N, simplify

    a, b = _sym_parse(a), _sym_parse(b)
    try:
        if str(a) == str(b) or a == b:
            return True
    except Exception:
        pass
    try:
        if a.equals(b) or simplify(a - b) == 0:
            return True
    except Exception:
        pass
    try:
        if (abs(a.lhs - a.rhs)).equals(abs(b.lhs - b.rhs)):
            return True
    except Exception:
        pass
    try:
        # (N() of a string would sympify it, i.e. eval it: a string here is one parse_expr failed on or refused)
        if not isinstance(a, str) and not isinstance(b, str) and _numeric_equal(float(N(a)), float(N(b))):
            return True
    except Exception:
        pass
    try:
        if a.shape == b.shape and a.applyfunc(lambda x: round(x, 3)).equals(b.applyfunc(lambda x: round(x, 3))):
            return True
    except Exception:
        pass
    return False


# ================================================================================================== verdicts


def verdict(kind: str, gold, prediction: str) -> tuple[bool, str | None]:
    """SkyThought's verdict on one output and the answer it extracted: kind "math" (MATH-500, AIME) or "mcq" (GPQA).

    math: `math_equal(strip(extract_answer(output)), strip(gold))`, as `MathTaskHandler.check_correctness`;
    mcq: `gold == get_multiple_choice_answer(output)`, as `GPQADiamondTaskHandler.check_correctness`.
    """
    if kind == "mcq":
        pred = get_multiple_choice_answer(prediction)
        return str(gold).strip() == pred, pred
    if kind == "math":
        pred = strip_answer_string(extract_answer(prediction))
        return bool(math_equal(pred, strip_answer_string(gold))), pred
    raise ValueError(f"SkyThought has no grader for {kind!r} answers")


__all__ = ["verdict", "extract_answer", "strip_answer_string", "math_equal", "symbolic_equal",
           "get_multiple_choice_answer", "word_to_num", "NAME", "SOURCE"]
