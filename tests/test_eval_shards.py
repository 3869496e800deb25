"""Sharded evaluation (workbench/eval/shards.py): shards as local processes and as submitit jobs, merged once each.

The slurm executor runs through submitit's own local executor (`--slurm-cluster local`): the same submission code
(AutoExecutor, parameters, pickled shard function, results) as on a cluster, with processes on this machine.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
RUN = ["eval", "run", "--benchmark", "countdown", "--limit", "8", "--engine", "transformers", "--temperature", "0",
       "--max-new-tokens", "24"]


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "records.jsonl").read_text(encoding="utf-8").splitlines()]


def _check_merged(out: Path, n: int) -> dict:
    recs = _records(out)
    keys = [(r["problem_id"], r["sample"]) for r in recs]
    assert len(keys) == len(set(keys)) == 8  # every sample exactly once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 8 and summary["samples"] == 8 and summary["complete"] is True
    assert summary["shards"]["count"] == n
    shard_ids = [{r["problem_id"] for r in _records(out / "shards" / f"{k}-of-{n}")} for k in range(n)]
    assert set().union(*shard_ids) == {r["problem_id"] for r in recs}
    assert sum(len(s) for s in shard_ids) == 8  # disjoint slices
    return summary


def test_two_local_shards_merge_into_one_run_equal_to_the_unsharded_run(tmp_path, capsys):
    """The issue's command (with greedy, short answers): 8 samples once each in one summary, the same answers and
    accuracy as one unsharded run."""
    out = tmp_path / "sharded"
    assert main([*RUN, "--model", "smollm2-135m", "--shards", "2", "--executor", "local", "--output", str(out)]) == 0
    summary = _check_merged(out, 2)
    assert main([*RUN, "--model", "smollm2-135m", "--output", str(tmp_path / "plain")]) == 0
    plain = {r["problem_id"]: r for r in _records(tmp_path / "plain")}
    for r in _records(out):
        assert r["output"] == plain[r["problem_id"]]["output"] and r["equal"] == plain[r["problem_id"]]["equal"]
    assert summary["accuracy"] == pytest.approx(json.loads((tmp_path / "plain" / "summary.json").read_text())["accuracy"])
    states = json.loads((out / "shards.json").read_text())
    assert [s["state"] for s in states["shards"]] == ["done", "done"]


def test_a_failed_shard_resumes_alone(tmp_path, tiny_dir):
    out = tmp_path / "run"
    args = [*RUN, "--model", tiny_dir, "--shards", "2", "--output", str(out)]
    assert main(args) == 0
    first = _records(out / "shards" / "0-of-2")
    # shard 1 broke half-way: half of its records, no summary; and shard 0's folder must not be touched again
    s1 = out / "shards" / "1-of-2"
    lines = (s1 / "records.jsonl").read_text().splitlines()
    (s1 / "records.jsonl").write_text("\n".join(lines[:2]) + "\n")
    (s1 / "summary.json").unlink()
    stamp = (out / "shards" / "0-of-2" / "records.jsonl").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "shards" / "0-of-2" / "records.jsonl").stat().st_mtime_ns == stamp
    assert _records(out / "shards" / "0-of-2") == first
    log = (s1 / "shard.log").read_text()
    assert "2 of 4 samples already done" in log  # the shard resumed from its own records
    states = [s["state"] for s in json.loads((out / "shards.json").read_text())["shards"]]
    assert states == ["done (kept)", "done"]
    _check_merged(out, 2)


def test_a_shard_that_fails_is_reported_and_the_run_is_incomplete(tmp_path, tiny_dir):
    out = tmp_path / "run"
    args = [*RUN, "--model", tiny_dir, "--shards", "2", "--output", str(out)]
    assert main(args) == 0
    s1 = out / "shards" / "1-of-2"
    (s1 / "summary.json").unlink()
    (s1 / "config.json").write_text("{not json")  # the shard refuses its folder
    assert main(args) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["shards"]["states"]["1"].startswith("failed")
    assert "is not readable" in (s1 / "shard.log").read_text()
    (s1 / "config.json").unlink()  # mended: the run completes
    (s1 / "records.jsonl").unlink()
    assert main(args) == 0
    _check_merged(out, 2)


def test_slurm_executor_through_submitits_local_executor(tmp_path, tiny_dir):
    out = tmp_path / "run"
    assert main([*RUN, "--model", tiny_dir, "--shards", "2", "--executor", "slurm", "--slurm-config",
                 str(ROOT / "recipes" / "slurm" / "eval.yaml"), "--slurm-cluster", "local", "--slurm-time", "20",
                 "--output", str(out)]) == 0
    summary = _check_merged(out, 2)
    assert summary["shards"]["executor"] == "slurm"
    submitted = list((out / "slurm").glob("*_submitted.pkl"))
    assert len(submitted) == 2  # two submitit jobs, their pickled function and logs in OUTPUT/slurm


def test_shard_settings_and_errors(tmp_path, tiny_dir):
    from workbench.errors import WorkbenchError
    from workbench.eval.shards import ShardConfig

    cfg = ShardConfig(shards=2, executor="slurm", slurm_config=str(ROOT / "recipes" / "slurm" / "eval.yaml"),
                      slurm_gpus=4)
    s = cfg.slurm()
    assert s["gpus"] == 4 and s["partition"] == "gpu" and s["time"] == 240  # flag over file over defaults
    bad = tmp_path / "bad.yaml"
    bad.write_text("partitoin: gpu\n")
    with pytest.raises(WorkbenchError, match="keys among"):
        ShardConfig(slurm_config=str(bad)).slurm()
    with pytest.raises(WorkbenchError, match="--shards"):
        ShardConfig(shards=0)
    assert main([*RUN, "--model", tiny_dir, "--shards", "9", "--output", str(tmp_path / "x")]) == 2
    out = tmp_path / "limit"
    assert main([*RUN, "--model", tiny_dir, "--shards", "2", "--output", str(out)]) == 0
    assert main([*RUN[:4], "--limit", "6", *RUN[6:], "--model", tiny_dir, "--shards", "2", "--output", str(out)]) == 2


def test_help_documents_both_executors():
    text = subprocess.run([sys.executable, "-m", "workbench", "eval", "run", "--help"], capture_output=True,
                          text=True, check=True).stdout
    for flag in ("--shards", "--executor {local,slurm}", "--slurm-partition", "--slurm-cluster", "--gpus-per-shard"):
        assert flag in text


@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_generate_in_shards_merges_every_completion_once(tmp_path, tiny_dir, executor):
    """`workbench generate --shards 2`: every (problem, sample) once in --output, in problem order, the same greedy
    completions as one unsharded run; again, nothing is generated twice."""
    gen = ["generate", "--teacher", tiny_dir, "--data", "demo", "--limit", "5", "--n", "2", "--temperature", "0",
           "--max-new-tokens", "12", "--engine", "transformers"]
    extra = ["--executor", "slurm", "--slurm-cluster", "local"] if executor == "slurm" else []
    out = tmp_path / "gen.jsonl"
    assert main([*gen, "--output", str(out), "--shards", "2", *extra]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    keys = [(r["problem_id"], r["sample"]) for r in rows]
    assert len(keys) == len(set(keys)) == 10
    assert main([*gen, "--output", str(tmp_path / "plain.jsonl")]) == 0
    plain = [json.loads(line) for line in (tmp_path / "plain.jsonl").read_text().splitlines()]
    assert keys == [(r["problem_id"], r["sample"]) for r in plain]  # problem order
    assert [r["completion"] for r in rows] == [r["completion"] for r in plain]
    parts = sorted((tmp_path / "gen.jsonl.shards").glob("*-of-2/generated.jsonl"))
    assert [len(p.read_text().splitlines()) for p in parts] == [6, 4]  # problems 0, 2, 4 and 1, 3
    assert main([*gen, "--output", str(out), "--shards", "2", *extra]) == 0  # resumed: nothing new
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    # an unsharded file is never replaced by a merge of shards
    before = (tmp_path / "plain.jsonl").read_bytes()
    assert main([*gen, "--output", str(tmp_path / "plain.jsonl"), "--shards", "2", *extra]) == 2
    assert (tmp_path / "plain.jsonl").read_bytes() == before


def test_sharded_job_in_the_job_system_shows_its_shards(jobs_home, tmp_path, tiny_dir, capsys):
    """`--background --shards 2`: a job like any other (recorded, run, listed), its progress counted from the shards'
    records, its shard states in `workbench jobs show` and in the Evaluate tab's summary."""
    from workbench.eval import jobs
    from workbench.eval.views import job_summary, summary_markdown

    out = tmp_path / "job"
    assert main([*RUN, "--model", tiny_dir, "--shards", "2", "--background", "--output", str(out)]) == 0
    job = jobs.list_jobs()[0]
    assert job.args["shards"]["shards"] == 2 and "2 shards (local)" in job.title
    done = jobs.wait_job(job.id, timeout_s=300)
    assert done.state == "done", jobs.read_log(job.id)
    assert (done.progress_done, done.progress_total) == (8, 8)
    _check_merged(out, 2)
    capsys.readouterr()
    assert main(["jobs", "show", str(job.id)]) == 0
    assert "shards    0: done · 1: done" in capsys.readouterr().out
    text = summary_markdown(job_summary(done), done, None)
    assert "**Shards:** 0: done · 1: done" in text and "8 samples" in text


