"""`workbench prompts fetch`: the official prompts read with `ast` (never executed), checked, installed byte for byte.

The tests build a synthetic copy of the two official files (the same code structure, our own text: the project does
not ship the official wording); one test reads the real official repository when a local mirror of it exists.
"""

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from workbench import formats, prompts
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.training.config import load_recipe, validate_recipe

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path("/work/.mirror/SakanaAI+RLT/repo")  # a bare clone of github.com/SakanaAI/RLT, where one exists

# Stand-ins with the official layout: the teacher text ends with a space and holds an escaped '\\n\\n', as the real one
TEACHER_TEXT = ("You explain solutions. Put the solution in <|begin_of_solution|> {solution} <|end_of_solution|>. "
                "Then explain it in <|begin_of_explanation|> {steps separated with '\\n\\n'} <|end_of_explanation|> ")
STUDENT_TEXT = ("You think first. Thought in <|begin_of_thought|> {thought with steps separated with '\\n\\n'} "
                "<|end_of_thought|> then the solution in <|begin_of_solution|> {solution} <|end_of_solution|> Now:")

TEACHER_FILE = '''from datasets import load_dataset
import sys
sys.exit("the workbench must never execute this file")

STYLE_TEACHER_PROMPT = str(
    "You explain solutions. Put the solution in <|begin_of_solution|> {solution} <|end_of_solution|>. "
    "Then explain it in <|begin_of_explanation|> {steps separated with '\\\\n\\\\n'} <|end_of_explanation|> "
)

TEACHER_SYSTEM_PROMPTS_AND_TAGS = {
    'stratos': (
        STYLE_TEACHER_PROMPT,  'solution', 'explanation', '',
        '\\n\\n', '\\n\\n'),
}


def unrelated(x):
    return x
'''
STUDENT_FILE = '''from collections import defaultdict
raise RuntimeError("never imported")

STRATOS_SYSTEM_PROMPT = (
    "You think first. Thought in <|begin_of_thought|> {thought with steps separated with '\\\\n\\\\n'} "
    "<|end_of_thought|> then the solution in <|begin_of_solution|> {solution} <|end_of_solution|> Now:"
)

DATA_CONFIGS = defaultdict(lambda: None, {'x': STRATOS_SYSTEM_PROMPT})
'''


def _write_repo(root: Path, teacher_file: str = TEACHER_FILE, student_file: str = STUDENT_FILE) -> Path:
    (root / "custom_data").mkdir(parents=True, exist_ok=True)
    (root / "custom_data" / "teacher_data.py").write_text(teacher_file, encoding="utf-8")
    (root / "custom_data" / "reasoning_datasets_info.py").write_text(student_file, encoding="utf-8")
    return root


SYNTHETIC_SUMS = {"teacher": prompts.sha256_text(TEACHER_TEXT), "student": prompts.sha256_text(STUDENT_TEXT)}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty workbench cache for this test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("RLT_WORKBENCH_CACHE", str(root))
    return root


@pytest.fixture
def synthetic(tmp_path, monkeypatch, cache):
    """A synthetic official checkout, with the recorded checksums replaced by the synthetic texts' ones."""
    sources = {w: dataclasses.replace(s, sha256=SYNTHETIC_SUMS[w]) for w, s in prompts.SOURCES.items()}
    monkeypatch.setattr(prompts, "SOURCES", sources)
    return _write_repo(tmp_path / "RLT")


def test_the_source_files_parse_to_the_texts():
    t = prompts.extract_constant(TEACHER_FILE, "TEACHER_SYSTEM_PROMPTS_AND_TAGS", ("stratos", 0))
    assert t == TEACHER_TEXT and t.endswith("|> ") and "'\\n\\n'" in t  # a literal backslash-n, kept
    assert prompts.extract_constant(STUDENT_FILE, "STRATOS_SYSTEM_PROMPT") == STUDENT_TEXT
    assert prompts.extract_constant(TEACHER_FILE, "TEACHER_SYSTEM_PROMPTS_AND_TAGS", ("stratos", 4)) == "\n\n"


def test_extraction_evaluates_constants_only():
    src = 'A = "x" "y"\nB = A + "z"\nC = {"k": (B, [1, 2])}\nD = os.getenv("HOME")\nE = C["k"][0]\n'
    assert prompts.extract_constant(src, "B") == "xyz"
    assert prompts.extract_constant(src, "C", ("k", 1, 0)) == 1
    assert prompts.extract_constant(src, "E") == "xyz"
    with pytest.raises(WorkbenchError, match="not a constant expression"):
        prompts.extract_constant(src, "D")
    with pytest.raises(WorkbenchError, match="no top-level constant 'F'"):
        prompts.extract_constant(src, "F")
    with pytest.raises(WorkbenchError, match="no item 'nope'"):
        prompts.extract_constant(src, "C", ("nope",))
    with pytest.raises(WorkbenchError, match="not parseable"):
        prompts.extract_constant("A = (", "A")


