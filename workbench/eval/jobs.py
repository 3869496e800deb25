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

Concurrency: every change of state is one SQL statement that checks the state it starts from (`UPDATE ... WHERE
state IN (...)`, then the row count says whether it happened), so of several simultaneous resumes or cancels exactly
one is accepted. A worker holds `jobs/<id>/worker.lock` (an flock, released by the kernel however the process ends)
from its start to its end: a second worker for the same job refuses to start, and a resume is refused while the
previous worker has not exited. Paths (`data`, `output_dir`, a local model folder) are stored absolute, and the
worker runs in the folder the job was submitted from, so a resume from another folder reads the same files.

The app's Evaluate tab needs only: `submit_eval`, `list_jobs`, `get_job`, `cancel_job`, `resume_job`,
`read_log`, `job_records`, `job_summary`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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
    attempts INTEGER NOT NULL DEFAULT 0,
    cwd TEXT
)
"""
_COLUMNS_ADDED = {"cwd": "TEXT"}  # columns newer than the first table: added to an older jobs.db when it is opened
_SQLITE_INT = (-(2**63), 2**63 - 1)
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_LOCK_WAIT_S = 2.0  # a worker waits this long for its job's lock (a resume's probe holds it for microseconds)
_HELD: list = []  # lock files this process holds: closed in forked children, so a lock dies with this process
RESUME_GRACE_S = 15.0  # how long a resume waits for the previous worker (already finished) to exit
_CHILDREN: dict[int, subprocess.Popen] = {}  # processes started by this process, reaped when the table is read


def home() -> Path:
    """The workbench home folder: $RLT_WORKBENCH_HOME, else ~/.rlt-workbench."""
    return Path(os.environ.get("RLT_WORKBENCH_HOME") or Path.home() / ".rlt-workbench").expanduser().resolve()


def job_dir(job_id: int) -> Path:
    return home() / "jobs" / str(int(job_id))


def _db_error(exc: sqlite3.Error) -> WorkbenchError:
    """A WorkbenchError for an SQLite failure: a damaged file says how to get going again."""
    path = home() / "jobs.db"
    if isinstance(exc, sqlite3.OperationalError):  # locked, read-only, disk full...
        return WorkbenchError(f"the job table {path} could not be used ({exc}); check the folder is writable and "
                              "has space, or set RLT_WORKBENCH_HOME to another folder")
    return WorkbenchError(f"the job table {path} is damaged ({exc}); move it aside (e.g. `mv {path} {path}.bad`) "
                          "and a new, empty one is made (the jobs listed in it are forgotten; their folders under "
                          f"{home() / 'jobs'} stay)")


def _connect() -> sqlite3.Connection:
    root = home()
    try:
        root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(root / "jobs.db", timeout=30, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise WorkbenchError(f"cannot open the job table in {root} ({exc}); set RLT_WORKBENCH_HOME to a writable folder") from None
    try:
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA busy_timeout=30000")
        con.execute(_SCHEMA)
        have = {r["name"] for r in con.execute("PRAGMA table_info(jobs)")}
        for name, decl in _COLUMNS_ADDED.items():
            if name not in have:
                try:
                    con.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
                except sqlite3.OperationalError as exc:  # another process added it a moment ago
                    if "duplicate column" not in str(exc):
                        raise
    except sqlite3.Error as exc:
        con.close()
        raise _db_error(exc) from None
    return con


@contextlib.contextmanager
def _db():
    """A connection to the job table; SQLite errors come out as WorkbenchError (one line, what to do)."""
    con = _connect()
    try:
        yield con
    except sqlite3.Error as exc:
        raise _db_error(exc) from None
    finally:
        con.close()


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
    cwd: str | None = None  # the folder it was submitted from (its worker runs there); None for older jobs

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


def _close_held_locks() -> None:
    """In a child forked by a job (no exec), drop the inherited lock files: the locks die with the worker alone."""
    for fh in _HELD:
        with contextlib.suppress(OSError):
            fh.close()
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_locks)


def _lock_path(job_id: int) -> Path:
    return job_dir(job_id) / "worker.lock"


def _take_job_lock(job_id: int, wait_s: float = _LOCK_WAIT_S):
    """Hold this job's worker lock (the open file; kept until this process exits), or None if another holds it."""
    import fcntl

    path = _lock_path(job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    end = time.time() + wait_s
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.time() >= end:
                fh.close()
                return None
            time.sleep(0.05)
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    _HELD.append(fh)
    return fh


def _job_lock_holder(job_id: int) -> int | None:
    """The pid of the live worker holding this job (-1 when it cannot be read), or None when no worker holds it."""
    import fcntl

    try:
        fh = open(_lock_path(job_id))
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
        return None


def _spawn(con: sqlite3.Connection, job_id: int) -> None:
    """Start the job's worker in the folder the job was submitted from; marks the job failed if it cannot start."""
    try:
        _start_worker(con, job_id)
    except OSError as exc:
        now = time.time()
        con.execute("UPDATE jobs SET state='failed', error=?, finished_at=?, updated_at=?, message='failed' "
                    "WHERE id=? AND state='queued' AND pid IS NULL", (f"could not start its process: {exc}", now, now, job_id))
        raise WorkbenchError(f"job {job_id}: could not start its process ({exc})") from None


def _start_worker(con: sqlite3.Connection, job_id: int) -> None:
    d = job_dir(job_id)
    d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["RLT_WORKBENCH_HOME"] = str(home())
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads slow shared CPUs down
    root = str(Path(__file__).resolve().parents[2])  # so `-m workbench...` works from a clone that is not installed
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    row = con.execute("SELECT cwd FROM jobs WHERE id=?", (job_id,)).fetchone()
    cwd = row["cwd"] if row is not None and row["cwd"] and os.path.isdir(row["cwd"]) else str(home())
    with open(d / "log.txt", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "workbench.eval.jobs", "run", str(job_id)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
    _CHILDREN[proc.pid] = proc
    con.execute("UPDATE jobs SET pid=?, pgid=?, updated_at=? WHERE id=? AND (pid IS NULL OR pid=?)",
                (proc.pid, proc.pid, time.time(), job_id, proc.pid))


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


def _absolute(value: str, base: Path | None, what: str) -> str:
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    if base is None:
        raise WorkbenchError(f"{what} {value!r} is relative and the current folder no longer exists; give an absolute path")
    return os.path.abspath(base / p)


def _absolute_eval_args(args: dict, base: Path | None) -> dict:
    """An evaluation's path arguments made absolute against `base` (the folder it is submitted from).

    data: a path unless it is shaped like a hub id (org/name) and no such file or folder is here; output_dir: always
    a path; model: made absolute only when it names an existing local folder (not an alias, not a SkyThought model
    id, whose system prompt is chosen by that name).
    """
    from .presets import SKYTHOUGHT_SYSTEM_PROMPTS

    args = dict(args)
    data = args.get("data")
    if data:
        local = base is not None and (base / Path(str(data)).expanduser()).exists()
        if Path(str(data)).expanduser().is_absolute() or local or not _HUB_ID.fullmatch(str(data)):
            args["data"] = _absolute(str(data), base, "--data")
    if args.get("output_dir"):
        args["output_dir"] = _absolute(str(args["output_dir"]), base, "--output")
    model = args.get("model")
    if model and base is not None and not Path(str(model)).expanduser().is_absolute():
        from ..models import ALIASES

        if model not in ALIASES and model not in SKYTHOUGHT_SYSTEM_PROMPTS and (base / str(model)).exists():
            args["model"] = _absolute(str(model), base, "--model")
    return args


def _relative_paths_of_old_job(job: JobInfo) -> list[str]:
    """For a job recorded without its folder (before paths were stored absolute): path arguments that are relative,
    so a resume from another folder could read another file."""
    if job.cwd or job.kind != "eval":
        return []
    a, bad = job.args, []
    data = a.get("data")
    if data and not Path(str(data)).expanduser().is_absolute() and (
            not _HUB_ID.fullmatch(str(data)) or Path(str(data)).expanduser().exists()):
        bad.append(f"--data {data!r}")
    out = a.get("output_dir")
    if out and not Path(str(out)).expanduser().is_absolute():
        bad.append(f"--output {out!r}")
    model = a.get("model")
    if model and not Path(str(model)).expanduser().is_absolute() and Path(str(model)).exists():
        from ..models import ALIASES

        if model not in ALIASES:  # a folder here of that name: was it the one meant?
            bad.append(f"--model {model!r}")
    return bad


def submit(kind: str, args: dict, title: str = "") -> JobInfo:
    """Record a job as queued, then start its process. Returns the job (state queued or running).

    The current folder is recorded with it (its worker runs there) and an evaluation's paths are stored absolute.
    """
    if kind not in JOB_KINDS:
        raise WorkbenchError(f"unknown job kind {kind!r}; use one of {', '.join(JOB_KINDS)}")
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # the folder was deleted under us
        cwd = None
    if kind == "eval":
        args = _absolute_eval_args(args, Path(cwd) if cwd else None)
    with _db() as con:
        now = time.time()
        cur = con.execute("INSERT INTO jobs (kind, title, args, state, created_at, updated_at, message, cwd) "
                          "VALUES (?, ?, ?, 'queued', ?, ?, 'queued', ?)", (kind, title, json.dumps(args), now, now, cwd))
        job_id = int(cur.lastrowid)
        if kind == "eval":
            args = {**args, "output_dir": args.get("output_dir") or str(job_dir(job_id) / "eval")}
            con.execute("UPDATE jobs SET args=?, output_dir=? WHERE id=?", (json.dumps(args), args["output_dir"], job_id))
        _spawn(con, job_id)
        return _get(con, job_id)


def submit_eval(benchmark: str, model: str = "smollm2-135m", preset: str | None = None, limit: int | None = None,
                output_dir: str | None = None, shards: dict | None = None, **options) -> JobInfo:
    """Submit an evaluation job (the arguments of `runner.EvalConfig`; `shards`: those of `shards.ShardConfig`, for a
    sharded run); checks them before recording the job."""
    from .runner import EvalConfig, resolve
    from .shards import ShardConfig

    shard_cfg = ShardConfig(**shards) if shards else None  # raises WorkbenchError for bad shard settings
    config = EvalConfig(benchmark=benchmark, model=model, preset=preset, limit=limit, output_dir=output_dir, **options)
    bench, p, _ = resolve(config)  # raises WorkbenchError for an unknown benchmark, preset or bad setting
    if config.data:
        from ..data import is_hub_id

        if not Path(config.data).expanduser().exists() and not is_hub_id(config.data):
            raise WorkbenchError(f"--data {config.data!r}: no such file or folder (in {Path.cwd()}), and not a hub id "
                                 "(org/name)")
    if output_dir:
        config.output_dir = str(Path(output_dir).expanduser().resolve())
    title = f"{bench.title} · {model} · {p.name}" + (f" · limit {limit}" if limit else "")
    args = config.to_dict()
    if shard_cfg is not None and (shard_cfg.shards > 1 or shard_cfg.executor != "local"):
        if shard_cfg.slurm_config:
            shard_cfg.slurm_config = str(Path(shard_cfg.slurm_config).expanduser().resolve())
        args["shards"] = asdict(shard_cfg)
        title += f" · {shard_cfg.shards} shards ({shard_cfg.executor})"
    return submit("eval", args, title)


def _get(con: sqlite3.Connection, job_id: int) -> JobInfo:
    try:
        job_id = int(job_id)
    except (TypeError, ValueError):
        raise WorkbenchError(f"no job {job_id!r}: a job id is a whole number; `workbench jobs list` shows the jobs") from None
    row = None
    if _SQLITE_INT[0] <= job_id <= _SQLITE_INT[1]:  # a bigger number is no job (SQLite cannot even bind it)
        row = con.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
    if row is None:
        raise WorkbenchError(f"no job {job_id}; `workbench jobs list` shows the jobs")
    return _info(row)


def get_job(job_id: int) -> JobInfo:
    """One job, with its state brought up to date."""
    with _db() as con:
        _reconcile(con)
        return _get(con, job_id)


def list_jobs(limit: int = 200, states: tuple[str, ...] | None = None) -> list[JobInfo]:
    """The newest jobs first, with states brought up to date (a vanished process is marked failed)."""
    with _db() as con:
        _reconcile(con)
        q, params = "SELECT * FROM jobs", []
        if states:
            q += f" WHERE state IN ({','.join('?' * len(states))})"
            params = list(states)
        rows = con.execute(q + " ORDER BY id DESC LIMIT ?", (*params, max(0, min(int(limit), _SQLITE_INT[1])))).fetchall()
        return [_info(r) for r in rows]


def cancel_job(job_id: int, grace_s: float = 5.0) -> JobInfo:
    """Cancel a queued or running job: mark it cancelled, then kill its process group (TERM, then KILL)."""
    with _db() as con:
        _reconcile(con)
        job = _get(con, job_id)
        if job.state == "cancelled":
            return job
        now = time.time()
        cur = con.execute("UPDATE jobs SET state='cancelled', finished_at=?, updated_at=?, message='cancelled' "
                          "WHERE id=? AND state IN ('queued','running')", (now, now, job.id))
        if cur.rowcount != 1:  # it ended (or was cancelled) between the read and the change
            job = _get(con, job.id)
            if job.state == "cancelled":
                return job
            raise WorkbenchError(f"job {job.id} is {job.state}; only queued or running jobs can be cancelled")
        row = con.execute("SELECT pid, pgid FROM jobs WHERE id=?", (job.id,)).fetchone()
        if row["pgid"] and _proc_alive(row["pid"], job.id):
            _kill_group(row["pgid"], row["pid"], job.id, grace_s)
        return _get(con, job.id)


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
    """Start a failed or cancelled job again (an evaluation skips the samples it already finished).

    Of several resumes at the same moment exactly one is accepted (the change of state checks the state it starts
    from); a resume is refused while the job's previous worker still holds it.
    """
    with _db() as con:
        _reconcile(con)
        job = _get(con, job_id)
        job_id = job.id
        if job.state in ACTIVE:
            raise WorkbenchError(f"job {job_id} is {job.state}; it is not finished, so there is nothing to resume")
        if job.state == "done":
            raise WorkbenchError(f"job {job_id} is done; submit a new job to run it again")
        relative = _relative_paths_of_old_job(job)
        if relative:
            raise WorkbenchError(f"job {job_id} was recorded with the relative path {' and '.join(relative)} and "
                                 "without the folder it was submitted from, so a resume could read other files; "
                                 "submit it again with absolute paths (new jobs store them so)")
        holder = _job_lock_holder(job_id)
        deadline = time.time() + RESUME_GRACE_S  # a worker that recorded its final state is exiting: a moment
        while holder is not None and time.time() < deadline:
            time.sleep(0.1)
            holder = _job_lock_holder(job_id)
        if holder is not None:
            who = f"pid {holder}" if holder > 0 else "a process"
            raise WorkbenchError(f"job {job_id}'s previous worker ({who}) has not exited yet; resume it again once "
                                 "that process has ended")
        now = time.time()
        cur = con.execute("UPDATE jobs SET state='queued', pid=NULL, pgid=NULL, error=NULL, finished_at=NULL, "
                          "updated_at=?, message='queued (resumed)' WHERE id=? AND state IN ('failed','cancelled')",
                          (now, job_id))
        if cur.rowcount != 1:
            state = _get(con, job_id).state
            raise WorkbenchError(f"job {job_id} is {state} now: another resume (or a cancel) changed it first")
        _spawn(con, job_id)
        return _get(con, job_id)


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
    shards = args.pop("shards", None)
    if shards:  # a sharded run: its shards' states are in the run folder's shards.json and its summary
        from .shards import ShardConfig, run_sharded

        summary = run_sharded(EvalConfig(**args), ShardConfig(**shards), progress=ctx.progress,
                              should_stop=ctx.should_stop, log=ctx.log)
    else:
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
                    _HELD.append(fh)
                    return fh  # held until this process exits, however it exits
                except OSError:
                    fh.close()
        time.sleep(0.5)


def run_job(job_id: int) -> int:
    """The body of `python -m workbench.eval.jobs run ID`: wait for a slot, run the job, record how it ended."""
    import importlib

    con = _connect()
    job = _get(con, job_id)
    me = os.getpid()
    if _take_job_lock(job_id) is None:  # another worker runs (or waits to run) this job: never two at once
        holder = _job_lock_holder(job_id)
        msg = (f"job {job_id} is held by another worker (pid {holder if holder and holder > 0 else '?'}); "
               f"this one (pid {me}) exits without running it")
        print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}", flush=True)
        now = time.time()  # if the table names this process as the job's worker, say why it did not run
        con.execute("UPDATE jobs SET state='failed', error=?, finished_at=?, updated_at=?, message='failed' "
                    "WHERE id=? AND state='queued' AND pid=?", (msg, now, now, job_id, me))
        return 1
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] job {job_id} ({job.kind}) pid {me}: waiting for a slot", flush=True)
    slot = _acquire_slot(con, job_id)
    if slot is None:
        print(f"job {job_id} is no longer queued; exiting", flush=True)
        return 0
    now = time.time()
    pgid = me if os.getpgrp() == me else None  # started by `submit`/`resume`: leads its own process group
    cur = con.execute("UPDATE jobs SET state='running', pid=?, pgid=COALESCE(pgid, ?), started_at=?, updated_at=?, "
                      "attempts=attempts+1, message='running' WHERE id=? AND state='queued' AND (pid IS NULL OR pid=?)",
                      (me, pgid, now, now, job_id, me))
    if cur.rowcount == 0:
        print(f"job {job_id} is no longer queued for this worker; exiting", flush=True)
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
