"""Experiment grids: independent tasks with cached results, run in the kernel, in local worker
processes, on a Ray cluster or on any ``concurrent.futures``-style executor.

A task is ``fn(**shared, **kwargs)``: ``fn`` an importable function of the package (a fit and its
evaluation), ``shared`` what every task of the grid reads (datasets, settings; sent once per grid)
and ``kwargs`` the task's own parameters and seeds. It returns a small picklable result (metrics,
per-sample arrays), never a live model. Every result is cached under ``cache_dir()`` keyed by the
function's source, the package fingerprint, the torch thread count, the shared inputs' and the
task's fingerprints (:func:`task_key`): a rerun reuses finished tasks and a killed run resumes where
it stopped. Results come back in the order of the task list whatever the executor.

Every task runs with ``threads`` torch threads (``cores // workers`` by default) on every executor,
so ``local``, ``processes`` and ``ray`` give byte-identical results for the same ``workers``: the
thread count changes a matrix product's summation order, and it is part of the cache key.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import functools
import hashlib
import importlib
import inspect
import multiprocessing as mp
import os
import pickle
import signal
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .io import progress_enabled
from .paths import runs_dir, scope_of, source_fingerprint

EXECUTORS = ("local", "processes", "ray")


class TaskError(RuntimeError):
    """A task raised: carries its index, parameters and the worker's traceback."""


@dataclasses.dataclass(frozen=True)
class Grid:
    """How a chapter's grids run: ``executor`` (``local``, ``processes``, ``ray`` or an object with a
    ``concurrent.futures``-style ``submit``), ``workers`` (>= 1), ``ray_address`` (``ray`` only:
    ``auto``, ``ray://host:10001``; empty starts a local Ray instance) and ``threads`` per task
    (0: ``cores // workers``). ``gpus_per_task`` (Ray): None asks for one GPU per task when the
    cluster has GPUs, none otherwise. ``cache`` = False turns the task cache off."""

    executor: Any = "local"
    workers: int = 1
    ray_address: str = ""
    threads: int = 0
    gpus_per_task: float | None = None
    cache: bool = True

    def __post_init__(self):
        if isinstance(self.executor, str) and self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)} or an object with submit(), "
                             f"got {self.executor!r}")
        if not isinstance(self.executor, str) and not callable(getattr(self.executor, "submit", None)):
            raise ValueError(f"executor {self.executor!r} has no submit() method")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")
        if self.threads < 0 or (self.gpus_per_task or 0) < 0:
            raise ValueError(f"threads and gpus_per_task must be >= 0, got {self.threads}, {self.gpus_per_task}")
        if self.ray_address and self.executor != "ray":
            raise ValueError(f"ray_address={self.ray_address!r} needs executor='ray', got {self.executor!r}")

    @property
    def task_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)


def cache_dir() -> Path:
    """``$FAIRBOOK_TASKS``, else ``<runs>/.tasks`` (the runner's runs directory)."""
    return Path(os.environ.get("FAIRBOOK_TASKS") or runs_dir() / ".tasks")