def test_fetch_from_a_checkout_installs_byte_for_byte(synthetic, cache):
    paths = prompts.fetch_prompts(synthetic)
    assert paths["teacher"] == cache / "prompts" / "rlt-official" / "teacher_system_prompt.txt"
    assert paths["teacher"].read_bytes() == TEACHER_TEXT.encode("utf-8")  # nothing added: no trailing newline
    assert paths["student"].read_bytes() == STUDENT_TEXT.encode("utf-8")
    # the prompt loaders return the text unchanged (the teacher prompt's trailing space included)
    assert formats.load_prompt(paths["teacher"]) == TEACHER_TEXT
    assert prompts.load_prompt_file(prompts.RECIPE_REFS["teacher"]) == TEACHER_TEXT
    assert prompts.load_prompt_file(paths["student"]) == STUDENT_TEXT
    assert all(s["checksum_ok"] for s in prompts.status().values())
    manifest = (cache / "prompts" / "rlt-official" / "source.json").read_text()
    assert prompts.PINNED_COMMIT in manifest and SYNTHETIC_SUMS["teacher"] in manifest
    umask = os.umask(0)
    os.umask(umask)
    assert (paths["teacher"].stat().st_mode & 0o777) == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


def test_explicit_checksums_and_a_changed_text(tmp_path, cache):
    repo = _write_repo(tmp_path / "RLT")
    texts = prompts.extract_prompts(repo, checksums=SYNTHETIC_SUMS)
    assert texts == {"teacher": TEACHER_TEXT, "student": STUDENT_TEXT}
    changed = _write_repo(tmp_path / "changed", student_file=STUDENT_FILE.replace("You think first.", "Think first."))
    with pytest.raises(WorkbenchError, match="reasoning_datasets_info.py: the student prompt .* SHA-256"):
        prompts.fetch_prompts(changed, checksums=SYNTHETIC_SUMS)
    assert not (cache / "prompts").exists()  # nothing installed
    with pytest.raises(WorkbenchError, match="teacher_data.py: the teacher prompt"):  # the recorded, official sums
        prompts.fetch_prompts(repo)


def test_fetch_from_a_bare_clone(tmp_path, synthetic, cache):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

    def git(*args, cwd=synthetic):
        return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "synthetic")
    sha = git("rev-parse", "HEAD")
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(synthetic), str(bare), cwd=tmp_path)
    paths = prompts.fetch_prompts(bare, commit=sha)
    assert paths["teacher"].read_bytes() == TEACHER_TEXT.encode("utf-8")
    with pytest.raises(WorkbenchError, match="git show 0000000"):
        prompts.fetch_prompts(bare, commit="0" * 40)


