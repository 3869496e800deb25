"""The SkyThought port (`workbench/eval/skythought_grader.py`) against SkyThought's own grader.

The expected verdicts below were recorded by running the original code, not the port: the wheel
skythought==0.1.0 (its `skythought/evals/util/math_parsing_util.py` and task handlers are byte-identical to
NovaSky-AI/SkyThought@4bb8f3e), installed with --no-deps into a scratch Python 3.11 venv with latex2sympy2==1.9.1,
antlr4-python3-runtime==4.7.2, sympy==1.13.1 (the versions its pins and vLLM 0.7.0's torch resolve to), word2number
1.1 and regex, and calling, as its MATH/AIME and GPQA-Diamond handlers do,
    math: math_equal(strip_answer_string(extract_answer(output)), strip_answer_string(gold))
    mcq:  gold == get_multiple_choice_answer(output)
on the cases in TRICKY (chosen to reach each of its rules) and on the 334 peer grader cases in
`../shared/peer-grader-cases/` (PEER_TRUE: the ids it calls equal). The port uses latex2sympy2_extended in place
of latex2sympy2 1.9.1, and KNOWN_DIFFERENCES lists where that changes a verdict (see the module docstring).
"""

import hashlib
import json
from pathlib import Path

import pytest

from workbench.eval import grading
from workbench.eval import skythought_grader as sky
from workbench.eval.presets import PRESETS, SKYTHOUGHT_SYSTEM_PROMPTS

CASES = Path(__file__).resolve().parents[1].parent / "shared" / "peer-grader-cases" / "grader_cases.jsonl"

