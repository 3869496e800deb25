"""Text formats of RLT: the tags, the teacher prompt, the student chat, and parsing a teacher completion.

All tags are plain text. The teacher is shown the question and the reference solution, and its assistant
turn is *begun* for it with the solution and the explanation start tag; it writes only the explanation body
and the end tag. The student chat puts that explanation inside thought tags, followed by the solution: the
same text that later becomes distillation data. See `../shared/rlt-method.md` section 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import WorkbenchError

EXPLANATION_START = "<|begin_of_explanation|>"
EXPLANATION_END = "<|end_of_explanation|>"
SOLUTION_START = "<|begin_of_solution|>"
SOLUTION_END = "<|end_of_solution|>"
PAD = "\n\n"  # the prompt puts this after the explanation start tag; it belongs to the explanation span


@dataclass(frozen=True)
class Tags:
    """Tag strings. Only the student's thought tags differ between the two styles."""

    thought_start: str
    thought_end: str
    explanation_start: str = EXPLANATION_START
    explanation_end: str = EXPLANATION_END
    solution_start: str = SOLUTION_START
    solution_end: str = SOLUTION_END


STRATOS = Tags("<|begin_of_thought|>", "<|end_of_thought|>")
R1 = Tags("<think>", "</think>")
TAG_STYLES = {"stratos": STRATOS, "r1": R1}

# Our own wording. Pass prompt files to reproduce the official (Sky-T1-style) prompts exactly.
DEFAULT_TEACHER_SYSTEM_PROMPT = (
    "You are a teacher. You are given a question together with its correct solution. First restate the "
    "solution between {solution_start} and {solution_end}. Then, between {explanation_start} and "
    "{explanation_end}, write a detailed, step-by-step explanation that leads a student from the question "
    "to that solution: say why each step is taken, check intermediate results, and make every step easy "
    "to follow for someone who has not seen the solution."
)
DEFAULT_STUDENT_SYSTEM_PROMPT = (
    "You are a careful problem solver. Think about the question step by step between {thought_start} and "
    "{thought_end}: explore, check your work and correct mistakes. Then give your final, concise solution "
    "between {solution_start} and {solution_end}."
)


def get_tags(style: str | Tags = "stratos") -> Tags:
    if isinstance(style, Tags):
        return style
    try:
        return TAG_STYLES[style]
    except KeyError:
        raise WorkbenchError(f"unknown tag style {style!r}; use one of {sorted(TAG_STYLES)}") from None


def default_teacher_system_prompt(tags: Tags = STRATOS) -> str:
    return DEFAULT_TEACHER_SYSTEM_PROMPT.format(**tags.__dict__)


def default_student_system_prompt(tags: Tags = STRATOS) -> str:
    return DEFAULT_STUDENT_SYSTEM_PROMPT.format(**tags.__dict__)


def load_prompt(path: str | Path) -> str:
    """Read a system prompt from a UTF-8 file, verbatim except for trailing newlines (editors add one) and a BOM."""
    p = Path(path)
    if p.is_dir():
        raise WorkbenchError(f"prompt file {str(p)!r} is a folder; give the text file itself")
    if not p.is_file():
        raise WorkbenchError(f"prompt file {str(p)!r} does not exist")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise WorkbenchError(f"prompt file {str(p)!r} cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise WorkbenchError(
            f"prompt file {str(p)!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as "
            f"UTF-8, e.g. `iconv -f latin1 -t utf-8 {p.name} > {p.stem}.utf8{p.suffix}` for a Latin-1 file") from None
    text = text.removeprefix("\ufeff").rstrip("\n")
    if not text.strip():
        raise WorkbenchError(f"prompt file {str(p)!r} is empty")
    return text


# ---------------------------------------------------------------------------------------------- teacher


def teacher_assistant_prefix(solution: str, tags: Tags = STRATOS) -> str:
    """The begun assistant turn: the solution, then the explanation start tag and its padding."""
    return f"{tags.solution_start}{solution}{tags.solution_end}{PAD}{tags.explanation_start}{PAD}"


def teacher_messages(question: str, system_prompt: str | None = None, tags: Tags = STRATOS) -> list[dict]:
    system = default_teacher_system_prompt(tags) if system_prompt is None else system_prompt
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def teacher_prompt(tokenizer, question: str, solution: str, system_prompt: str | None = None,
                   tags: Tags = STRATOS) -> str:
    """The full teacher prompt text: chat template up to the assistant turn, then the begun turn."""
    head = tokenizer.apply_chat_template(
        teacher_messages(question, system_prompt, tags), tokenize=False, add_generation_prompt=True
    )
    return head + teacher_assistant_prefix(solution, tags)


# ---------------------------------------------------------------------------------------------- student


def student_completion(explanation: str, solution: str, tags: Tags = STRATOS) -> str:
    """The student's assistant turn. `explanation` is E, the text between the explanation tags (with padding)."""
    return f"{tags.thought_start}{explanation}{tags.thought_end}{PAD}{tags.solution_start}{solution}{tags.solution_end}"