def test_github_unreachable_names_from(monkeypatch, cache):
    import urllib.error
    import urllib.request

    def refuse(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(WorkbenchError, match="raw.githubusercontent.com/SakanaAI/RLT/86a3f5c.*--from DIR"):
        prompts.fetch_prompts()


def test_cli(synthetic, cache, capsys):
    assert main(["prompts", "path", "teacher"]) == 2
    assert "workbench prompts fetch" in capsys.readouterr().err
    assert main(["prompts", "fetch", "--from", str(synthetic)]) == 0
    err = capsys.readouterr().err
    assert "teacher_system_prompt.txt" in err and prompts.RECIPE_REFS["student"] in err
    assert main(["prompts", "path", "teacher"]) == 0
    assert capsys.readouterr().out.strip() == str(prompts.installed_path("teacher"))
    prompts.installed_path("student").write_text(STUDENT_TEXT + " edited", encoding="utf-8")
    assert main(["prompts", "path"]) == 2
    assert "differs from the official student prompt" in capsys.readouterr().err
    with pytest.raises(WorkbenchError, match="not the official student prompt"):
        prompts.load_prompt_file(prompts.RECIPE_REFS["student"])
    assert main(["prompts", "fetch", "--from", str(synthetic / "nowhere")]) == 2


def test_paper_recipes_use_the_fetched_prompts(synthetic, cache):
    recipe = ROOT / "recipes" / "paper" / "teacher_rlt.yaml"
    with pytest.raises(WorkbenchError, match="official teacher system prompt is not installed.*workbench prompts fetch"):
        load_recipe(recipe)
    assert main(["train", "rlt", "--recipe", str(recipe), "--dry-run"]) == 2  # --dry-run checks it too
    prompts.fetch_prompts(synthetic)
    r = validate_recipe(recipe)
    assert r.spec.teacher_system_prompt == TEACHER_TEXT and r.reward.teacher_system_prompt == TEACHER_TEXT
    assert r.spec.student_system_prompt == STUDENT_TEXT and r.reward.student_system_prompt == STUDENT_TEXT
    again = load_recipe(data=yaml.safe_load(r.to_yaml()), stage="rlt")  # the resolved recipe keeps the bytes
    assert again.spec.teacher_system_prompt == TEACHER_TEXT
    # an explicit prompt file still overrides the recipe's
    own = cache / "mine.txt"
    own.write_text("My prompt.\n", encoding="utf-8")
    assert load_recipe(recipe, [f"teacher_system_prompt_file={own}"]).spec.teacher_system_prompt == "My prompt."
    assert validate_recipe(ROOT / "recipes" / "paper" / "teacher_sft.yaml").spec.teacher_system_prompt == TEACHER_TEXT
    assert validate_recipe(ROOT / "recipes" / "paper" / "student_distill.yaml").spec.student_system_prompt == STUDENT_TEXT


def test_tutorial_paper_scale_names_the_fetched_prompts():
    from workbench.tutorial import SCALES

    paper = SCALES["paper"]
    assert paper["teacher_system_prompt_file"] == prompts.RECIPE_REFS["teacher"]
    assert paper["student_system_prompt_file"] == prompts.RECIPE_REFS["student"]
    assert paper["max_new_tokens"] == 16384


@pytest.mark.skipif(not MIRROR.exists(), reason=f"no local mirror of the official repository at {MIRROR}")
def test_fetch_the_real_official_prompts(cache):
    paths = prompts.fetch_prompts(MIRROR)  # a bare clone: read with `git show 86a3f5c...:path`
    for which, path in paths.items():
        data = path.read_bytes()
        assert prompts.hashlib.sha256(data).hexdigest() == prompts.SOURCES[which].sha256
        assert prompts.load_prompt_file(prompts.RECIPE_REFS[which]).encode("utf-8") == data
    assert paths["teacher"].read_bytes().endswith(b". ")  # the official code passes the trailing space on
    r = validate_recipe(ROOT / "recipes" / "paper" / "teacher_rlt.yaml")
    assert r.reward.student_system_prompt.encode("utf-8") == paths["student"].read_bytes()


# ---------------------------------------------------------------------------------------------- SFT end of turn


@pytest.mark.slow
def test_sft_trains_the_newline_after_end_of_turn():
    """As the official collator (TRL's DataCollatorForCompletionOnlyLM on the full chat text): `<|im_end|>\\n`."""
    from workbench.models import load_tokenizer
    from workbench.training.sft import IGNORE, build_examples, end_of_turn

    tok = load_tokenizer("smollm2-135m")
    assert end_of_turn(tok) == "<|im_end|>\n" and end_of_turn(tok, keep_trailing_whitespace=False) == "<|im_end|>"
    problem = {"id": "p", "question": "Q?", "solution": "S", "reasoning_trace": "Body."}
    for fmt in ("teacher", "student"):
        (ex,) = build_examples([problem], tok, fmt)
        trained = [t for t, label in zip(ex["input_ids"], ex["labels"]) if label != IGNORE]
        assert tok.decode(trained[-2:]) == "<|im_end|>\n"
        # the whole example is exactly the chat template's text of the conversation (its final newline included)
        assert tok.decode(ex["input_ids"]).endswith("<|end_of_" + ("explanation" if fmt == "teacher" else "solution")
                                                    + "|><|im_end|>\n")


@pytest.mark.slow
def test_sft_end_of_turn_on_qwens_template(qwen_tok):
    """Qwen2.5's chat template (conftest.py's offline rebuild): the trained part ends `<|im_end|>` + `\\n`, and the whole
    example is the chat template's text of the full conversation, as the official SFT data (`text`) is."""
    from workbench.training.sft import IGNORE, build_examples, end_of_turn

    assert end_of_turn(qwen_tok) == "<|im_end|>\n"
    problem = {"id": "p", "question": "What is 2 + 3?", "solution": "2 + 3 = 5. \\boxed{5}",
               "reasoning_trace": "Add the numbers: 2 + 3 = 5.\n\nSo the answer is 5."}
    (ex,) = build_examples([problem], qwen_tok, "teacher", teacher_system_prompt=TEACHER_TEXT)
    trained = [t for t, label in zip(ex["input_ids"], ex["labels"]) if label != IGNORE]
    assert qwen_tok.decode(trained) == problem["reasoning_trace"] + formats.EXPLANATION_END + "<|im_end|>\n"
    assert trained[-2:] == qwen_tok.convert_tokens_to_ids(["<|im_end|>", "Ċ"])
    full = qwen_tok.apply_chat_template([
        {"role": "system", "content": TEACHER_TEXT}, {"role": "user", "content": problem["question"]},
        {"role": "assistant", "content": formats.teacher_assistant_prefix(problem["solution"])
         + problem["reasoning_trace"] + formats.EXPLANATION_END}], tokenize=False)
    assert qwen_tok.decode(ex["input_ids"]) == full  # the system prompt's trailing space included
