"""The reader's path: a chapter source opened as a notebook in JupyterLab, its first cells run.

JupyterLab (installed by `make lab-setup`, part of `make test`) serves this checkout on 127.0.0.1;
headless Chromium (Playwright, as the site check) opens notebooks/mime.md, which must render as a
notebook with its cells; the first code cells are run and must not raise; the file on disk must be
unchanged afterwards. The server is stopped at the end.
"""
from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fairbook.book import lab
from sitecheck import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parents[2]
CHAPTER = REPO / "notebooks" / "mime.md"
RUN_CODE_CELLS = 3  # the parameters, the imports and the first computation
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    if not (Path(sys.executable).parent / "jupyter-lab").exists():
        pytest.fail("JupyterLab is not installed: run `make lab-setup` (part of `make test`)")
    port = _free_port()
    env = {**lab.environment(REPO), "FAIRBOOK_RUN_DIR": str(tmp_path / "run"), "FAIRBOOK_PROGRESS": "0",
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    lab.write_settings()
    # every cell in the DOM (JupyterLab 4 renders only the visible cells by default), for counting
    tracker = tmp_path / "user-settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"windowingMode": "none"}')
    proc = subprocess.Popen(lab.command(REPO, port=port, open_browser=False, token=""), env=env,
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "lab.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
            time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_first_cells(url: str, rel: str, n_code: int, run: int) -> list[str]:
    """Open ``rel`` in JupyterLab, wait for its ``n_code`` code cells, run the first ``run`` code
    cells (Shift+Enter from the top) and return the texts of error outputs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/{rel}", timeout=90_000)
        page.wait_for_function("n => document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-CodeCell')"
                               ".length >= n", arg=n_code, timeout=90_000)
        assert page.locator(".jp-NotebookPanel .jp-Notebook .jp-CodeCell").count() == n_code
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
                               timeout=90_000, state="attached")
        page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.click()
        page.keyboard.press("Escape")  # command mode
        cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
        runs = 0
        for i in range(cells.count()):
            page.keyboard.press("Shift+Enter")  # run the selected cell, select the next
            if "jp-CodeCell" in (cells.nth(i).get_attribute("class") or ""):
                runs += 1
                if runs == run:
                    break
        prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt")
        deadline = time.time() + 120
        while sum(bool(re.search(r"\[\d+\]", prompts.nth(i).inner_text())) for i in range(run)) < run:
            assert time.time() < deadline, "the first cells did not finish"
            time.sleep(0.5)
        errors = page.locator(".jp-NotebookPanel .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        texts = [errors.nth(i).inner_text() for i in range(errors.count())]
        browser.close()
    return [t for t in texts if "Traceback" in t or "Error" in t]


def test_a_chapter_opens_as_a_notebook_and_its_first_cells_run(server):
    before = hashlib.sha256(CHAPTER.read_bytes()).hexdigest()
    n_code = len(re.findall(r"^```\{code-cell\}", CHAPTER.read_text(), flags=re.M))
    assert run_first_cells(server, "notebooks/mime.md", n_code, RUN_CODE_CELLS) == []
    assert hashlib.sha256(CHAPTER.read_bytes()).hexdigest() == before, "opening and running changed the file"
    assert not (CHAPTER.parent / "fairbook-output").exists()


def test_the_check_sees_a_cell_that_raises(server):
    """The negative control of the test above: a text notebook whose second cell raises."""
    folder = REPO / "runs" / f"lab-test-{time.time_ns()}"  # not hidden: the server hides dot-folders
    folder.mkdir(parents=True)
    try:
        (folder / "bad.md").write_text(CHAPTER.read_text().split("---", 2)[0] + "---" + CHAPTER.read_text().split("---", 2)[1]
                                       + "---\n\n# t\n\n```{code-cell} ipython3\nx = 1\n```\n\n"
                                       "```{code-cell} ipython3\nraise ValueError('boom')\n```\n")
        for attempt in range(3):  # on a loaded machine a key can land before the notebook has focus
            try:
                errors = run_first_cells(server, f"runs/{folder.name}/bad.md", 2, 2)
                break
            except AssertionError as err:
                if "did not finish" not in str(err) or attempt == 2:
                    raise
        assert len(errors) == 1 and "boom" in errors[0]
    finally:
        import shutil

        shutil.rmtree(folder)
