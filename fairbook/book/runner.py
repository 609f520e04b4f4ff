"""Execute a chapter: jupytext source -> notebook -> papermill, into one run directory.

A run directory ``runs/<chapter>/<profile>-<key>/`` holds the executed notebook, ``results/``
(tidy CSV/JSON), ``figures/`` (PNG/SVG) and ``provenance.json``. ``key`` hashes everything that
decides the result (chapter source, the source of the core and of the chapter's own paper subpackage,
parameters, data fingerprint), so an identical request reuses the finished run; editing the harness
(this module, the site, the profiles) or another paper does not invalidate it. Runs are written into a temporary directory and renamed into place
only on success; a failed run is kept as ``FAILED-...`` and never replaces a good one.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ParameterError
from ..io import swap_into_place
from ..paths import papers, project_root, runs_dir, source_fingerprint
from . import chapters

PROVENANCE = "provenance.json"
#: Distributions whose versions are recorded in provenance when installed.
RECORDED_PACKAGES = ("numpy", "scipy", "pandas", "matplotlib", "seaborn", "scikit-learn", "torch",
                     "torchvision", "diffusers", "fairlearn", "imbalanced-learn", "papermill",
                     "jupytext", "nbclient", "ipykernel", "jupyter-book")


#: string parameters that name files or folders (made absolute before the kernel starts)
PATH_PARAMETERS = ("data_root", "sd_images", "sd_plain_images", "weights")


class RunFailed(RuntimeError):
    """A cell raised; ``path`` is the kept ``FAILED-...`` directory."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Run:
    chapter: str
    profile: str
    path: Path
    reused: bool

    @property
    def notebook(self) -> Path:
        return self.path / f"{self.chapter}.ipynb"

    @property
    def provenance(self) -> dict[str, Any]:
        return json.loads((self.path / PROVENANCE).read_text())


def package_fingerprint(chapter: str) -> str:
    """Hash of the source a chapter's results depend on: the core and the chapter's own paper
    subpackage (:func:`fairbook.paths.source_fingerprint`), not the harness or the other papers."""
    return source_fingerprint(chapter if chapter in papers() else None)