# (kind, gold, prediction, SkyThought's verdict, the answer SkyThought extracted)
TRICKY = [
    ('math', '\\frac{1}{2}', 'So the answer is $\\boxed{0.5}$.', True, '0.5'),
    ('math', '0.5', '$\\boxed{\\frac12}$', True, '\\frac{1}{2}'),
    ('math', '\\dfrac{9}{7}', '\\boxed{9/7}', True, '\\frac{9}{7}'),
    ('math', '10', 'The answer is \\boxed{10\\%}', True, '10'),
    ('math', '0.1', '\\boxed{10\\%}', True, '10'),
    ('math', '5', '\\boxed{\\text{five}}', True, '5'),
    ('math', '5', 'there are five apples, so five', False, ''),
    ('math', '12', 'x plus one', False, ''),
    ('math', '3', 'We get 1, then 2, then 3.', True, '3'),
    ('math', '3', 'no numbers here', False, ''),
    ('math', '18', '\\boxed{18 \\text{ cm}^2}', True, '18'),
    ('math', '90', '\\boxed{90^\\circ}', True, '90'),
    ('math', '\\$18.90', '\\boxed{18.9}', True, '18.9'),
    ('math', '(3,4)', '\\boxed{(3, 4)}', True, '(3,4)'),
    ('math', '[1,2]', '\\boxed{(1,2)}', True, '(1,2)'),
    ('math', '(1,2)', '\\boxed{[1,2]}', True, '[1,2]'),
    ('math', '(-\\infty,\\infty)', '\\boxed{\\mathbb{R}}', True, '\\mathbb{R}'),
    ('math', '1,2,3', '\\boxed{3, 1, 2}', True, '1,2,3'),
    ('math', 'x^2+2x+1', '\\boxed{(x+1)^2}', True, '(x+1)^2'),
    ('math', '\\frac{\\sqrt{3}}{2}', '\\boxed{\\sqrt3/2}', True, '\\frac{\\sqrt{3}}{2}'),
    ('math', '\\sqrt{2}', '\\boxed{1.41421356}', True, '1.41421356'),
    ('math', '\\pi', '\\boxed{3.14159}', True, '3.14159'),
    ('math', '2\\pi', '\\boxed{6.2832}', True, '6.2832'),
    ('math', 'y=2x+3', '\\boxed{2x - y + 3 = 0}', False, '2x-y+3=0'),
    ('math', 'y = 2x+3', '\\boxed{2x+3}', True, '2x+3'),
    ('math', 'k=5', '\\boxed{5}', True, '5'),
    ('math', '\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}', '\\boxed{\\begin{pmatrix} 1 \\\\ 2.0 \\end{pmatrix}}', False, '\\begin{pmatrix}12\\end{pmatrix}'),
    ('math', '\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}', '\\boxed{\\begin{bmatrix} 1 & 2 \\\\ 3 & 5 \\end{bmatrix}}', False, '\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}'),
    ('math', '\\text{(C)}', '\\boxed{C}', True, 'C'),
    ('math', 'C', '\\boxed{\\text{(C)}}', True, '(C)'),
    ('math', 'B', 'The answer is B.', True, 'B'),
    ('math', '\\text{Monday}', '\\boxed{\\text{Monday}}', True, 'Monday'),
    ('math', '\\text{Tuesday}', '\\boxed{Monday}', False, 'Monday'),
    ('math', '1000', '\\boxed{1,000}', False, '0,1'),
    ('math', '7425000', '\\boxed{7 425 000}', True, '7425000'),
    ('math', '3', '\\boxed{3}\\boxed{4}', False, '4'),
    ('math', '4', '\\boxed 4$ done', True, '4'),
    ('math', '\\infty', '\\boxed{inf}', True, '\\infty'),
    ('math', '2i', '\\boxed{2j}', True, '2i'),
    ('math', '-\\frac{1}{3}', '\\boxed{-1/3}', True, '\\frac{-1}{3}'),
    ('math', '\\frac{1}{3}', '\\boxed{0.3333}', True, '0.3333'),
    ('math', '\\frac{1}{3}', '\\boxed{0.33}', False, '0.33'),
    ('math', '3\\sqrt{2}', '\\boxed{\\sqrt{18}}', True, '\\sqrt{18}'),
    ('math', 'x \\in [2, 5)', '\\boxed{[2,5)}', False, '[2,5)'),
    ('math', '\\{1, 2\\}', '\\boxed{\\{2, 1\\}}', True, '{2,1}'),
    ('math', 'a+b', '\\boxed{b+a}', True, 'b+a'),
    ('math', 'A', '\\boxed{A}', True, 'A'),
    ('math', '11\\sqrt2', 'The final answer is $11\\sqrt{2}$. I hope it is correct.', True, '11\\sqrt{2}'),
    ('math', '20', 'I think the final answer is 20', True, '20'),
    ('math', '12', '答案是 12\n\nmore', True, '12'),
    ('math', '1.5', '\\boxed{\\frac{3}{2}}', True, '\\frac{3}{2}'),
    ('math', '1\\frac{1}{2}', '\\boxed{\\frac{3}{2}}', False, '\\frac{3}{2}'),
    ('math', '\\frac{3}{2}', '\\boxed{1\\frac{1}{2}}', False, '1\\frac{1}{2}'),
    ('math', '2', '\\boxed{x=2}', True, '2'),
    ('math', 'x=2', '\\boxed{2}', True, '2'),
    ('math', '\\text{one hundred}', '\\boxed{100}', False, '100'),
    ('math', '\\frac{a}{b}', '\\boxed{a/b}', True, 'a/b'),
    ('math', '10^{10}', '\\boxed{10000000000}', True, '10000000000'),
    ('math', 'e', '\\boxed{2.71828}', False, '2.71828'),
    ('math', '\\log_2 8', '\\boxed{3}', False, '3'),
    ('math', '\\sin x', '\\boxed{\\sin(x)}', True, '\\sin(x)'),
    ('math', '6', '\\boxed{3!}', True, '3!'),
    ('math', '\\binom{5}{2}', '\\boxed{10}', True, '10'),
    ('math', '2^{10}', '\\boxed{1024}', True, '1024'),
    ('math', '1', "\\boxed{__import__('os').system('touch /tmp/skycmp/PWNED')}", False, "__import__('os').system('touch/tmp/skycmp/PWNED')"),
    ('math', 'Ab', '\\boxed{aB}', True, 'aB'),
    ('math', '\\frac{\\pi}{4}', '\\boxed{45^\\circ}', False, '45'),
    ('math', '\\$5', '\\boxed{5 \\text{ dollars}}', True, '5'),
    ('math', '5\\text{ cm}', '\\boxed{5}', True, '5'),
    ('math', '12th grade', '\\boxed{12}', True, '12'),
    ('math', '-2', '\\boxed{-2.000}', True, '-2'),
    ('math', '.5', '\\boxed{0.5}', True, '0.5'),
    ('math', 'x^2', '\\boxed{x**2}', True, 'x**2'),
    ('math', '\\frac{1}{2}', '$\\boxed{\\dfrac{1}{2}}$ and later \\boxed{}', False, ''),
    ('mcq', 'B', 'Answer: B. Not C.', False, 'C'),
    ('mcq', 'C', 'Answer: B. Not C.', True, 'C'),
    ('mcq', 'A', '\\boxed{A}', True, 'A'),
    ('mcq', 'D', 'the answer is (d)', True, 'D'),
    ('mcq', 'A', 'a quick thought: it is B', False, 'B'),
    ('mcq', 'B', 'I choose B.', True, 'B'),
    ('mcq', 'B', 'no letter at all', False, 'no letter at all'),
    ('mcq', 'A', '  a.  ', True, 'A'),
    ('mcq', 'C', '\\boxed{\\text{C}}', True, 'C'),
    ('mcq', 'D', 'D/', True, 'D'),
]