def test_data_parallel_size_is_local_shards_with_their_gpus(tmp_path, tiny_dir, capsys):
    """--data-parallel-size D: D local shards, each given its own CUDA_VISIBLE_DEVICES (T GPUs with
    --tensor-parallel-size T); the shard processes themselves get no sharding flag (no shards of shards)."""
    from workbench.errors import WorkbenchError
    from workbench.eval.shards import ShardConfig

    cfg = ShardConfig(data_parallel_size=4)
    assert (cfg.shards, cfg.executor) == (4, "local")
    assert cfg.with_engine(None).gpus_per_shard == 1 and cfg.with_engine(2).gpus_per_shard == 2
    with pytest.raises(WorkbenchError, match="data-parallel-size"):
        ShardConfig(data_parallel_size=2, shards=3)
    out = tmp_path / "gen.jsonl"
    assert main(["generate", "--teacher", tiny_dir, "--data", "demo", "--limit", "4", "--max-new-tokens", "8",
                 "--engine", "transformers", "--output", str(out), "--data-parallel-size", "2"]) == 0
    assert len(out.read_text().splitlines()) == 4
    for k in range(2):
        spec = json.loads((tmp_path / "gen.jsonl.shards" / f"{k}-of-2" / "shard.json").read_text())
        assert "--data-parallel-size" not in spec["argv"] and spec["argv"][-4:] == [
            "--shard-index", str(k), "--shard-count", "2"]
    err = capsys.readouterr().err
    assert "CUDA_VISIBLE_DEVICES=0," in err and "CUDA_VISIBLE_DEVICES=1," in err
    run = tmp_path / "run"
    assert main([*RUN, "--model", tiny_dir, "--data-parallel-size", "2", "--tensor-parallel-size", "2",
                 "--output", str(run)]) == 0
    err = capsys.readouterr().err
    assert "CUDA_VISIBLE_DEVICES=0,1," in err and "CUDA_VISIBLE_DEVICES=2,3," in err  # one engine on 2 GPUs each
    _check_merged(run, 2)


