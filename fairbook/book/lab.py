"""JupyterLab as the reader's notebook app: ``make lab`` (or ``fairbook lab``) opens the chapter
sources, jupytext MyST files, as notebooks.

The server runs from this checkout with jupytext's contents manager (``notebooks/<chapter>.md`` is
read and written as a text notebook, so outputs never go into ``notebooks/``) and jupyterlab-myst
for the MyST roles of the markdown cells. Settings (:data:`OVERRIDES`, written into the
environment's JupyterLab settings): Markdown files open as notebooks, and autosave is off, so
opening and running a chapter leaves its source unchanged until you save it. Results of an
interactive run go to ``runs/lab/`` (``FAIRBOOK_RUN_DIR``), never next to the notebook.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

#: JupyterLab settings written into ``<prefix>/share/jupyter/lab/settings/overrides.json``.
OVERRIDES = {"@jupyterlab/docmanager-extension:plugin": {
    "autosave": False,
    "defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}}}


def write_settings(prefix: str | os.PathLike = sys.prefix) -> Path:
    """Merge :data:`OVERRIDES` into the environment's JupyterLab ``overrides.json``."""
    path = Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    for plugin, values in OVERRIDES.items():
        current[plugin] = {**current.get(plugin, {}), **values}
    path.write_text(json.dumps(current, indent=1))
    return path


def command(root: Path, *, port: int | None = None, open_browser: bool = True, token: str | None = None) -> list[str]:
    """The ``jupyter lab`` command line serving ``root`` on 127.0.0.1, opening ``notebooks/``."""
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", f"--ServerApp.root_dir={root}",
           "--ServerApp.ip=127.0.0.1", "--LabApp.default_url=/lab/tree/notebooks"]
    if port is not None:
        cmd += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if not open_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI run as root
        cmd.append("--allow-root")
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    return cmd


def environment(root: Path) -> dict[str, str]:
    """The server's environment: interactive results under ``runs/lab/``."""
    return {**os.environ, "FAIRBOOK_RUN_DIR": os.environ.get("FAIRBOOK_RUN_DIR", str(root / "runs" / "lab"))}


def main(port: int | None = None, open_browser: bool = True) -> int:
    """Start JupyterLab on this checkout (installed by ``make lab``)."""
    from ..paths import project_root

    if not (Path(sys.executable).parent / "jupyter-lab").exists():
        print("JupyterLab is not installed in this environment: run `make lab` (it installs it first)",
              file=sys.stderr)
        return 2
    root = project_root()
    write_settings()
    cmd = command(root, port=port, open_browser=open_browser)
    os.execve(cmd[0], cmd, environment(root))
    return 0  # not reached