def student_messages(question: str, explanation: str, solution: str, system_prompt: str | None = None,
                     tags: Tags = STRATOS) -> list[dict]:
    system = default_student_system_prompt(tags) if system_prompt is None else system_prompt
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": question},
        {"role": "assistant", "content": student_completion(explanation, solution, tags)},
    ]


@dataclass(frozen=True)
class StudentChat:
    """The rendered student chat and the character spans of the explanation E and the solution in it."""

    text: str
    explanation_span: tuple[int, int]
    solution_span: tuple[int, int]


def student_chat(tokenizer, question: str, explanation: str, solution: str, system_prompt: str | None = None,
                 tags: Tags = STRATOS) -> StudentChat:
    """Render the student chat and locate E and the solution by position.

    The assistant content is placed by the chat template right after the generation prompt (true of ChatML,
    Qwen and Llama templates); we check that, and only fall back to locating the whole assistant content
    (which contains the tags, so it is unambiguous at the end of the chat) for unusual templates.
    """
    messages = student_messages(question, explanation, solution, system_prompt, tags)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    head = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    content = messages[2]["content"]
    if text.startswith(head) and text[len(head):].startswith(content):
        base = len(head)
    else:
        base = text.rfind(content)
        if base < 0:
            raise WorkbenchError("the tokenizer's chat template rewrites the assistant turn; cannot place spans")
    e_start = base + len(tags.thought_start)
    e_end = e_start + len(explanation)
    s_start = e_end + len(tags.thought_end) + len(PAD) + len(tags.solution_start)
    return StudentChat(text, (e_start, e_end), (s_start, s_start + len(solution)))


# ---------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParsedCompletion:
    """A raw teacher completion (the text generated after the prompt, i.e. after `<|begin_of_explanation|>\\n\\n`).

    body: the explanation text up to the first end tag (or all of it when the tag is missing);
    has_end_tag: whether the end tag was present; body_span: (start, end) of body in the completion;
    trailing: text after the first end tag (ignored by the reward).
    """

    body: str
    has_end_tag: bool
    body_span: tuple[int, int]
    trailing: str

    @property
    def explanation(self) -> str:
        """E: the text between the explanation tags, including the padding the prompt put after the start tag."""
        return PAD + self.body


def parse_completion(completion: str, tags: Tags = STRATOS) -> ParsedCompletion:
    """Split a raw teacher completion at its first end tag. Never raises on malformed text.

    A start tag repeated inside the completion is kept as text (the explanation started with the prompt's tag).
    """
    if not isinstance(completion, str):
        raise WorkbenchError(f"completion must be a string, got {type(completion).__name__}")
    idx = completion.find(tags.explanation_end)
    if idx < 0:
        return ParsedCompletion(completion, False, (0, len(completion)), "")
    return ParsedCompletion(completion[:idx], True, (0, idx), completion[idx + len(tags.explanation_end):])


def format_completion(body: str, tags: Tags = STRATOS) -> str:
    """The inverse of `parse_completion` for a well-formed completion."""
    return body + tags.explanation_end


def split_student_response(text: str, tags: Tags = STRATOS) -> tuple[str | None, str | None]:
    """Split a student-format response (e.g. a Bespoke-Stratos assistant turn) into (thought, solution).

    Either part is None when its tags are missing. Both tag styles are recognised.
    """
    thought = solution = None
    for style in (tags, *(t for t in TAG_STYLES.values() if t != tags)):
        a, b = text.find(style.thought_start), text.find(style.thought_end)
        if a >= 0 and b > a:
            thought = text[a + len(style.thought_start):b]
            break
    a = text.find(tags.solution_start)
    b = text.find(tags.solution_end, a + 1) if a >= 0 else -1
    if a >= 0 and b > a:
        solution = text[a + len(tags.solution_start):b]
    return thought, solution


# ------------------------------------------------------------------------------------------------ steps

_STEP_BREAK = re.compile(r"\n[ \t]*\n")


def step_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of an explanation's steps: its paragraphs (split at blank lines), without their surrounding
    whitespace, empty ones dropped. The one step rule of the workbench (step alignment, attribution)."""
    spans, start = [], 0
    text = text or ""
    for m in [*_STEP_BREAK.finditer(text), None]:
        end = m.start() if m else len(text)
        seg = text[start:end]
        if seg.strip():
            lead = len(seg) - len(seg.lstrip())
            spans.append((start + lead, start + len(seg.rstrip())))
        if m:
            start = m.end()
    return spans


def without_step(text: str, spans: list[tuple[int, int]], i: int) -> str:
    """`text` with step i removed together with the break that separates it from its neighbours."""
    s, e = spans[i]
    if i + 1 < len(spans):
        return text[:s] + text[spans[i + 1][0]:]
    if i > 0:
        return text[:spans[i - 1][1]] + text[e:]
    return text[:s] + text[e:]
