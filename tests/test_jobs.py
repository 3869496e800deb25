"""The job system: persisted before start, queued/running/done/failed/cancelled, cancel kills the process group,
a vanished process is marked failed, resume continues; an evaluation job with a model."""

import json
import os
import signal
import time

import pytest
from conftest import process_gone as _gone
from conftest import wait_for as _wait_for

from workbench.cli import main
from workbench.eval import jobs


@pytest.fixture(autouse=True)
def home(jobs_home):
    return jobs_home


def test_job_runs_to_done_and_is_persisted(home):
    job = jobs.submit("wait", {"seconds": 0.5, "steps": 5}, title="a short wait")
    assert job.state in ("queued", "running")
    assert (home / "jobs.db").is_file() and jobs.job_dir(job.id).is_dir()
    done = jobs.wait_job(job.id, timeout_s=60)
    assert done.state == "done" and done.result == {"steps": 5}
    assert (done.progress_done, done.progress_total, done.progress) == (5, 5, 1.0)
    assert done.attempts == 1 and done.started_at and done.finished_at
    assert "waiting for a slot" in jobs.read_log(job.id)
    # an "app restart": forget the processes this one started, read the table afresh
    jobs._CHILDREN.clear()
    listed = {j.id: j for j in jobs.list_jobs()}
    assert listed[job.id].state == "done" and listed[job.id].title == "a short wait"


def test_failed_job_records_its_error():
    job = jobs.submit("wait", {"seconds": 0.1, "steps": 1, "fail": True})
    done = jobs.wait_job(job.id, timeout_s=60)
    assert done.state == "failed" and done.error == "failed on purpose"


def test_queue_runs_one_at_a_time_and_cancel_kills_the_group():
    first = jobs.submit("wait", {"seconds": 120, "steps": 120})
    second = jobs.submit("wait", {"seconds": 0.1, "steps": 1})
    _wait_for(lambda: jobs.get_job(first.id).state == "running", what="first job running")
    time.sleep(1.5)
    assert jobs.get_job(second.id).state == "queued"  # one slot: it waits its turn
    pid = jobs.get_job(first.id).pid
    cancelled = jobs.cancel_job(first.id)
    assert cancelled.state == "cancelled"
    _wait_for(lambda: _gone(pid), 15, "cancelled process to exit")
    assert jobs.wait_job(second.id, timeout_s=60).state == "done"  # the queue moves on
    assert jobs.get_job(first.id).state == "cancelled"  # not overwritten by the dying process


def test_cancel_a_queued_job():
    first = jobs.submit("wait", {"seconds": 120, "steps": 120})
    second = jobs.submit("wait", {"seconds": 0.1, "steps": 1})
    _wait_for(lambda: jobs.get_job(first.id).state == "running", what="first job running")
    pid2 = jobs.get_job(second.id).pid
    assert jobs.cancel_job(second.id).state == "cancelled"
    _wait_for(lambda: _gone(pid2), 15, "queued process to exit")
    assert jobs.get_job(first.id).state == "running"
    jobs.cancel_job(first.id)


def test_vanished_process_is_marked_failed_and_resumes():
    job = jobs.submit("wait", {"seconds": 120, "steps": 120})
    _wait_for(lambda: jobs.get_job(job.id).state == "running", what="job running")
    pid = jobs.get_job(job.id).pid
    os.kill(pid, signal.SIGKILL)  # as if the machine went down: nobody records anything
    _wait_for(lambda: _gone(pid) or jobs._CHILDREN.get(pid) and jobs._CHILDREN[pid].poll() is not None, 15, "kill")
    failed = _wait_for(lambda: (j := jobs.get_job(job.id)).state == "failed" and j, 15, "failed state")
    assert "resume" in failed.error
    resumed = jobs.resume_job(job.id)
    assert resumed.state in ("queued", "running")
    _wait_for(lambda: jobs.get_job(job.id).state == "running", what="resumed job running")
    assert jobs.get_job(job.id).attempts == 2
    jobs.cancel_job(job.id)


def test_jobs_cli_and_bad_inputs(capsys):
    assert main(["jobs", "list"]) == 0
    assert "no jobs" in capsys.readouterr().out
    job = jobs.submit("wait", {"seconds": 0.1, "steps": 1})
    jobs.wait_job(job.id, timeout_s=60)
    assert main(["jobs", "list"]) == 0
    assert f"{job.id:>4}  done" in capsys.readouterr().out
    assert main(["jobs", "show", str(job.id), "--log"]) == 0
    out = capsys.readouterr().out
    assert "state     done" in out and "---- log" in out
    assert main(["jobs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "done"
    for argv, msg in ((["jobs", "show", "999"], "no job 999"), (["jobs", "cancel", str(job.id)], "is done"),
                      (["jobs", "resume", str(job.id)], "is done"), (["jobs", "show"], "needs a job id")):
        assert main(argv) == 2
        assert msg in capsys.readouterr().err
    with pytest.raises(Exception, match="unknown job kind"):
        jobs.submit("shell", {"cmd": "true"})
    with pytest.raises(Exception, match="unknown benchmark"):
        jobs.submit_eval("mmlu")
    assert len(jobs.list_jobs()) == 1  # a refused submission records nothing


def test_eval_job_cancel_and_resume(capsys, tiny_dir):
    """An evaluation through the job system: cancel it after its first sample, resume, finish without redoing it.
    The model is the tiny random SmolLM2 of conftest.py (the embedded model's architecture and tokenizer): greedy, it
    never ends a sample early, and 256 tokens a sample keep each sample about a second long, as 24 tokens of the
    embedded model do, so the job is still running when its first record is seen."""
    assert main(["eval", "run", "--benchmark", "countdown", "--model", tiny_dir, "--limit", "3",
                 "--max-new-tokens", "256", "--batch-size", "1", "--background",
                 "--engine", "transformers"]) == 0  # seconds to its first sample (vLLM: a minute to start here)
    assert "submitted" in capsys.readouterr().out
    job = jobs.list_jobs()[0]
    assert job.kind == "eval" and job.output_dir.endswith(os.path.join("jobs", str(job.id), "eval"))
    _wait_for(lambda: len(jobs.job_records(job.id)) >= 1 or jobs.get_job(job.id).state not in jobs.ACTIVE,
              240, "the first record")
    jobs.cancel_job(job.id)
    first = jobs.job_records(job.id)
    assert jobs.get_job(job.id).state in ("cancelled", "done")
    if jobs.get_job(job.id).state == "cancelled":
        assert 1 <= len(first) < 3
        jobs.resume_job(job.id)
    done = jobs.wait_job(job.id, timeout_s=240)
    assert done.state == "done", jobs.read_log(job.id)
    recs = jobs.job_records(job.id)
    assert [r["problem_id"] for r in recs] == [f"countdown-easy-{i:04d}" for i in range(3)]
    assert recs[:len(first)] == first  # finished samples were kept, not generated again
    summary = jobs.job_summary(job.id)
    assert summary["problems"] == 3 and summary["complete"] and done.result["accuracy"] == summary["accuracy"]
    if len(first) < 3:
        assert f"{len(first)} of 3 samples already done" in jobs.read_log(job.id)
    print("records before the cancel:", len(first), "attempts:", done.attempts)
