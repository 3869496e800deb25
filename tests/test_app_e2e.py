"""End to end: start the app (`python app.py`), drive it in a real headless Chromium, look at both tabs.

Needs Debian's `chromium` at /usr/bin/chromium (`make chromium` installs it) and Playwright for Python; skips
with a message where they are missing. Screenshots go to outputs/screenshots/ (override: WB_SCREENSHOT_DIR).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL_TIMEOUT_MS = 240_000  # scoring on a busy 2-core CPU

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            text = log.read_text()
            if "running at" in text:
                break
            if proc.poll() is not None:
                pytest.fail(f"the app exited with {proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.5)
        else:
            pytest.fail(f"the app did not start in 180 s:\n{log.read_text()[-3000:]}")
        url = re.search(r"running at (\S+)", log.read_text()).group(1)
        assert url.startswith("http://127.0.0.1:"), url  # binds localhost by default
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        print(log.read_text()[-2000:])


def _shots() -> Path:
    d = Path(os.environ.get("WB_SCREENSHOT_DIR", ROOT / "outputs" / "screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_compare_and_heatmap_in_chromium(browser, app_url, tmp_path):
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(app_url)
    page.wait_for_selector('#wb-table [data-testid="cell-0-0"]', timeout=60_000)
    assert "Compare" in page.get_by_role("tab", name=re.compile("Compare")).inner_text()
    assert "Heatmap" in page.get_by_role("tab", name=re.compile("Heatmap")).inner_text()
    n_rows = page.locator('#wb-table [data-col="0"][data-testid^="cell-"]').count()
    assert n_rows >= 5

    # search narrows the table, then a click on a row opens the problem
    page.fill("#wb-search textarea, #wb-search input", "3(x - 4)")
    page.wait_for_function(
        "() => document.querySelectorAll('#wb-table [data-col=\"0\"][data-testid^=\"cell-\"]').length === 1",
        timeout=30_000)
    page.click('#wb-table [data-testid="cell-0-0"]')
    page.wait_for_function("() => document.querySelector('#wb-col-problem').innerText.includes('algebra-01')",
                           timeout=30_000)

    # the columns: problem (question + solution), RLT explanation, R1 trace, with aligned steps and LaTeX
    problem = page.inner_text("#wb-col-problem")
    assert "Question" in problem and "Reference solution" in problem
    assert "RLT explanation" in page.inner_text("#wb-col-0")
    assert "R1 trace" in page.inner_text("#wb-col-1")
    assert page.locator("#wb-col-0 .wb-step").count() >= 3
    assert page.locator('#wb-col-1 .wb-step:not([data-group=""])').count() >= 1  # a step aligned across columns
    assert page.locator("#wb-col-problem .katex").count() >= 1  # $...$ rendered
    page.screenshot(path=str(_shots() / "compare.png"), full_page=True)

    # a problem file with no usable row: a visible error naming the file, the line and the column; the app keeps
    # running on its data (a file with some good rows loads them and names the bad ones: test_app_security.py)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('\n{"question": "q2", "solution": \n{"question": 3, "solution": "s"}\n')
    page.get_by_text("Data and models").click()
    page.set_input_files("#wb-data-file input[type=file]", str(bad))
    # the upload is done when the file component names the file (a fixed wait is too short on a busy machine)
    page.wait_for_function("() => document.querySelector('#wb-data-file').innerText.includes('bad.jsonl')",
                           timeout=30_000)
    page.click("#wb-load")
    page.wait_for_selector("#wb-status .wb-error", timeout=30_000)
    err = page.inner_text("#wb-status .wb-error")
    assert "bad.jsonl" in err and "line 2, column 32" in err and "line 3, column 'question'" in err, err
    assert "algebra-01" in page.inner_text("#wb-col-problem")  # still showing the old data

    # heatmap: opening the tab scores the RLT explanation of the selected problem
    page.get_by_role("tab", name=re.compile("Heatmap")).click()
    page.wait_for_selector("#wb-hm-expl .hm-body span", timeout=MODEL_TIMEOUT_MS)
    spans = page.locator("#wb-hm-expl .hm-body span")
    assert spans.count() > 100
    colours = page.evaluate(
        "() => [...document.querySelectorAll('#wb-hm-expl .hm-body span')].map(s => getComputedStyle(s).backgroundColor)")
    assert len(set(colours)) >= 5, set(colours)  # coloured by value
    assert not any(c in ("rgba(0, 0, 0, 0)", "transparent") for c in colours)
    tip = spans.nth(5).get_attribute("title")
    assert "KL" in tip and "teacher log-prob" in tip and "student log-prob" in tip
    assert page.locator("#wb-hm-expl .hm-legend").inner_text().count("nats") >= 1
    assert page.locator("#wb-hm-sol .hm-body span").count() > 5
    assert "reward" in page.inner_text("#wb-hm-breakdown")
    page.screenshot(path=str(_shots() / "heatmap_kl.png"), full_page=True)

    # worst tokens jump to the token
    link = page.locator("#wb-hm-expl .hm-worst a").first
    target = link.get_attribute("href")[1:]
    link.click()
    page.wait_for_selector(f'[id="{target}"].hm-flash', timeout=5_000)

    # edit the explanation (with HTML in it), re-score, see what changed; tokens are shown, never interpreted
    box = page.locator("#wb-hm-text textarea")
    box.fill(box.input_value() + "\n\nCheck: <b>bold</b> &amp; <script>window.__wbxss = 1</script>")
    page.click("#wb-hm-score")
    page.wait_for_function("() => document.querySelector('#wb-hm-breakdown').innerText.includes('previous')",
                           timeout=MODEL_TIMEOUT_MS)
    body_text = page.inner_text("#wb-hm-expl .hm-body")
    assert "<script>" in body_text and "&amp;" in body_text and "<b>" in body_text
    assert page.locator("#wb-hm-expl .hm-body b, #wb-hm-expl .hm-body script").count() == 0
    assert page.evaluate("() => window.__wbxss") is None
    assert page.locator("#wb-hm-expl .hm-body span.c").count() > 5  # the edited tokens are marked

    # switch the metric: re-rendered without re-scoring
    page.get_by_label("student log-prob").first.check()
    page.wait_for_selector('#wb-hm-expl .rlt-heatmap[data-metric="student_logprob"]', timeout=30_000)
    page.screenshot(path=str(_shots() / "heatmap_edited.png"), full_page=True)

    # export the heatmap as a standalone HTML file and open it on its own
    page.click("#wb-hm-export")
    link = page.locator("#wb-hm-file a[download]").first
    link.wait_for(timeout=30_000)
    with page.expect_download() as dl:
        link.click()
    saved = tmp_path / "heatmap.html"
    dl.value.save_as(saved)
    doc = browser.new_page(viewport={"width": 1200, "height": 900})
    doc.goto(saved.as_uri())
    assert doc.locator(".hm-body span").count() > 100 and "Reference solution" in doc.inner_text("body")
    doc.screenshot(path=str(_shots() / "heatmap_export.png"))
    doc.close()

    # export the problem table (CSV + JSONL)
    page.get_by_role("tab", name=re.compile("Compare")).click()
    page.get_by_text("Export", exact=True).click()
    page.click("#wb-export")
    page.wait_for_function("() => document.querySelectorAll('#wb-export-files a[download]').length >= 3", timeout=60_000)
    names = page.inner_text("#wb-export-files")
    assert ".csv" in names and ".jsonl" in names
    assert not errors, errors
