"""The official RLT system prompts: fetched from the official repository, never shipped with the workbench.

The paper's runs use two long Sky-T1-style system prompts, defined in the official code (github.com/SakanaAI/RLT):

- the teacher prompt, `TEACHER_SYSTEM_PROMPTS_AND_TAGS['stratos'][0]` in `custom_data/teacher_data.py` (used by the
  teacher SFT warm-up and the RL prompts);
- the student prompt, `STRATOS_SYSTEM_PROMPT` in `custom_data/reasoning_datasets_info.py` (the reward student's chat
  and the distillation data; the prompt Bespoke-Stratos-7B was trained with).

The workbench cannot ship their text, so `workbench prompts fetch` reads the two source files at a pinned commit
(from GitHub, or with `--from DIR` from a local checkout or bare clone, for offline machines), extracts the string
constants *without executing the files* (`ast`: string literals, implicit and `+` concatenation, `str(...)`, names
of earlier module-level constants, tuples, lists, dicts and subscripts), checks each text against the SHA-256
recorded below, and installs it byte for byte (UTF-8, no trailing newline) under the cache:

    $RLT_WORKBENCH_CACHE/prompts/rlt-official/teacher_system_prompt.txt
    $RLT_WORKBENCH_CACHE/prompts/rlt-official/student_system_prompt.txt

The official code passes both strings to the chat template as they are: the teacher prompt ends with a space
(". "), which the template keeps, and so does the installed file. `formats.load_prompt` removes trailing newlines
only, so it returns the installed text unchanged (`load_prompt_file` checks that against the checksum too).

Recipes name the installed files as `cache:prompts/rlt-official/teacher_system_prompt.txt` (see `CACHE_PREFIX`);
`resolve_prompt_file` maps that to the cache folder and, when the file is missing, raises an error that names the
fetch command.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import WorkbenchError
from .io import write_atomic

OFFICIAL_REPO = "SakanaAI/RLT"
PINNED_COMMIT = "86a3f5c78ff20b83cf6dc31d9e6b53003f4c1804"  # the commit rlt-method.md describes
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
INSTALL_SUBDIR = "prompts/rlt-official"
CACHE_PREFIX = "cache:"
FETCH_COMMAND = "workbench prompts fetch"


@dataclass(frozen=True)
class PromptSource:
    """Where one official prompt lives: a file of the official repository, a module-level name, subscripts."""

    which: str  # "teacher" or "student"
    path: str  # file in the official repository
    name: str  # module-level constant
    keys: tuple = ()  # subscripts applied to the constant's value
    sha256: str = ""  # of the UTF-8 text
    file_name: str = ""  # installed as INSTALL_SUBDIR/file_name

    @property
    def expression(self) -> str:
        return self.name + "".join(f"[{k!r}]" for k in self.keys)


SOURCES: dict[str, PromptSource] = {
    "teacher": PromptSource(
        "teacher", "custom_data/teacher_data.py", "TEACHER_SYSTEM_PROMPTS_AND_TAGS", ("stratos", 0),
        "2a6900e8cd23891f5b34a68c8b386045cd42c6c17ce0caa13f65005da0a49484", "teacher_system_prompt.txt"),
    "student": PromptSource(
        "student", "custom_data/reasoning_datasets_info.py", "STRATOS_SYSTEM_PROMPT", (),
        "6490a490932e93a0712ec83d53b79036a10059ccdbf786e088ac9c247aa19141", "student_system_prompt.txt"),
}
# What the recipes write: `teacher_system_prompt_file: cache:prompts/rlt-official/teacher_system_prompt.txt`
RECIPE_REFS = {w: f"{CACHE_PREFIX}{INSTALL_SUBDIR}/{s.file_name}" for w, s in SOURCES.items()}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------- extraction


class _Evaluator:
    """Evaluates constant expressions of a module's top-level assignments, without executing anything."""

    def __init__(self, source: str, filename: str):
        self.filename = filename
        try:
            tree = ast.parse(source, filename=filename)
        except SyntaxError as exc:
            raise WorkbenchError(f"{filename}: not parseable Python ({exc.msg}, line {exc.lineno})") from None
        self.assignments: dict[str, ast.expr] = {}
        for node in tree.body:  # the last top-level assignment of a name wins, as when the module runs
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.assignments[target.id] = node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                self.assignments[node.target.id] = node.value
        self.values: dict[str, Any] = {}
        self.active: set[str] = set()

    def name(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        if name not in self.assignments:
            raise WorkbenchError(f"{self.filename}: no top-level constant {name!r}")
        if name in self.active:
            raise WorkbenchError(f"{self.filename}: {name!r} refers to itself")
        self.active.add(name)
        try:
            value = self.eval(self.assignments[name])
        finally:
            self.active.discard(name)
        self.values[name] = value
        return value

    def eval(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):  # implicit concatenation is already one Constant
            return node.value
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.Tuple):
            return tuple(self.eval(e) for e in node.elts)
        if isinstance(node, ast.List):
            return [self.eval(e) for e in node.elts]
        if isinstance(node, ast.Dict) and None not in node.keys:
            return {self.eval(k): self.eval(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.eval(node.left), self.eval(node.right)
            if type(left) is type(right) and isinstance(left, (str, tuple, list)):
                return left + right
        if isinstance(node, ast.Subscript):
            value, key = self.eval(node.value), self.eval(node.slice)
            try:
                return value[key]
            except (KeyError, IndexError, TypeError):
                pass
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "str"
                and len(node.args) == 1 and not node.keywords):
            value = self.eval(node.args[0])
            if isinstance(value, str):
                return value
        where = f"line {getattr(node, 'lineno', '?')}"
        raise WorkbenchError(f"{self.filename}: {where} is not a constant expression the workbench can read "
                             f"({ast.dump(node)[:80]}...); the official file may have changed")


def extract_constant(source: str, name: str, keys: tuple = (), filename: str = "<source>") -> Any:
    """The value of `name[keys[0]][keys[1]]...` defined at the top level of Python `source`, read with `ast`."""
    ev = _Evaluator(source, filename)
    value = ev.name(name)
    for k in keys:
        try:
            value = value[k]
        except (KeyError, IndexError, TypeError):
            raise WorkbenchError(f"{filename}: {name} has no item {k!r}") from None
    return value


# ---------------------------------------------------------------------------------------------- reading


def _read_from_dir(root: Path, path: str, commit: str) -> str:
    """A file of the official repository from a checkout (its work tree) or a git directory (`git show`)."""
    f = root / path
    if f.is_file():
        return f.read_bytes().decode("utf-8")
    try:
        res = subprocess.run(["git", "-C", str(root), "show", f"{commit}:{path}"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkbenchError(f"{root} has no {path}, and `git show` could not run there ({exc})") from None
    if res.returncode != 0:
        why = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise WorkbenchError(f"{root} has no {path} in its work tree, and `git show {commit}:{path}` failed there "
                             f"({why[-1] if why else 'no output'}); give a checkout or clone of "
                             f"github.com/{OFFICIAL_REPO} that contains commit {commit}")
    return res.stdout.decode("utf-8")


def _read_from_github(path: str, commit: str, timeout: float = 30.0) -> str:
    import urllib.error
    import urllib.request

    url = RAW_URL.format(repo=OFFICIAL_REPO, commit=commit, path=path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - a fixed https URL
            return resp.read().decode("utf-8")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise WorkbenchError(
            f"could not download {url} ({getattr(exc, 'reason', exc)}). Without network access, clone "
            f"https://github.com/{OFFICIAL_REPO} on a machine that has it, copy the folder here and run "
            f"`{FETCH_COMMAND} --from DIR`") from None


def read_official_file(path: str, source_dir: str | Path | None = None, commit: str = PINNED_COMMIT) -> str:
    """The text of `path` at `commit`: from GitHub (source_dir None) or from a local checkout / git directory."""
    if source_dir is None:
        return _read_from_github(path, commit)
    root = Path(source_dir).expanduser()
    if not root.is_dir():
        raise WorkbenchError(f"--from {str(source_dir)!r} is not a folder (give a checkout of github.com/{OFFICIAL_REPO})")
    return _read_from_dir(root, path, commit)


def extract_prompts(source_dir: str | Path | None = None, commit: str = PINNED_COMMIT,
                    checksums: dict[str, str] | None = None) -> dict[str, str]:
    """{"teacher": text, "student": text}, read from the official files and checked against the checksums.

    `checksums` (which -> SHA-256) defaults to the recorded ones; a mismatch is an error that names the file.
    """
    expected = {w: s.sha256 for w, s in SOURCES.items()}
    expected.update(checksums or {})
    texts: dict[str, str] = {}
    for which, src in SOURCES.items():
        code = read_official_file(src.path, source_dir, commit)
        value = extract_constant(code, src.name, src.keys, filename=src.path)
        if not isinstance(value, str) or not value.strip():
            raise WorkbenchError(f"{src.path}: {src.expression} is not a non-empty string")
        got = sha256_text(value)
        if got != expected[which]:
            raise WorkbenchError(
                f"{src.path}: the {which} prompt ({src.expression}) has SHA-256 {got}, not the recorded "
                f"{expected[which]}: the file differs from the official one at commit {PINNED_COMMIT[:7]}; "
                "nothing was installed")
        texts[which] = value
    return texts


# ---------------------------------------------------------------------------------------------- installing


def cache_dir() -> Path:
    """The workbench cache folder ($RLT_WORKBENCH_CACHE, else ~/.cache/rlt-workbench): `models.cache_dir`."""
    from .models import cache_dir as _cache_dir

    return _cache_dir()


def install_dir() -> Path:
    return cache_dir() / INSTALL_SUBDIR


def installed_path(which: str) -> Path:
    if which not in SOURCES:
        raise WorkbenchError(f"unknown prompt {which!r}; use one of {sorted(SOURCES)}")
    return install_dir() / SOURCES[which].file_name


def install_prompts(texts: dict[str, str], source: str = "", commit: str = PINNED_COMMIT) -> dict[str, Path]:
    """Write the texts byte for byte (UTF-8, nothing added) into the cache; also a `source.json` manifest."""
    paths = {}
    for which, text in texts.items():
        paths[which] = installed_path(which)
        write_atomic(paths[which], text)
    manifest = {"repository": f"github.com/{OFFICIAL_REPO}", "commit": commit, "from": source,
                "files": {w: {"file": SOURCES[w].file_name, "source": f"{SOURCES[w].path}: {SOURCES[w].expression}",
                              "sha256": sha256_text(t)} for w, t in texts.items()}}
    write_atomic(install_dir() / "source.json", json.dumps(manifest, indent=2) + "\n")
    return paths


def fetch_prompts(source_dir: str | Path | None = None, commit: str = PINNED_COMMIT,
                  checksums: dict[str, str] | None = None) -> dict[str, Path]:
    """Read, check and install both official prompts; returns their installed paths."""
    texts = extract_prompts(source_dir, commit, checksums)
    where = str(source_dir) if source_dir is not None else RAW_URL.format(repo=OFFICIAL_REPO, commit=commit, path="")
    return install_prompts(texts, source=where, commit=commit)


# ---------------------------------------------------------------------------------------------- using


def _missing_message(which: str | None, path: Path) -> str:
    what = f"the official {which} system prompt" if which else "a fetched prompt file"
    return (f"{what} is not installed ({path} does not exist): run `{FETCH_COMMAND}` (or, without network access, "
            f"`{FETCH_COMMAND} --from DIR` with a checkout of github.com/{OFFICIAL_REPO}); the cache folder is "
            "$RLT_WORKBENCH_CACHE, else ~/.cache/rlt-workbench")


def resolve_prompt_file(ref: str | Path) -> Path:
    """A prompt-file reference as a path: `cache:REL` is REL under the cache folder; anything else is a path.

    A missing `cache:` file is an error that names `workbench prompts fetch`.
    """
    s = str(ref)
    if not s.startswith(CACHE_PREFIX):
        return Path(os.path.expanduser(s))
    rel = s[len(CACHE_PREFIX):].lstrip("/")
    if not rel:
        raise WorkbenchError(f"prompt file {s!r}: give a path after {CACHE_PREFIX!r}, e.g. {RECIPE_REFS['teacher']}")
    path = cache_dir() / rel
    if not path.is_file():
        which = next((w for w, r in RECIPE_REFS.items() if r == f"{CACHE_PREFIX}{rel}"), None)
        raise WorkbenchError(_missing_message(which, path))
    return path


def load_prompt_file(ref: str | Path) -> str:
    """Read a prompt file (a path or a `cache:` reference); an installed official prompt is checked byte for byte."""
    from .formats import load_prompt

    path = resolve_prompt_file(ref)
    text = load_prompt(path)
    for which, src in SOURCES.items():
        try:
            same = path.resolve() == installed_path(which).resolve()
        except OSError:
            same = False
        if same and sha256_text(text) != src.sha256:
            raise WorkbenchError(f"{path} is not the official {which} prompt any more (SHA-256 "
                                 f"{sha256_text(text)}, expected {src.sha256}); run `{FETCH_COMMAND}` again")
    return text


def status() -> dict[str, dict]:
    """Per prompt: installed path, whether it exists, and whether it matches the recorded checksum."""
    out = {}
    for which, src in SOURCES.items():
        p = installed_path(which)
        ok = p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() == src.sha256
        out[which] = {"path": str(p), "installed": p.is_file(), "checksum_ok": ok, "recipe_ref": RECIPE_REFS[which]}
    return out


__all__ = ["PINNED_COMMIT", "SOURCES", "RECIPE_REFS", "CACHE_PREFIX", "extract_constant", "extract_prompts",
           "fetch_prompts", "install_prompts", "installed_path", "resolve_prompt_file", "load_prompt_file", "status",
           "sha256_text"]
