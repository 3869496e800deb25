"""Settings and small helpers shared by the notebooks: one switch, `SCALE`, picks laptop-CPU or paper-scale sizes.

The notebooks only call the package; this module keeps their parameter cells to one line and holds the few
notebook-only conveniences (where a stage's output lives, the built-in problems as files, training-curve plots).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .io import REPO_ROOT as ROOT
from .io import repo_path
from .viz import training_figure  # noqa: F401  (the notebooks' name for it)

# Everything the notebooks write at CPU scale lives here (outputs/ is not in git): in the repository, wherever the
# notebook's kernel starts (JupyterLab and papermill start it in notebooks/).
WORK = ROOT / "outputs/notebooks/work" if (ROOT / "recipes").is_dir() else Path("outputs/notebooks/work")

SCALES: dict[str, dict] = {
    # The embedded default: runs offline on a laptop CPU in minutes. Sizes are CI-sized (all five notebooks in a
    # few minutes on 2 cores); the longer "teaching loop" runs of the README use the recipes' own defaults.
    "cpu": {"teacher": "smollm2-135m", "student": "smollm2-135m", "device": "cpu", "needs_gpu": False,
            "sft_recipe": "recipes/cpu/teacher_sft.yaml", "rlt_recipe": "recipes/cpu/teacher_rlt.yaml",
            "student_recipe": "recipes/cpu/student_distill.yaml", "work": str(WORK),
            "sft_overrides": {"max_samples": 16, "learning_rate": 1.0e-4, "warmup_steps": 0, "save_strategy": "no"}, "sample_problems": 4,
            "rlt_overrides": {"max_steps": 2, "num_generations": 4, "per_device_train_batch_size": 4,
                              "gradient_accumulation_steps": 1,
                              "max_completion_length": 40, "learning_rate": 2.0e-5, "eval_max_problems": 4,
                              "eval_samples_per_problem": 1, "save_strategy": "no", "ref_model_sync_steps": 2},
            "student_overrides": {"num_train_epochs": 2, "warmup_steps": 0},
            "distill_problems": 8, "distill_offset": 192, "n_explanations": 2, "max_new_tokens": 40,
            "student_max_tokens": 512, "eval_limit": 8, "eval_max_new_tokens": 96, "eval_batch_size": 8,
            "eval_preset": "quick", "demo_items": 4,
            # transformers: on 2 cores it is the faster engine for these small batches, and a notebook kernel keeps
            # no vLLM engine (and its KV cache) alive; vLLM's CPU build is tested by the suite (tests/test_sampling.py)
            "engine": "transformers"},
    # The paper's setting: Qwen2.5-7B-Instruct teacher, Bespoke-Stratos-7B reward student (rlt-method.md section 4).
    "paper": {"teacher": "Qwen/Qwen2.5-7B-Instruct", "student": "bespokelabs/Bespoke-Stratos-7B", "device": "cuda",
              "needs_gpu": True, "sft_recipe": "recipes/paper/teacher_sft.yaml",
              "rlt_recipe": "recipes/paper/teacher_rlt.yaml", "student_recipe": "recipes/paper/student_distill.yaml",
              "work": str(ROOT / "outputs/paper" if (ROOT / "recipes").is_dir() else "outputs/paper"), "sft_overrides": {}, "sample_problems": 8, "rlt_overrides": {}, "student_overrides": {},
              "distill_problems": None, "distill_offset": 0, "n_explanations": 4, "max_new_tokens": 16384,
              "student_max_tokens": 16384, "eval_limit": None, "eval_max_new_tokens": None, "eval_batch_size": 64,
              "eval_preset": "skythought", "demo_items": None, "engine": "auto",
              # the official system prompts, installed by `workbench prompts fetch` (as in the paper recipes); read
              # them with workbench.prompts.load_prompt_file, which names the fetch command when they are missing
              "teacher_system_prompt_file": "cache:prompts/rlt-official/teacher_system_prompt.txt",
              "student_system_prompt_file": "cache:prompts/rlt-official/student_system_prompt.txt"},
}


def settings(scale: str) -> dict:
    """The settings of a scale, with `run` False (and a printed reason) when it needs a GPU that is missing."""
    if scale not in SCALES:
        raise ValueError(f"SCALE must be one of {sorted(SCALES)}, got {scale!r}")
    s = dict(SCALES[scale], scale=scale)
    s["run"] = not s["needs_gpu"] or torch.cuda.is_available()
    if not s["run"]:
        print(f"SCALE={scale!r} needs a CUDA GPU and none is available: the cells that load or train the models "
              "will print a message and skip. Set SCALE = 'cpu' to run everything on this machine.")
    return s


def system_prompt(s: dict, which: str) -> str | None:
    """The teacher or student system prompt of a scale: None (the project's own wording) at CPU scale, the official
    prompt installed by `workbench prompts fetch` at paper scale (an error naming that command when it is missing)."""
    ref = s.get(f"{which}_system_prompt_file")
    if not ref:
        return None
    from .prompts import load_prompt_file

    return load_prompt_file(ref)


def skip(s: dict, what: str) -> bool:
    """True (and a message) when a cell must be skipped at this scale."""
    if s["run"]:
        return False
    print(f"skipped on this machine: {what} needs a GPU at SCALE={s['scale']!r}")
    return True


def work_path(s: dict, *parts: str) -> str:
    """A path under the scale's work folder (outputs/notebooks/work at CPU scale)."""
    return str(Path(s["work"], *parts))


def is_model_dir(path: str | Path | None) -> bool:
    """True for a folder holding a saved model (config.json and weights)."""
    if not path:
        return False
    p = Path(path)
    return (p / "config.json").is_file() and any(p.glob("*.safetensors"))


def pick_model(candidates: list[str | None], fallback: str, what: str = "model") -> str:
    """The first candidate folder that holds a model, else `fallback` (with a message): a notebook runs alone too."""
    for c in candidates:
        if is_model_dir(c):
            print(f"{what}: {c}")
            return str(c)
    print(f"{what}: no trained model found at {[c for c in candidates if c]}; using {fallback!r} instead "
          "(run the earlier notebooks first to use their output)")
    return fallback


def arith_problems(split: str = "train", start: int = 0, limit: int | None = None) -> list[dict]:
    """The built-in arithmetic word problems (`builtin:arith`): id, question, solution (ends in \\boxed{}), trace."""
    from .training.datasets import load_problems

    rows = load_problems("builtin:arith", split)
    rows = rows[start:] if limit is None else rows[start:start + limit]
    return [{"id": str(r["id"]), "question": r["question"], "solution": r["solution"],
             "reasoning_trace": r["reasoning_trace"]} for r in rows]


def write_jsonl(path: str | Path, rows: list[dict]) -> str:
    """Write rows as JSONL (atomically); returns the path."""
    from .io import write_jsonl_atomic

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(path, rows)
    return str(path)


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSONL file (torn or blank lines skipped)."""
    from .io import read_jsonl

    return [row.data for row in read_jsonl(path) if row.ok]


def read_json(path: str | Path) -> dict | None:
    """A JSON file's content, or None when it is missing."""
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else None


# Small result files of the longer CPU runs, committed so every reader (and CI) sees the numbers the README quotes.
RECORDED = ROOT / "results" / "cpu"


def results_folder(local: str | Path, recorded: str, marker: str) -> tuple[Path | None, str]:
    """Where to read a longer run's results: this machine's `local` output when its `marker` file is there (the run
    finished), else the copy recorded in `results/cpu/<recorded>`; and a line saying which, to print."""
    local = repo_path(local)
    if (local / marker).is_file():
        return local, f"results of the run on this machine ({local})"
    rec = RECORDED / recorded
    if (rec / marker).is_file():
        return rec, (f"no finished run in {local} on this machine: showing the recorded results in "
                     f"results/cpu/{recorded} (2-core CPU, the commands above); run them to see your own")
    return None, f"no finished run in {local}, and no recorded copy: run the commands above"


def metrics_frame(path: str | Path):
    """`metrics.jsonl` of a training run as a DataFrame indexed by step (training rows only)."""
    import pandas as pd

    df = pd.DataFrame(read_jsonl(path))
    if df.empty:
        return df
    if "step" in df:
        df = df.dropna(subset=["step"]).drop_duplicates("step", keep="last").set_index("step").sort_index()
    return df


def heldout_table(summary: dict | None):
    """The held-out before/after block of `rlt_summary.json` as a small DataFrame (None when missing)."""
    import pandas as pd

    if not summary or not summary.get("heldout"):
        return None
    keys = ("n", "reward", "r_ss", "r_kl", "format_penalty_rate", "completion_tokens")
    return pd.DataFrame({tag: {k: v.get(k) for k in keys} for tag, v in summary["heldout"].items()}).T


def accuracy_row(summary: dict | None) -> dict:
    """Accuracy (pass@1) ± standard error and the number of problems from an eval summary (`workbench.eval`)."""
    if not summary:
        return {"accuracy": None, "stderr": None, "problems": 0}
    return {"accuracy": summary.get("accuracy"), "stderr": summary.get("accuracy_stderr"),
            "problems": summary.get("problems")}
