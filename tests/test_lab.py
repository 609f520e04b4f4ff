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

from fairbook import lab
from sitecheck import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parents[1]
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


def test_a_chapter_opens_as_a_notebook_and_its_first_cells_run(server):
    from playwright.sync_api import sync_playwright

    before = hashlib.sha256(CHAPTER.read_bytes()).hexdigest()
    n_cells = len(re.findall(r"^```\{code-cell\}", CHAPTER.read_text(), flags=re.M))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server}/lab/tree/notebooks/mime.md", timeout=90_000)
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell", timeout=90_000)
        assert page.locator(".jp-NotebookPanel .jp-Notebook .jp-CodeCell").count() == n_cells
        assert page.locator(".jp-NotebookPanel .jp-Notebook .jp-MarkdownCell").count() > 5
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
                               timeout=90_000, state="attached")
        page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.click()
        page.keyboard.press("Escape")  # command mode
        runs = 0
        cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
        for i in range(cells.count()):
            page.keyboard.press("Shift+Enter")  # run the selected cell, select the next
            if "jp-CodeCell" in (cells.nth(i).get_attribute("class") or ""):
                runs += 1
                if runs == RUN_CODE_CELLS:
                    break
        prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt")
        deadline = time.time() + 180
        while sum(bool(re.search(r"\[\d+\]", prompts.nth(i).inner_text())) for i in range(RUN_CODE_CELLS)) < RUN_CODE_CELLS:
            assert time.time() < deadline, "the first cells did not finish"
            time.sleep(0.5)
        errors = page.locator(".jp-NotebookPanel .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        texts = [errors.nth(i).inner_text() for i in range(errors.count())]
        assert not [t for t in texts if "Traceback" in t or "Error" in t], texts
        browser.close()
    assert hashlib.sha256(CHAPTER.read_bytes()).hexdigest() == before, "opening and running changed the file"
    assert not (CHAPTER.parent / "fairbook-output").exists()
