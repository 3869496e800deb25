"""Jobs: long work (evaluation runs) in its own process, tracked in a SQLite table that outlives the app.

Everything lives under the home folder, `$RLT_WORKBENCH_HOME` (default `~/.rlt-workbench`):
    jobs.db            the table of jobs (SQLite, WAL mode, so the app can read while jobs write)
    jobs/<id>/log.txt  the job's stdout and stderr (appended to when it is resumed)
    jobs/<id>/eval/    an evaluation job's records.jsonl, summary.json and config.json (unless --output said where)

Life of a job: `submit` records it as `queued` *before* anything starts, then starts
`python -m workbench.eval.jobs run ID` in a new session (its own process group). That process waits for a
free slot (`$RLT_WORKBENCH_MAX_JOBS`, default 1: one job runs at a time, the rest wait in id order), marks
itself `running`, reports progress into the table, and ends `done` or `failed`. `cancel` marks it `cancelled`
and kills its whole process group (SIGTERM, then SIGKILL). `resume` starts a failed or cancelled job again; an
evaluation skips the samples it already finished. A job whose process vanished (killed, machine restarted) is
marked `failed` the next time the table is read, and can be resumed. Nothing here depends on the app running:
restart the app and the jobs are listed with their state.

The app's Evaluate tab needs only: `submit_eval`, `list_jobs`, `get_job`, `cancel_job`, `resume_job`,
`read_log`, `job_records`, `job_summary`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import WorkbenchError

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
# kind -> "module:function"; the function takes (args: dict, ctx: JobContext) and returns a JSON-able result
JOB_KINDS: dict[str, str] = {
    "eval": "workbench.eval.jobs:_job_eval",
    "wait": "workbench.eval.jobs:_job_wait",  # sleeps, reporting progress: checks the queue without a model
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    args TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL,
    pid INTEGER,
    pgid INTEGER,
    progress_done INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    error TEXT,
    result TEXT,
    output_dir TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
)
"""
_CHILDREN: dict[int, subprocess.Popen] = {}  # processes started by this process, reaped when the table is read


def home() -> Path:
    """The workbench home folder: $RLT_WORKBENCH_HOME, else ~/.rlt-workbench."""
    return Path(os.environ.get("RLT_WORKBENCH_HOME") or Path.home() / ".rlt-workbench").expanduser().resolve()


def job_dir(job_id: int) -> Path:
    return home() / "jobs" / str(int(job_id))


