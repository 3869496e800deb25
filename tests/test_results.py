"""The recorded results of the longer CPU runs (results/cpu/) agree with their own raw files, and the notebooks find them."""

import json
from pathlib import Path

import pytest

from workbench import tutorial
from workbench.eval.runner import paired_comparison, read_records, summarize

REC = Path(__file__).resolve().parents[1] / "results" / "cpu"
LOOP = sorted(p for p in (REC / "loop").iterdir() if p.is_dir())


def test_the_loop_runs_are_all_there():
    assert {f"{b}_{s}" for b in ("arith", "countdown") for s in ("base", "rlt", "traces")} <= {p.name for p in LOOP}


@pytest.mark.parametrize("run", LOOP, ids=lambda p: p.name)
def test_recorded_summaries_match_their_records(run):
    summary = json.loads((run / "summary.json").read_text())
    records = read_records(run)
    assert len(records) == summary["samples"] == summary["problems"]
    fresh = summarize(records)
    assert fresh["accuracy"] == pytest.approx(summary["accuracy"]) and fresh["problems"] == summary["problems"]
    assert all("prompt" not in r and r["output"] for r in records)  # outputs kept, prompts dropped (size)


def test_recorded_loop_shows_the_gain_the_readme_quotes():
    gain = paired_comparison(REC / "loop" / "arith_base", REC / "loop" / "arith_rlt")
    assert gain["problems"] == 256
    assert gain["difference"] == pytest.approx(0.297, abs=5e-4) and gain["z"] > 2
    assert f"+{gain['difference'] * 100:.1f} ± {gain['stderr'] * 100:.1f} points" in (REC.parents[1] / "README.md").read_text()


def test_recorded_teacher_run_matches_its_heldout_files():
    summary = json.loads((REC / "teacher_rlt" / "rlt_summary.json").read_text())
    for tag in ("before", "after"):
        rows = [json.loads(line) for line in (REC / "teacher_rlt" / f"heldout_{tag}.jsonl").read_text().splitlines()]
        rewards = [r["reward"] for r in rows if r.get("reward") is not None]
        assert len(rewards) == summary["heldout"][tag]["n"]
        assert sum(rewards) / len(rewards) == pytest.approx(summary["heldout"][tag]["reward"], abs=1e-9)


def test_results_folder_prefers_this_machines_finished_run(tmp_path):
    local = tmp_path / "teacher_rlt"
    path, where = tutorial.results_folder(local, "teacher_rlt", "rlt_summary.json")
    assert path == REC / "teacher_rlt" and "recorded" in where
    local.mkdir()
    (local / "metrics.jsonl").write_text("")  # a run still training: not finished, the recorded copy is shown
    assert tutorial.results_folder(local, "teacher_rlt", "rlt_summary.json")[0] == REC / "teacher_rlt"
    (local / "rlt_summary.json").write_text("{}")
    assert tutorial.results_folder(local, "teacher_rlt", "rlt_summary.json")[0] == local
    assert tutorial.results_folder(tmp_path / "none", "no-such-record", "x.json")[0] is None
    # the markers the notebooks use exist in the recorded copies
    assert tutorial.results_folder(tmp_path / "none", "loop", "countdown_traces/summary.json")[0] == REC / "loop"