def test_cancelling_a_sharded_job_stops_every_shard_and_resume_finishes_it(jobs_home, tmp_path, tiny_dir):
    """Cancel while both shard processes run (after the first record of either): both processes end, the job is
    cancelled and the finished samples stay; resume runs the rest only and merges every sample once. 256 greedy
    tokens of the tiny model keep a sample about a second long, so the shards are still running at the cancel."""
    import re

    from conftest import process_gone, wait_for

    from workbench.eval import jobs

    out = tmp_path / "job"
    assert main(["eval", "run", "--benchmark", "countdown", "--limit", "6", "--engine", "transformers",
                 "--temperature", "0", "--max-new-tokens", "256", "--batch-size", "1", "--model", tiny_dir,
                 "--shards", "2", "--background", "--output", str(out)]) == 0
    job = jobs.list_jobs()[0]

    def shard_records() -> int:
        files = [out / "shards" / f"{k}-of-2" / "records.jsonl" for k in range(2)]
        return sum(len(f.read_text().splitlines()) for f in files if f.is_file())

    wait_for(lambda: shard_records() >= 1 or jobs.get_job(job.id).state not in jobs.ACTIVE, 240, "a first record")
    pids = [int(p) for p in re.findall(r"shard \d: process (\d+)", jobs.read_log(job.id))]
    assert len(pids) == 2, jobs.read_log(job.id)
    jobs.cancel_job(job.id)
    if jobs.get_job(job.id).state == "done":  # the machine ran it all before the cancel: nothing left to check
        pytest.skip("the job finished before it could be cancelled")
    assert jobs.get_job(job.id).state == "cancelled"
    wait_for(lambda: all(process_gone(p) for p in pids), 15, "both shard processes to end")
    before = shard_records()
    assert 1 <= before < 6
    jobs.resume_job(job.id)
    done = jobs.wait_job(job.id, timeout_s=300)
    assert done.state == "done", jobs.read_log(job.id)
    recs = _records(out)
    assert sorted(r["problem_id"] for r in recs) == [f"countdown-easy-{i:04d}" for i in range(6)]
    assert "already done" in "".join((out / "shards" / f"{k}-of-2" / "shard.log").read_text() for k in range(2))
    print("records before the cancel:", before)
