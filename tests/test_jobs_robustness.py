"""The job system under concurrent and careless use (issue 12, items 2, 3 and 8): a resume is accepted once however
many arrive at the same moment, a job has one worker at a time, paths are stored absolute so a resume from another
folder reads the same files, and a damaged job table or an absurd job id gives a one-line error, not a traceback."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import process_gone as _gone
from conftest import wait_for as _wait_for

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.eval import jobs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def home(jobs_home):
    return jobs_home


def _state(job_id):
    """The job's state straight from the table (no reconciling, no hooks)."""
    con = sqlite3.connect(jobs.home() / "jobs.db", timeout=30)
    try:
        return con.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()[0]
    finally:
        con.close()


def _sql(query, params=()):
    con = sqlite3.connect(jobs.home() / "jobs.db", timeout=30, isolation_level=None)
    try:
        return con.execute(query, params).rowcount
    finally:
        con.close()


def _stopped_job(args, kind="wait", state="failed"):
    """A job that ended `state` without running anything (as a job killed before its first step is left)."""
    con = jobs._connect()
    try:
        now = time.time()
        cur = con.execute("INSERT INTO jobs (kind, title, args, state, created_at, updated_at, finished_at, message, "
                          "error, output_dir) VALUES (?, '', ?, ?, ?, ?, ?, ?, 'stopped', ?)",
                          (kind, json.dumps(args), state, now, now, now, state, args.get("output_dir")))
        return int(cur.lastrowid)
    finally:
        con.close()