# Peer cases SkyThought grades equal (gc-NNNN); all other peer cases it grades not equal.
PEER_TRUE = [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 19, 20, 21, 22, 23, 24, 34, 38, 39, 40, 41, 42, 43, 47, 48, 49, 50, 51,
             53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 73, 74, 75, 76, 77, 81, 87,
             89, 90, 97, 98, 102, 108, 116, 122, 124, 125, 126, 127, 130, 131, 132, 133, 134, 136, 137, 139, 140,
             141, 142, 143, 144, 146, 147, 148, 149, 150, 151, 152, 153, 154, 156, 157, 158, 185, 192, 195, 197,
             198, 202, 204, 226, 227, 230, 231, 232, 233, 238, 240, 242, 244, 245, 246, 249, 250, 251, 252, 253,
             254, 255, 256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 271, 277, 281, 282, 283, 284, 286,
             288, 291, 292, 293, 296, 297, 299, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 314,
             315, 317, 318, 320, 321, 322, 323, 325, 326, 327, 328, 330, 331, 333]

# Where the port's verdict differs from the original (latex2sympy2 1.9.1 and the fork parse these differently):
# the recorded original verdict is given; the port gives the other one.
KNOWN_DIFFERENCES = {
    ("math", "1\\frac{1}{2}", "\\boxed{\\frac{3}{2}}"),  # 1.9.1 reads 1*1/2, the fork the mixed number 3/2
    ("math", "\\frac{3}{2}", "\\boxed{1\\frac{1}{2}}"),
    "gc-0152",  # antlr 4.7.2's error recovery reads "10).Ihopeitiscorrec" as 10
    "gc-0165",  # a brace set: 1.9.1 makes an ordered list, the fork a set
    "gc-0191",
}


@pytest.mark.parametrize("kind,gold,prediction,equal,extracted", TRICKY)
def test_port_matches_skythought(kind, gold, prediction, equal, extracted):
    got, got_extracted = sky.verdict(kind, gold, prediction)
    assert got_extracted == extracted
    if (kind, gold, prediction) in KNOWN_DIFFERENCES:
        assert got is (not equal)
    else:
        assert got is equal


def test_port_matches_skythought_on_peer_cases():
    if not CASES.is_file():
        pytest.skip(f"peer grader cases not found at {CASES} (the shared/ folder beside the repository)")
    true_ids = {f"gc-{n:04d}" for n in PEER_TRUE}
    wrong = []
    for line in CASES.read_text(encoding="utf-8").splitlines():
        if line.strip():
            c = json.loads(line)
            got, _ = sky.verdict(c["kind"], c["gold"], c["prediction"])
            expected = c["id"] in true_ids
            if (got != expected) != (c["id"] in KNOWN_DIFFERENCES):
                wrong.append((c["id"], c["gold"], got, expected))
    assert not wrong


def test_word_to_num_follows_word2number():
    assert sky.word_to_num("two million twenty three thousand and forty nine") == 2023049
    assert sky.word_to_num("three point one four") == pytest.approx(3.14)
    assert sky.word_to_num("x plus one") == 1  # other words are skipped
    assert sky.word_to_num("42") == 42
    for bad in ("no numbers", "one thousand one thousand", "thousand million"):
        with pytest.raises(ValueError):
            sky.word_to_num(bad)