def fingerprint(obj: Any) -> str:
    """A content hash of task inputs: arrays and tensors by dtype, shape and bytes; mappings,
    sequences and dataclasses element by element; anything else by its pickle."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        h.update(f"nd{obj.dtype}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (set, frozenset)):  # by content: a set's order changes with the hash seed
        h.update(b"set{")
        for v in sorted(obj, key=repr):
            _feed(h, v)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[".encode())
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(type(obj).__qualname__.encode())
        _feed(h, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r}".encode())
    else:
        h.update(pickle.dumps(obj, protocol=4))


def _importable(fn: Callable) -> None:
    mod = getattr(fn, "__module__", None)
    try:
        found = importlib.import_module(mod)
        for part in fn.__qualname__.split("."):
            found = getattr(found, part)
    except Exception:  # noqa: BLE001 - any failure means workers cannot import it
        found = None
    if found is not fn or mod == "__main__":
        raise ValueError(f"task function {getattr(fn, '__qualname__', fn)!r} must be a module-level function "
                         f"of an importable module (workers import it), not defined in a notebook")


def task_key(fn: Callable, shared_fp: str, kwargs: dict, threads: int) -> str:
    """Cache key of one task: the function's source, the core and the function's own paper subpackage
    (:func:`fairbook.paths.source_fingerprint`), threads, the run's data
    fingerprint (``$FAIRBOOK_DATA_FINGERPRINT``, set by the runner), shared and own inputs."""
    h = hashlib.sha256()
    for part in (f"{fn.__module__}.{fn.__qualname__}", inspect.getsource(fn), _source_fingerprint(scope_of(fn.__module__)),
                 str(threads), os.environ.get("FAIRBOOK_DATA_FINGERPRINT", ""), shared_fp, fingerprint(kwargs)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


@functools.cache
def _source_fingerprint(paper: str | None) -> str:
    """:func:`fairbook.paths.source_fingerprint`, once per process (the package does not change)."""
    return source_fingerprint(paper)


# --- what runs in a worker --------------------------------------------------------------------------------
_SHARED: dict[str, Any] = {}


def _load_shared(path: str) -> dict:
    if path not in _SHARED:
        _SHARED.clear()  # one grid's inputs at a time
        with open(path, "rb") as f:
            _SHARED[path] = pickle.load(f)
    return _SHARED[path]


def _call(fn: Callable, shared: Any, kwargs: dict, threads: int) -> tuple[bool, Any]:
    """Run one task with ``threads`` torch threads; ``(True, result)`` or ``(False, traceback)``."""
    if isinstance(shared, str):
        shared = _load_shared(shared)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return True, fn(**shared, **kwargs)
    except Exception:  # noqa: BLE001 - reported to the parent with the task's parameters; an interrupt is not
        return False, traceback.format_exc()
    finally:
        torch.set_num_threads(before)


# --- the grid ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Report:
    """What the last :func:`run` did: tasks in the grid, taken from the cache, and computed."""

    total: int = 0
    cached: int = 0
    computed: int = 0


last_report = Report()


def run(fn: Callable, tasks: Sequence[dict], grid: Grid = Grid(), *, shared: dict | None = None,
        desc: str | None = None) -> list:
    """Results of ``fn(**shared, **task)`` for every task, in the order of ``tasks``.

    Finished tasks come from the cache; the others run on ``grid``'s executor and are cached as
    each finishes. A task that raises stops the grid with a :class:`TaskError` naming its
    parameters and traceback; the results of the tasks that finished stay cached.
    """
    global last_report
    _importable(fn)
    shared = dict(shared or {})
    tasks = [dict(t) for t in tasks]
    clash = [k for t in tasks for k in t if k in shared]
    if clash:
        raise ValueError(f"task parameters {sorted(set(clash))} are also shared inputs")
    threads = grid.task_threads
    folder = cache_dir() / f"{fn.__module__}.{fn.__qualname__}"
    shared_fp = fingerprint(shared)
    keys = [task_key(fn, shared_fp, t, threads) for t in tasks]
    results: list = [None] * len(tasks)
    todo = []
    for i, k in enumerate(keys):
        path = folder / f"{k}.pkl"
        if grid.cache and path.is_file():
            results[i] = pickle.loads(path.read_bytes())
        else:
            todo.append(i)
    last_report = Report(len(tasks), len(tasks) - len(todo), 0)
    if not todo:
        return results
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=desc or fn.__name__,
               disable=not progress_enabled(), leave=False)

    def done(i: int, ok: bool, value: Any) -> None:
        if not ok:
            raise TaskError(f"task {i} of {fn.__qualname__} failed with parameters {tasks[i]!r}:\n{value}")
        results[i] = value
        last_report.computed += 1
        if grid.cache:
            _write(folder / f"{keys[i]}.pkl", value)
        bar.update(1)

    try:
        if grid.executor == "local":
            for i in todo:
                done(i, *_call(fn, shared, tasks[i], threads))
        elif grid.executor == "ray":
            _run_ray(fn, shared, tasks, todo, threads, grid, done)
        else:
            with tempfile.TemporaryDirectory(prefix="fairbook-grid-") as tmp:
                blob = os.path.join(tmp, "shared.pkl")
                with open(blob, "wb") as f:
                    pickle.dump(shared, f, protocol=pickle.HIGHEST_PROTOCOL)
                ex = _process_pool(grid.workers) if grid.executor == "processes" else grid.executor
                _run_futures(ex, fn, blob, tasks, todo, threads, done)
    finally:
        bar.close()
    return results


def _write(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, path)  # a reader never sees half a result


def _run_futures(ex, fn, shared, tasks, todo, threads, done) -> None:
    futures = {ex.submit(_call, fn, shared, tasks[i], threads): i for i in todo}
    # concurrent.futures Futures as they finish; other job handles (submitit's) in submission order
    ordered = (cf.as_completed(futures) if all(isinstance(f, cf.Future) for f in futures) else list(futures))
    try:
        for fut in ordered:
            done(futures[fut], *fut.result())
    except BaseException:
        for fut in futures:
            if hasattr(fut, "cancel"):
                fut.cancel()
        raise


_POOLS: dict[int, cf.ProcessPoolExecutor] = {}


def _process_pool(workers: int) -> cf.ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, kept for the next grid (spawning imports torch)."""
    pool = _POOLS.get(workers)
    if pool is None or getattr(pool, "_broken", False):
        # spawn, not fork: a forked child of a process that has used OpenMP threads can hang
        pool = _POOLS[workers] = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                                        initializer=_ignore_sigint)
    return pool


def _ignore_sigint() -> None:
    """Workers leave interrupts to the parent (a kernel's interrupt or shutdown signals the whole
    process group); the parent cancels what is pending and the pool stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def shutdown() -> None:
    """Stop the worker processes kept by :func:`_process_pool`."""
    for pool in _POOLS.values():
        pool.shutdown(cancel_futures=True)
    _POOLS.clear()


def _run_ray(fn, shared, tasks, todo, threads, grid: Grid, done) -> None:
    import ray

    if not ray.is_initialized():
        if grid.ray_address:
            ray.init(address=grid.ray_address, runtime_env=ray_runtime_env(), log_to_driver=False)
        else:
            ray.init(num_cpus=grid.workers * threads, include_dashboard=False, log_to_driver=False)
    gpus = grid.gpus_per_task
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    remote = ray.remote(num_cpus=threads, num_gpus=gpus)(_call)
    ref = ray.put(shared)
    pending = {remote.remote(fn, ref, tasks[i], threads): i for i in todo}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for r in ready:
                done(pending.pop(r), *ray.get(r))
    except BaseException:
        for r in pending:
            ray.cancel(r)
        raise


def ray_runtime_env() -> dict:
    """Ships this package's source to a cluster's workers (Ray ``py_modules``); the rest of the
    environment (torch, diffusers, ...) must be installed on the workers as on the driver."""
    return {"py_modules": [str(Path(__file__).parent)]}
