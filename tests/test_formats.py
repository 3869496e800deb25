"""Formats: prompts, student chat spans, completion parsing (pure text, no model)."""

import pytest

from workbench import formats
from workbench.errors import WorkbenchError
from workbench.formats import R1, STRATOS


class ChatMLTokenizer:
    """A stand-in with the ChatML template of SmolLM2/Qwen (only apply_chat_template is used)."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False, **kw):
        out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")


TOK = ChatMLTokenizer()
Q = "Find $x$ if $2x + 3 = 11$."
SOL = "Subtract 3 and divide by 2: $x = 4$. \\boxed{4}"


@pytest.mark.parametrize("tags", [STRATOS, R1])
def test_teacher_prompt_begins_the_assistant_turn(tags):
    text = formats.teacher_prompt(TOK, Q, SOL, tags=tags)
    assert text.startswith("<|im_start|>system\n")
    assert f"<|im_start|>user\n{Q}<|im_end|>\n<|im_start|>assistant\n" in text
    assert text.endswith(f"<|begin_of_solution|>{SOL}<|end_of_solution|>\n\n<|begin_of_explanation|>\n\n")


def test_custom_system_prompt_is_used_verbatim(tmp_path):
    f = tmp_path / "teacher.txt"
    f.write_text("Official  prompt,\nline two.\n\n", encoding="utf-8")
    prompt = formats.load_prompt(f)
    assert prompt == "Official  prompt,\nline two."
    assert formats.teacher_prompt(TOK, Q, SOL, system_prompt=prompt).startswith(f"<|im_start|>system\n{prompt}<|im_end|>")
    with pytest.raises(WorkbenchError, match="does not exist"):
        formats.load_prompt(tmp_path / "missing.txt")


@pytest.mark.parametrize("tags", [STRATOS, R1])
def test_student_chat_spans_are_exact(tags):
    expl = "\n\nFirst, isolate $2x$: $2x = 8$.\n\nThen $x = 4$."
    chat = formats.student_chat(TOK, Q, expl, SOL, tags=tags)
    assert chat.text[slice(*chat.explanation_span)] == expl
    assert chat.text[slice(*chat.solution_span)] == SOL
    a, b = chat.explanation_span
    assert chat.text[a - len(tags.thought_start):a] == tags.thought_start
    assert chat.text[b:b + len(tags.thought_end)] == tags.thought_end
    assert chat.text.endswith(f"{tags.solution_start}{SOL}{tags.solution_end}<|im_end|>\n")


def test_student_chat_locates_spans_by_position_even_if_question_repeats_the_explanation():
    question = "A train leaves.\n\nIt goes fast."
    expl = "\n\nIt goes fast."
    chat = formats.student_chat(TOK, question, expl, SOL)
    assert chat.text.find(expl) < chat.explanation_span[0]  # the first occurrence is in the question
    assert chat.text[slice(*chat.explanation_span)] == expl


@pytest.mark.parametrize(
    "completion, body, has_end, trailing",
    [
        ("Step one.\n\nStep two.<|end_of_explanation|>", "Step one.\n\nStep two.", True, ""),
        ("Step one, then the model stopped", "Step one, then the model stopped", False, ""),  # missing end tag
        ("plain text with no tags at all", "plain text with no tags at all", False, ""),
        ("Body.<|end_of_explanation|>\n\nmore text after", "Body.", True, "\n\nmore text after"),
        ("A.<|end_of_explanation|>B.<|end_of_explanation|>", "A.", True, "B.<|end_of_explanation|>"),  # duplicated
        ("<|begin_of_explanation|>\n\nnested.<|end_of_explanation|>", "<|begin_of_explanation|>\n\nnested.", True, ""),
        ("<|end_of_explanation|>", "", True, ""),  # empty explanation
        ("", "", False, ""),
        ("Ünïcødé — π ≈ 3.14159, 你好 🙂<|end_of_explanation|>", "Ünïcødé — π ≈ 3.14159, 你好 🙂", True, ""),
        ("$\\frac{a}{b}$ and \\(x^2\\) and $$\\int_0^1 x\\,dx$$<|end_of_explanation|>",
         "$\\frac{a}{b}$ and \\(x^2\\) and $$\\int_0^1 x\\,dx$$", True, ""),
    ],
)
def test_parse_completion(completion, body, has_end, trailing):
    p = formats.parse_completion(completion)
    assert (p.body, p.has_end_tag, p.trailing) == (body, has_end, trailing)
    assert completion[slice(*p.body_span)] == body
    assert p.explanation == "\n\n" + body


@pytest.mark.parametrize("body", ["Simple.", "", "Two\n\nparagraphs with $x^2$ and ü."])
def test_format_parse_round_trip(body):
    assert formats.parse_completion(formats.format_completion(body)).body == body


def test_parse_completion_rejects_non_text():
    with pytest.raises(WorkbenchError):
        formats.parse_completion(None)


@pytest.mark.parametrize("tags", [STRATOS, R1])
def test_split_student_response_both_styles(tags):
    text = formats.student_completion("\n\nthinking...\n\n", SOL, tags)
    assert formats.split_student_response(text) == ("\n\nthinking...\n\n", SOL)
    assert formats.split_student_response("no tags") == (None, None)


def test_unknown_tag_style():
    with pytest.raises(WorkbenchError, match="unknown tag style"):
        formats.get_tags("xml")


# ------------------------------------------------------------------------------ on Qwen2.5's tokenizer (conftest.py)


@pytest.mark.parametrize("tags", [STRATOS, R1])
def test_teacher_prompt_and_student_chat_on_qwen25s_template(qwen_tok, tags):
    tok = qwen_tok
    text = formats.teacher_prompt(tok, Q, SOL, tags=tags)
    assert text == (f"<|im_start|>system\n{formats.default_teacher_system_prompt(tags)}<|im_end|>\n"
                    f"<|im_start|>user\n{Q}<|im_end|>\n<|im_start|>assistant\n"
                    f"{tags.solution_start}{SOL}{tags.solution_end}\n\n<|begin_of_explanation|>\n\n")
    ids = tok.encode(text, add_special_tokens=False)
    assert ids[0] == 151644 and ids.count(151645) == 2  # <|im_start|>, and <|im_end|> closes system and user turns
    assert tok.convert_ids_to_tokens(ids[-1:]) == [">ĊĊ"]  # the padding merges with the start tag on Qwen2.5
    expl = "\n\n答 ユ 😊 First, isolate $2x$: $2x = 8$.\n\nThen $x = 4$."
    chat = formats.student_chat(tok, Q, expl, SOL, tags=tags)
    assert chat.text.startswith(f"<|im_start|>system\n{formats.default_student_system_prompt(tags)}<|im_end|>\n")
    assert chat.text[slice(*chat.explanation_span)] == expl
    assert chat.text[slice(*chat.solution_span)] == SOL
    assert chat.text.endswith(f"{tags.solution_start}{SOL}{tags.solution_end}<|im_end|>\n")


@pytest.mark.parametrize("body", ["", ".", "答 ユ 😊", "Step one.\n\nStep 答."])
def test_parse_a_completion_decoded_from_qwen_ids(qwen_tok, body):
    ids = qwen_tok.encode(body + "<|end_of_explanation|>", add_special_tokens=False) + [qwen_tok.eos_token_id]
    p = formats.parse_completion(qwen_tok.decode(ids, skip_special_tokens=True))
    assert (p.body, p.has_end_tag, p.trailing) == (body, True, "")
    p = formats.parse_completion(qwen_tok.decode(ids[:-3], skip_special_tokens=True))  # cut inside the end tag
    assert not p.has_end_tag and p.body.startswith(body)


def test_step_spans_and_removing_a_step():
    from workbench.formats import step_spans, without_step

    text = "  First step.\n\nSecond\nstill second.\n \n\n\nThird.  "
    spans = step_spans(text)
    assert [text[s:e] for s, e in spans] == ["First step.", "Second\nstill second.", "Third."]
    assert without_step(text, spans, 0) == "  Second\nstill second.\n \n\n\nThird.  "
    assert without_step(text, spans, 1) == "  First step.\n\nThird.  "
    assert without_step(text, spans, 2) == "  First step.\n\nSecond\nstill second.  "
    assert step_spans("") == [] and without_step("one", step_spans("one"), 0) == ""