def _connect() -> sqlite3.Connection:
    root = home()
    try:
        root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(root / "jobs.db", timeout=30, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise WorkbenchError(f"cannot open the job table in {root} ({exc}); set RLT_WORKBENCH_HOME to a writable folder") from None
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA busy_timeout=30000")
    con.execute(_SCHEMA)
    return con


@dataclass
class JobInfo:
    """One row of the job table, with `args` and `result` decoded."""

    id: int
    kind: str
    title: str
    state: str
    args: dict
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float | None
    pid: int | None
    progress_done: int
    progress_total: int
    message: str
    error: str | None
    result: dict | None
    output_dir: str | None
    attempts: int

    @property
    def progress(self) -> float:
        """Fraction done, 0..1 (0 when the total is not known yet)."""
        return self.progress_done / self.progress_total if self.progress_total else 0.0

    @property
    def log_path(self) -> Path:
        return job_dir(self.id) / "log.txt"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["progress"] = self.progress
        d["log_path"] = str(self.log_path)
        return d


def _info(row: sqlite3.Row) -> JobInfo:
    d = dict(row)
    d.pop("pgid", None)
    d["args"] = json.loads(d["args"] or "{}")
    d["result"] = json.loads(d["result"]) if d["result"] else None
    return JobInfo(**d)


# ================================================================================================ processes


def _proc_alive(pid: int | None, job_id: int) -> bool:
    """Is `pid` alive and still our job's worker (not a zombie, not a reused pid)?"""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat[stat.rfind(")") + 2:].startswith("Z"):
                return False
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            return b"workbench.eval.jobs" in cmd and str(job_id).encode() in cmd
        except OSError:
            return False
    return True


def _spawn(con: sqlite3.Connection, job_id: int) -> None:
    d = job_dir(job_id)
    d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["RLT_WORKBENCH_HOME"] = str(home())
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads slow shared CPUs down
    root = str(Path(__file__).resolve().parents[2])  # so `-m workbench...` works from a clone that is not installed
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(d / "log.txt", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "workbench.eval.jobs", "run", str(job_id)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    _CHILDREN[proc.pid] = proc
    con.execute("UPDATE jobs SET pid=?, pgid=?, updated_at=? WHERE id=?", (proc.pid, proc.pid, time.time(), job_id))


def _reconcile(con: sqlite3.Connection) -> None:
    """Mark queued/running jobs whose process is gone as failed (it was killed, or the machine restarted)."""
    for pid in list(_CHILDREN):
        if _CHILDREN[pid].poll() is not None:
            _CHILDREN.pop(pid, None)
    now = time.time()
    for row in con.execute("SELECT id, pid, created_at, updated_at FROM jobs WHERE state IN ('queued','running')").fetchall():
        if row["pid"] is None and now - (row["updated_at"] or row["created_at"]) < 60:
            continue  # being submitted right now
        if not _proc_alive(row["pid"], row["id"]):
            con.execute("UPDATE jobs SET state='failed', finished_at=?, updated_at=?, error=? "
                        "WHERE id=? AND state IN ('queued','running') AND pid IS ?",
                        (now, now, "the job's process ended without reporting (killed, or the machine restarted); "
                                   f"`workbench jobs resume {row['id']}` continues it", row["id"], row["pid"]))


# ==================================================================================================== public


def submit(kind: str, args: dict, title: str = "") -> JobInfo:
    """Record a job as queued, then start its process. Returns the job (state queued or running)."""
    if kind not in JOB_KINDS:
        raise WorkbenchError(f"unknown job kind {kind!r}; use one of {', '.join(JOB_KINDS)}")
    con = _connect()
    try:
        now = time.time()
        cur = con.execute("INSERT INTO jobs (kind, title, args, state, created_at, updated_at, message) "
                          "VALUES (?, ?, ?, 'queued', ?, ?, 'queued')", (kind, title, json.dumps(args), now, now))
        job_id = int(cur.lastrowid)
        if kind == "eval":
            args = {**args, "output_dir": args.get("output_dir") or str(job_dir(job_id) / "eval")}
            con.execute("UPDATE jobs SET args=?, output_dir=? WHERE id=?", (json.dumps(args), args["output_dir"], job_id))
        _spawn(con, job_id)
        return _get(con, job_id)
    finally:
        con.close()


def submit_eval(benchmark: str, model: str = "smollm2-135m", preset: str | None = None, limit: int | None = None,
                output_dir: str | None = None, **options) -> JobInfo:
    """Submit an evaluation job (the arguments of `runner.EvalConfig`); checks them before recording the job."""
    from .runner import EvalConfig, resolve

    config = EvalConfig(benchmark=benchmark, model=model, preset=preset, limit=limit, output_dir=output_dir, **options)
    bench, p, _ = resolve(config)  # raises WorkbenchError for an unknown benchmark, preset or bad setting
    if output_dir:
        config.output_dir = str(Path(output_dir).expanduser().resolve())
    title = f"{bench.title} · {model} · {p.name}" + (f" · limit {limit}" if limit else "")
    return submit("eval", config.to_dict(), title)


def _get(con: sqlite3.Connection, job_id: int) -> JobInfo:
    row = con.execute("SELECT * FROM jobs WHERE id=?", (int(job_id),)).fetchone()
    if row is None:
        raise WorkbenchError(f"no job {job_id}; `workbench jobs list` shows the jobs")
    return _info(row)


def get_job(job_id: int) -> JobInfo:
    """One job, with its state brought up to date."""
    con = _connect()
    try:
        _reconcile(con)
        return _get(con, job_id)
    finally:
        con.close()


def list_jobs(limit: int = 200, states: tuple[str, ...] | None = None) -> list[JobInfo]:
    """The newest jobs first, with states brought up to date (a vanished process is marked failed)."""
    con = _connect()
    try:
        _reconcile(con)
        q, params = "SELECT * FROM jobs", []
        if states:
            q += f" WHERE state IN ({','.join('?' * len(states))})"
            params = list(states)
        rows = con.execute(q + " ORDER BY id DESC LIMIT ?", (*params, int(limit))).fetchall()
        return [_info(r) for r in rows]
    finally:
        con.close()


def cancel_job(job_id: int, grace_s: float = 5.0) -> JobInfo:
    """Cancel a queued or running job: mark it cancelled, then kill its process group (TERM, then KILL)."""
    con = _connect()
    try:
        _reconcile(con)
        job = _get(con, job_id)
        if job.state == "cancelled":
            return job
        if job.state not in ACTIVE:
            raise WorkbenchError(f"job {job_id} is {job.state}; only queued or running jobs can be cancelled")
        now = time.time()
        con.execute("UPDATE jobs SET state='cancelled', finished_at=?, updated_at=?, message='cancelled' "
                    "WHERE id=? AND state IN ('queued','running')", (now, now, job_id))
        row = con.execute("SELECT pid, pgid FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row["pgid"] and _proc_alive(row["pid"], job_id):
            _kill_group(row["pgid"], row["pid"], job_id, grace_s)
        return _get(con, job_id)
    finally:
        con.close()


def _kill_group(pgid: int, pid: int, job_id: int, grace_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        end = time.time() + (grace_s if sig == signal.SIGTERM else 5.0)
        while time.time() < end:
            child = _CHILDREN.get(pid)
            if child is not None:
                try:
                    child.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    pass
            if not _proc_alive(pid, job_id) and not _group_alive(pgid):
                return
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def resume_job(job_id: int) -> JobInfo:
    """Start a failed or cancelled job again (an evaluation skips the samples it already finished)."""
    con = _connect()
    try:
        _reconcile(con)
        job = _get(con, job_id)
        if job.state in ACTIVE:
            raise WorkbenchError(f"job {job_id} is {job.state}; it is not finished, so there is nothing to resume")
        if job.state == "done":
            raise WorkbenchError(f"job {job_id} is done; submit a new job to run it again")
        now = time.time()
        con.execute("UPDATE jobs SET state='queued', pid=NULL, pgid=NULL, error=NULL, finished_at=NULL, "
                    "updated_at=?, message='queued (resumed)' WHERE id=?", (now, job_id))
        _spawn(con, job_id)
        return _get(con, job_id)
    finally:
        con.close()


def wait_job(job_id: int, timeout_s: float = 600.0, poll_s: float = 0.5) -> JobInfo:
    """Block until the job is done, failed or cancelled (or the timeout passes); returns its last state."""
    end = time.time() + timeout_s
    while True:
        job = get_job(job_id)
        if job.state not in ACTIVE or time.time() > end:
            return job
        time.sleep(poll_s)


def read_log(job_id: int, tail_chars: int = 20000) -> str:
    """The end of a job's log (stdout and stderr of its process)."""
    path = job_dir(job_id) / "log.txt"
    if not path.is_file():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - tail_chars * 4))
        return fh.read().decode("utf-8", errors="replace")[-tail_chars:]


def job_records(job_id: int) -> list[dict]:
    """The per-sample records an evaluation job has written so far."""
    from .runner import read_records

    job = get_job(job_id)
    return read_records(job.output_dir) if job.output_dir else []


def job_summary(job_id: int) -> dict | None:
    """The summary.json of an evaluation job (None until the run has written one)."""
    from .runner import read_summary

    job = get_job(job_id)
    return read_summary(job.output_dir) if job.output_dir else None


# ======================================================================================== inside the job process


class JobContext:
    """What a job function gets: progress reporting, logging and a cancellation check."""

    def __init__(self, con: sqlite3.Connection, job_id: int):
        self.con, self.job_id = con, job_id
        self._last_progress = 0.0
        self._last_check, self._cancelled = 0.0, False

    def progress(self, done: int, total: int, message: str = "") -> None:
        now = time.time()
        if now - self._last_progress < 0.5 and done < total:
            return
        self._last_progress = now
        self.con.execute("UPDATE jobs SET progress_done=?, progress_total=?, message=?, updated_at=? WHERE id=?",
                         (int(done), int(total), message, now, self.job_id))

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def should_stop(self) -> bool:
        now = time.time()
        if now - self._last_check >= 1.0:
            self._last_check = now
            row = self.con.execute("SELECT state FROM jobs WHERE id=?", (self.job_id,)).fetchone()
            self._cancelled = row is None or row["state"] == "cancelled"
        return self._cancelled


def _job_eval(args: dict, ctx: JobContext) -> dict:
    from .runner import EvalConfig, run_eval

    if "backend" in args:  # jobs recorded before the sampling engine was named `engine`
        args["engine"] = args.pop("backend")
    summary = run_eval(EvalConfig(**args), progress=ctx.progress, should_stop=ctx.should_stop, log=ctx.log)
    keep = ("benchmark", "model", "preset", "accuracy", "accuracy_stderr", "problems", "samples", "complete", "output_dir")
    return {k: summary.get(k) for k in keep}


def _job_wait(args: dict, ctx: JobContext) -> dict:
    steps = int(args.get("steps", 10))
    for i in range(steps):
        ctx.progress(i, steps, f"step {i}/{steps}")
        time.sleep(float(args.get("seconds", 1.0)) / max(1, steps))
    ctx.progress(steps, steps, "finished")
    if args.get("fail"):
        raise WorkbenchError("failed on purpose")
    return {"steps": steps}


def _acquire_slot(con: sqlite3.Connection, job_id: int):
    """Wait until this job is the oldest queued one and a run slot is free; returns the held lock file."""
    import fcntl

    slots = max(1, int(os.environ.get("RLT_WORKBENCH_MAX_JOBS", "1") or 1))
    lock_dir = home() / "jobs"
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        state = con.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
        if state is None or state["state"] != "queued":
            return None
        _reconcile(con)
        first = con.execute("SELECT MIN(id) AS m FROM jobs WHERE state='queued'").fetchone()["m"]
        if first is None or first >= job_id:
            for i in range(slots):
                fh = open(lock_dir / f"slot-{i}.lock", "w")
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fh  # held until this process exits, however it exits
                except OSError:
                    fh.close()
        time.sleep(0.5)


def run_job(job_id: int) -> int:
    """The body of `python -m workbench.eval.jobs run ID`: wait for a slot, run the job, record how it ended."""
    import importlib

    con = _connect()
    job = _get(con, job_id)
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] job {job_id} ({job.kind}) pid {os.getpid()}: waiting for a slot",
          flush=True)
    slot = _acquire_slot(con, job_id)
    if slot is None:
        print(f"job {job_id} is no longer queued; exiting", flush=True)
        return 0
    now = time.time()
    cur = con.execute("UPDATE jobs SET state='running', started_at=?, updated_at=?, attempts=attempts+1, "
                      "message='running' WHERE id=? AND state='queued'", (now, now, job_id))
    if cur.rowcount == 0:
        return 0
    module, func = JOB_KINDS[job.kind].split(":")
    ctx = JobContext(con, job_id)
    try:
        result = getattr(importlib.import_module(module), func)(job.args, ctx)
    except BaseException as exc:  # recorded, then re-raised for the log and the exit status
        msg = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, WorkbenchError):
            traceback.print_exc()
        else:
            print(f"error: {exc}", flush=True)
        now = time.time()
        con.execute("UPDATE jobs SET state='failed', error=?, finished_at=?, updated_at=?, message='failed' "
                    "WHERE id=? AND state='running'", (msg, now, now, job_id))
        return 1
    now = time.time()
    if ctx.should_stop():
        return 0  # cancelled: the state says so already
    con.execute("UPDATE jobs SET state='done', result=?, finished_at=?, updated_at=?, message='done' "
                "WHERE id=? AND state='running'", (json.dumps(result, default=str), now, now, job_id))
    print(f"[{time.strftime('%H:%M:%S')}] job {job_id} done", flush=True)
    return 0


__all__ = ["STATES", "JOB_KINDS", "JobInfo", "JobContext", "home", "job_dir", "submit", "submit_eval", "get_job",
           "list_jobs", "cancel_job", "resume_job", "wait_job", "read_log", "job_records", "job_summary", "run_job"]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        sys.exit(run_job(int(sys.argv[2])))
    print("usage: python -m workbench.eval.jobs run JOB_ID   (internal: started by `workbench jobs`)", file=sys.stderr)
    sys.exit(2)