def data_fingerprint(chapter: str, values: dict[str, Any]) -> dict[str, str]:
    """Fingerprints of the datasets a run reads (its ``datasets`` and ``data_root`` parameters).

    A dataset that cannot be found stops the request here, before anything runs.
    """
    from ..data import file_fingerprint, fingerprints_for

    try:
        fps = fingerprints_for(chapter, values)
    except (FileNotFoundError, ValueError) as e:
        raise ParameterError(f"chapter '{chapter}': {e}") from None
    # a chapter's hooks may name further input files (e.g. HBR's EDM pool) by input_files(values)
    hooks = chapters.hooks(chapter)
    for name, path in (hooks.input_files(values) if hooks else {}).items():
        fps[name] = file_fingerprint([path])
    return fps


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for dist in RECORDED_PACKAGES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def request_key(ch: chapters.Chapter, profile: str, values: dict[str, Any],
                data_fp: dict[str, str]) -> str:
    """Hash of everything that decides a run's result; an identical key reuses the finished run."""
    blob = json.dumps({"chapter": ch.source.read_text(), "package": package_fingerprint(ch.name),
                       "versions": package_versions(), "profile": profile, "parameters": values,
                       "data": data_fp}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare(chapter: str, profile: str, overrides: dict[str, str] | None = None):
    """Validate the whole request; nothing is created. Returns (chapter, values, data_fp, key).

    Besides each parameter's own check, the chapter's hooks (:func:`fairbook.book.chapters.hooks`)
    check conditions that tie parameters together (``check_parameters(values)``, raising ParameterError).
    """
    ch = chapters.get(chapter)
    values = ch.values(profile, overrides)
    for key in PATH_PARAMETERS:  # the kernel runs elsewhere: a relative path must not change meaning
        if values.get(key):
            values[key] = str(Path(values[key]).expanduser().resolve())
    check_executor(values)
    hooks = chapters.hooks(chapter)
    if hooks is not None:
        hooks.check_parameters(values)
    data_fp = data_fingerprint(chapter, values)
    return ch, values, data_fp, request_key(ch, profile, values, data_fp)


def check_executor(values: dict[str, Any]) -> None:
    """The grid parameters every chapter shares (``executor``, ``workers``, ``ray_address``;
    :class:`fairbook.grid.Grid`), checked together; ``ray`` must be importable for ``executor=ray``."""
    if "executor" not in values:
        return
    from ..grid import Grid

    try:
        Grid(values["executor"], values.get("workers", 1), values.get("ray_address", ""))
    except ValueError as err:
        raise ParameterError(f"invalid grid parameters: {err}") from None
    if values["executor"] == "ray" and importlib.util.find_spec("ray") is None:
        raise ParameterError("executor='ray' needs the ray package (pip install 'ray>=2.9')")


def remove_stale(base: Path) -> list[Path]:
    """Remove ``.tmp-*-<pid>`` directories under ``base`` whose process is gone (a run killed by
    SIGTERM/SIGKILL leaves its temporary directory behind); never one whose process still runs."""
    gone = []
    for d in base.glob(".tmp-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if d.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def run(chapter: str, profile: str = "default", overrides: dict[str, str] | None = None,
        force: bool = False, log=print) -> Run:
    """Execute ``chapter`` with ``profile`` values and ``overrides``; reuse an identical finished run.

    Raises ParameterError before anything is created when the request is invalid, and RunFailed
    (after keeping the partial notebook as ``FAILED-...``) when a cell raises.
    """
    ch, values, data_fp, key = prepare(chapter, profile, overrides)
    base = runs_dir() / chapter
    final = base / f"{profile}-{key}"
    if (final / PROVENANCE).exists() and not force:
        log(f"reusing finished run {final}")
        return Run(chapter, profile, final, True)

    base.mkdir(parents=True, exist_ok=True)
    for d in remove_stale(base):
        log(f"removed {d.name}, left by a run whose process is gone")
    tmp = base / f".tmp-{profile}-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "results").mkdir(parents=True)
    (tmp / "figures").mkdir()
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    log(f"running {chapter} ({profile}) ...")
    try:
        _execute(ch, values, tmp, data_fp)
    except Exception as err:  # noqa: BLE001 — every failure keeps the partial run
        failed = base / f"FAILED-{profile}-{key}-{started:%Y%m%dT%H%M%S}-{os.getpid()}"
        os.replace(tmp, failed)
        raise RunFailed(f"chapter '{chapter}' failed; partial run kept in {failed}\n{_describe(err)}",
                        failed) from None

    prov = provenance(ch, profile, values, data_fp, key, started, time.perf_counter() - t0, tmp)
    (tmp / PROVENANCE).write_text(json.dumps(prov, indent=2, default=str))
    if _install(tmp, final, force):
        log(f"run written to {final}")
    else:
        log(f"an identical run finished meanwhile; keeping {final}")
    return Run(chapter, profile, final, False)


def _execute(ch: chapters.Chapter, values: dict[str, Any], workdir: Path, data_fp: dict | None = None) -> None:
    import jupytext
    import papermill
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = jupytext.read(ch.source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)
    source = workdir / ".source.ipynb"
    jupytext.write(nb, source)
    nb = load_notebook_node(str(source))  # adds the metadata papermill expects
    source.unlink()
    # Inject the parameters ourselves: papermill's own inference cannot read annotated lines.
    nb = parameterize_notebook(nb, values, kernel_name="python3", language="python")
    # The kernel inherits this process's environment: tell it where to write, keep progress bars out
    # of published notebooks, and put first on the kernel search path a kernel spec that runs this
    # very interpreter (a user-level "python3" spec may point at another Python).
    jupyter_path = os.pathsep.join(filter(None, [str(_kernel_dir()), os.environ.get("JUPYTER_PATH")]))
    # the data fingerprint goes into the keys of the grid's cached tasks (fairbook.grid.task_key)
    with _environ(FAIRBOOK_RUN_DIR=str(workdir), JUPYTER_PATH=jupyter_path,
                  FAIRBOOK_DATA_FINGERPRINT=json.dumps(data_fp or {}, sort_keys=True),
                  FAIRBOOK_PROGRESS=os.environ.get("FAIRBOOK_PROGRESS", "0")):
        papermill.execute_notebook(nb, str(workdir / f"{ch.name}.ipynb"), parameters=None,
                                   kernel_name=KERNEL, cwd=str(workdir), progress_bar=False,
                                   log_output=False, report_mode=False,
                                   kernel_manager_class=_ipc_kernel_manager())


KERNEL = "fairbook-python3"


def _ipc_kernel_manager():
    """nbclient's kernel manager with the kernel's sockets on IPC (Unix sockets next to its
    connection file, readable by this user only) instead of TCP on localhost, which ipykernel warns
    about ("Kernel is running over TCP without encryption")."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

    return IPCKernelManager


def _kernel_dir() -> Path:
    """A Jupyter data dir holding the kernel spec ``fairbook-python3`` for ``sys.executable``."""
    root = runs_dir() / ".jupyter"
    spec = root / "kernels" / KERNEL / "kernel.json"
    body = json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                       "display_name": "Python 3 (fairbook)", "language": "python"}, indent=1)
    if not spec.exists() or spec.read_text() != body:
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(body)
    return root


@contextlib.contextmanager
def _environ(**values: str):
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _install(tmp: Path, final: Path, force: bool) -> bool:
    """Move a finished run into place; returns False when an identical run got there first.

    A good run at ``final`` is replaced only when ``force`` is set, and is put back if the swap fails.
    """
    if final.exists() and not force:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    if final.exists():
        swap_into_place(tmp, final)
        return True
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / PROVENANCE).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent identical run won the race
        return False
    return True


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _describe(err: Exception) -> str:
    """The failing cell's source and error, ANSI colours removed."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        tb = _ANSI.sub("", "\n".join(err.traceback))
        return (f"cell {err.cell_index} raised {err.ename}: {err.evalue}\n--- cell source ---\n"
                f"{err.source}\n--- traceback ---\n{tb}")
    return f"{type(err).__name__}: {err}"


def git_commit() -> str:
    root = project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fairbook", "notebooks"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(ch: chapters.Chapter, profile: str, values: dict[str, Any], data_fp: dict[str, str],
               key: str, started: datetime, wall: float, workdir: Path) -> dict[str, Any]:
    versions = package_versions()
    versions.pop("python")
    info_file = workdir / "results" / "_runinfo.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    return {
        "chapter": ch.name, "title": ch.title, "profile": profile, "key": key,
        "parameters": values,
        "seeds": {k: v for k, v in values.items() if k == "seed" or k.endswith("_seed")},
        "fairbook_version": __version__, "git_commit": git_commit(),
        "python": sys.version.split()[0], "platform": platform.platform(),
        "packages": versions, "device": info.pop("device", "cpu"),
        "data": data_fp, "notebook_info": info,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall, 2),
        "results": sorted(p.name for p in (workdir / "results").iterdir() if p.name != "_runinfo.json"),
        "figures": sorted(p.name for p in (workdir / "figures").iterdir()),
    }