def test_port_never_evaluates_model_text(tmp_path):
    """SkyThought hands the answer to sympy's parse_expr (Python eval); the port refuses text that could run code."""
    mark = tmp_path / "ran"
    for payload in (f"__import__('pathlib').Path('{mark}').touch()", f"exec('open(\"{mark}\",\"w\")')",
                    "eval(chr(49))"):
        assert sky.verdict("math", "1", f"\\boxed{{{payload}}}")[0] is False
    assert not mark.exists()


def test_grade_records_skythought_verdict_without_the_package():
    if grading.skythought_package_available():
        pytest.skip("the skythought package is installed here: the port is not used")
    v = grading.grade("0.5", "$\\boxed{\\frac{1}{2}}$", "math")
    assert v.equal is True and v.skythought is True and v.skythought_grader == sky.NAME
    v = grading.grade("B", "Answer: B. Not C.", "mcq")  # SkyThought takes the last standalone letter
    assert v.equal is True and v.skythought is False and v.skythought_extracted == "C"
    assert grading.grade("B", "B", "mcq", skythought=False).skythought is None
    assert grading.grade({"target": 3, "numbers": [1, 2]}, "1+2", "countdown").skythought is None


def test_system_prompts_follow_skythought_model_table():
    """SkyThought 4bb8f3e's model_configs.yaml: Bespoke-Stratos is not listed, so it gets no system message."""
    preset = PRESETS["skythought"]
    for model in ("bespokelabs/Bespoke-Stratos-7B", "bespokelabs/Bespoke-Stratos-32B", "runs/my-student"):
        assert preset.system_for(model) is None
    sky_t1 = SKYTHOUGHT_SYSTEM_PROMPTS["NovaSky-AI/Sky-T1-32B-Preview"]
    # the string yaml.safe_load gives for the `skythought` system prompt of that file (no runs of indentation)
    assert len(sky_t1) == 1310 and "  " not in sky_t1 and sky_t1.count("\n") == 2
    assert hashlib.sha256(sky_t1.encode()).hexdigest() == \
        "c5ae4aa0b0d6fcadd6fa8977f5e55b1f2dccb7582bd05b80385e2f22650a9f8d"
    assert sky_t1.startswith("Your role as an assistant involves thoroughly exploring questions through a systematic "
                             "long thinking process before")
    assert SKYTHOUGHT_SYSTEM_PROMPTS["NovaSky-AI/Sky-T1-32B-Flash"] == sky_t1
    assert preset.system_for("Qwen/Qwen2.5-7B-Instruct").endswith("You should think step-by-step.")


def test_summary_names_the_headline_grader_and_gives_skythought(tmp_path):
    """Records without SkyThought verdicts (older runs) get them in the summary; the headline grader is named."""
    from workbench.eval import benchmarks as bm
    from workbench.eval.presets import get_preset
    from workbench.eval.runner import RECORDS_FILE, EvalConfig, write_summary

    recs = [{"problem_id": "p0", "sample": 0, "kind": "math", "gold": "0.5", "output": "\\boxed{\\frac{1}{2}}",
             "equal": True, "status": "ok", "verdicts": {"workbench": True, "skythought": None}, "tokens": 3},
            {"problem_id": "p1", "sample": 0, "kind": "math", "gold": "3", "output": "\\boxed{4}",
             "equal": False, "status": "ok", "verdicts": {"workbench": False, "skythought": None}, "tokens": 3}]
    (tmp_path / RECORDS_FILE).write_text("".join(json.dumps(r) + "\n" for r in recs))
    bench = bm.get_benchmark("math500")
    problems = [{"id": "p0"}, {"id": "p1"}]
    s = write_summary(tmp_path, problems, get_preset("skythought"), bench, EvalConfig(benchmark="math500"))
    assert s["headline_grader"].startswith("math-verify ") and s["grader"] == s["headline_grader"]
    assert s["accuracy"] == 0.5 and s["skythought"]["accuracy"] == 0.5 and s["skythought"]["disagree"] == 0
    assert s["skythought"]["grader"] == grading.skythought_grader_name()
    assert json.loads((tmp_path / "summary.json").read_text())["skythought"]["grader"]
    off = write_summary(tmp_path, problems, get_preset("skythought"), bench,
                        EvalConfig(benchmark="math500", skythought="off"))
    assert off["skythought"] is None and "off" in off["skythought_note"]