def _resume_in_threads(job_id, names):
    """Call resume_job(job_id) in one thread per name, all at once; returns [(name, 'ok' | error message)]."""
    results = []

    def resume(name):
        try:
            jobs.resume_job(job_id)
            results.append((name, "ok"))
        except WorkbenchError as exc:
            results.append((name, str(exc)))

    threads = [threading.Thread(target=resume, args=(n,), name=n) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def _worker_starts(job_id):
    return jobs.read_log(job_id).count("waiting for a slot")


# ================================================================================================== item 2


def test_four_simultaneous_resumes_are_accepted_once_and_run_once(monkeypatch):
    job_id = _stopped_job({"seconds": 1.0, "steps": 4})
    barrier = threading.Barrier(4, timeout=10)
    real = jobs._reconcile

    def in_step(con):  # all four resumes read the table, then all four go on at the same moment
        real(con)
        if threading.current_thread().name.startswith("resume-"):
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass

    monkeypatch.setattr(jobs, "_reconcile", in_step)
    results = _resume_in_threads(job_id, [f"resume-{i}" for i in range(4)])
    monkeypatch.setattr(jobs, "_reconcile", real)
    accepted = [n for n, r in results if r == "ok"]
    assert len(results) == 4 and len(accepted) == 1, results
    for _, msg in results:
        assert msg == "ok" or f"job {job_id}" in msg
    done = jobs.wait_job(job_id, timeout_s=60)
    time.sleep(1.0)  # a second worker, had one been started, has printed its first line by now
    assert done.state == "done" and done.result == {"steps": 4}, jobs.read_log(job_id)
    assert done.attempts == 1 and _worker_starts(job_id) == 1, jobs.read_log(job_id)


def test_a_stale_resume_with_two_slots_starts_no_second_worker(monkeypatch):
    """Two slots: a resume that read `failed` before another resume started the job must not start it again."""
    monkeypatch.setenv("RLT_WORKBENCH_MAX_JOBS", "2")
    job_id = _stopped_job({"seconds": 4.0, "steps": 8})
    real_get, stale = jobs._get, {"done": False}

    def slow_get(con, jid):
        info = real_get(con, jid)
        if threading.current_thread().name == "late" and not stale["done"]:
            stale["done"] = True  # read `failed`, then lose the race: act only once the other resume runs the job
            _wait_for(lambda: _state(job_id) == "running", 30, "the first resume's worker to run")
        return info

    monkeypatch.setattr(jobs, "_get", slow_get)
    results = _resume_in_threads(job_id, ["early", "late"])
    monkeypatch.setattr(jobs, "_get", real_get)
    assert [r for _, r in results].count("ok") == 1, results
    assert dict(results)["early"] == "ok"
    done = jobs.wait_job(job_id, timeout_s=60)
    time.sleep(1.0)
    assert done.state == "done" and done.attempts == 1 and _worker_starts(job_id) == 1, jobs.read_log(job_id)


def test_a_second_worker_for_a_held_job_refuses(monkeypatch):
    """Whatever the table says, a worker does not run a job whose worker is alive (two slots: nothing else stops it)."""
    monkeypatch.setenv("RLT_WORKBENCH_MAX_JOBS", "2")
    job = jobs.submit("wait", {"seconds": 10.0, "steps": 20})
    _wait_for(lambda: jobs.get_job(job.id).state == "running", what="first worker running")
    first_pid = jobs.get_job(job.id).pid
    _sql("UPDATE jobs SET state='queued' WHERE id=?", (job.id,))  # as a lost race used to leave the row
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RLT_WORKBENCH_MAX_JOBS": "2"}
    second = subprocess.run([sys.executable, "-m", "workbench.eval.jobs", "run", str(job.id)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, start_new_session=True)
    out = second.stdout + second.stderr
    assert "another worker" in out and str(first_pid) in out, out
    assert _sql("UPDATE jobs SET state='running' WHERE id=? AND state='queued'", (job.id,)) == 1
    done = jobs.wait_job(job.id, timeout_s=60)
    assert done.state == "done" and done.attempts == 1 and done.pid == first_pid, jobs.read_log(job.id)


def test_resume_is_refused_while_the_previous_worker_still_holds_the_job(monkeypatch):
    monkeypatch.setattr(jobs, "RESUME_GRACE_S", 1.0)  # how long resume waits for a worker that is exiting
    job = jobs.submit("wait", {"seconds": 60.0, "steps": 60})
    _wait_for(lambda: jobs.get_job(job.id).state == "running", what="worker running")
    pid = jobs.get_job(job.id).pid
    # the row says cancelled, the process has not exited yet (a cancel that is still waiting for it, say)
    _sql("UPDATE jobs SET state='cancelled', finished_at=?, message='cancelled' WHERE id=?", (time.time(), job.id))
    try:
        with pytest.raises(WorkbenchError, match=rf"job {job.id}.*{pid}"):
            jobs.resume_job(job.id)
        assert jobs.get_job(job.id).state == "cancelled" and jobs.get_job(job.id).pid == pid
    finally:
        os.killpg(pid, signal.SIGKILL)
        child = jobs._CHILDREN.get(pid)
        if child is not None:
            child.wait(15)
        _wait_for(lambda: _gone(pid), 15, "the worker to exit")
    resumed = jobs.resume_job(job.id)  # its worker is gone: now it may run again
    assert resumed.state in ("queued", "running") and resumed.pid != pid
    _wait_for(lambda: jobs.get_job(job.id).state == "running", what="resumed worker running")
    assert jobs.get_job(job.id).attempts == 2
    jobs.cancel_job(job.id, grace_s=1)


def test_cancel_and_resume_of_a_finished_job_say_so():
    job = jobs.submit("wait", {"seconds": 0.1, "steps": 1})
    assert jobs.wait_job(job.id, timeout_s=60).state == "done"
    with pytest.raises(WorkbenchError, match="is done"):
        jobs.cancel_job(job.id)
    with pytest.raises(WorkbenchError, match="is done"):
        jobs.resume_job(job.id)
    assert jobs.get_job(job.id).state == "done"


# ================================================================================================== item 3


def test_eval_paths_are_stored_absolute_and_a_resume_elsewhere_reads_the_same_file(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.chdir(a)
    with pytest.raises(WorkbenchError, match="'cd.jsonl': no such file or folder"):  # said at submit, not later
        jobs.submit_eval("countdown", data="cd.jsonl", limit=1, output_dir="out")
    (a / "cd.jsonl").write_text('{"numbers": [3, 4], "target": "x"}\n')  # no usable row: the job fails at once
    (b / "cd.jsonl").write_text('{"numbers": [3, 4], "target": 12}\n')  # a good file of the same name elsewhere
    job = jobs.submit_eval("countdown", data="cd.jsonl", limit=1, output_dir="out")
    assert job.args["data"] == str(a / "cd.jsonl")
    assert job.args["output_dir"] == job.output_dir == str(a / "out")
    assert job.cwd == str(a)
    first = jobs.wait_job(job.id, timeout_s=120)
    assert first.state == "failed" and str(a / "cd.jsonl") in first.error, (first.error, jobs.read_log(job.id))
    monkeypatch.chdir(b)  # `jobs resume` from another folder
    jobs.resume_job(job.id)
    again = jobs.wait_job(job.id, timeout_s=120)
    assert again.state == "failed" and again.attempts == 2 and again.error == first.error, again.error
    assert again.args["data"] == str(a / "cd.jsonl") and str(b) not in again.error


def test_which_eval_arguments_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "cd.jsonl").write_text("")
    (tmp_path / "ckpt").mkdir()
    blocker = jobs.submit("wait", {"seconds": 120, "steps": 120})  # keeps the evaluations below queued
    hub = jobs.submit_eval("countdown", data="someorg/somedata")
    local = jobs.submit_eval("countdown", data="sub/cd.jsonl")  # shaped like a hub id, but a file here
    model = jobs.submit_eval("countdown", model="ckpt")
    alias = jobs.submit_eval("countdown")
    raw = jobs.submit("eval", {"benchmark": "countdown", "data": "x.jsonl", "output_dir": "o"})
    assert hub.args["data"] == "someorg/somedata"
    assert local.args["data"] == str(tmp_path / "sub" / "cd.jsonl")
    assert model.args["model"] == str(tmp_path / "ckpt")
    assert alias.args["model"] == "smollm2-135m" and alias.args["data"] is None
    assert raw.args["data"] == str(tmp_path / "x.jsonl") and raw.output_dir == str(tmp_path / "o")
    for j in (raw, alias, model, local, hub, blocker):
        jobs.cancel_job(j.id, grace_s=1)


def test_an_old_job_with_a_relative_data_path_is_not_resumed_elsewhere(tmp_path, monkeypatch):
    """A job recorded before paths were stored absolute, without the folder it was submitted from: refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cd.jsonl").write_text('{"not": "a countdown problem"}\n')  # some other cd.jsonl than the job's
    job_id = _stopped_job({"benchmark": "countdown", "model": "smollm2-135m", "limit": 1, "data": "cd.jsonl",
                           "output_dir": str(tmp_path / "out")}, kind="eval")
    assert jobs.get_job(job_id).cwd is None
    with pytest.raises(WorkbenchError, match=r"relative.*cd\.jsonl"):
        jobs.resume_job(job_id)
    assert jobs.get_job(job_id).state == "failed" and not jobs.job_dir(job_id).exists()


def test_an_old_job_table_gains_the_cwd_column(home):
    home.mkdir(parents=True)
    con = sqlite3.connect(home / "jobs.db")
    con.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, title TEXT NOT NULL "
                "DEFAULT '', args TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, "
                "finished_at REAL, updated_at REAL, pid INTEGER, pgid INTEGER, progress_done INTEGER NOT NULL DEFAULT 0, "
                "progress_total INTEGER NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '', error TEXT, result TEXT, "
                "output_dir TEXT, attempts INTEGER NOT NULL DEFAULT 0)")
    con.execute("INSERT INTO jobs (kind, args, state, created_at) VALUES ('wait', '{}', 'done', 1.0)")
    con.commit()
    con.close()
    (old,) = jobs.list_jobs()
    assert old.state == "done" and old.cwd is None
    new = jobs.submit("wait", {"seconds": 0.1, "steps": 1})
    assert new.cwd == os.getcwd() and jobs.wait_job(new.id, timeout_s=60).state == "done"


# ================================================================================================== item 8


def _malformed_db(path):
    """A real job table with a damaged page: opens, then fails when the jobs are read."""
    con = sqlite3.connect(path)
    con.execute(jobs._SCHEMA)
    con.executemany("INSERT INTO jobs (kind, title, args, state, created_at) VALUES ('wait', ?, '{}', 'done', 1.0)",
                    [("x" * 200,) for _ in range(200)])
    con.commit()
    con.close()
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["garbage", "malformed"])
def test_a_corrupt_job_table_is_one_clear_line(home, capsys, damage):
    home.mkdir(parents=True)
    db = home / "jobs.db"
    if damage == "garbage":
        db.write_bytes(b"these bytes are not an SQLite database\n" * 200)
    else:
        _malformed_db(db)
    for argv in (["jobs", "list"], ["jobs", "show", "1"], ["jobs", "cancel", "1"], ["jobs", "resume", "1"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert str(db) in err and "move it aside" in err and "Traceback" not in err, err
    with pytest.raises(WorkbenchError, match="jobs.db"):
        jobs.list_jobs()
    with pytest.raises(WorkbenchError, match="jobs.db"):
        jobs.submit("wait", {"seconds": 0.1})


def test_a_huge_or_negative_job_id_is_no_job(capsys):
    huge = "99999999999999999999999"
    for action in ("show", "cancel", "resume"):
        assert main(["jobs", action, huge]) == 2
        err = capsys.readouterr().err
        assert f"no job {huge}" in err and "Traceback" not in err and err.count("\n") == 1, err
    for bad in (-(10**30), 2**63, -1, 0):
        with pytest.raises(WorkbenchError, match=f"no job {bad}"):
            jobs.get_job(bad)
    assert jobs.read_log(10**30) == "" and jobs.list_jobs() == []
