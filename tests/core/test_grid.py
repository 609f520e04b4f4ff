"""fairbook.grid: cached tasks on local / processes / Ray executors, resume, failures, parameters."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairbook import gcm, grid
from fairbook.book import runner
from fairbook.errors import ParameterError

RECIPE = gcm.experiment.Recipe(widths=(8,), batch_size=40, epochs=1, steps_per_epoch=3, lr=0.01)


def splits(n: int = 240, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "val", "test"):
        a = rng.integers(0, 2, n)
        y = (rng.random(n) < 0.3 + 0.4 * a).astype(np.int64)
        X = (rng.normal(size=(n, 5)) + y[:, None] * 0.8 + a[:, None] * 0.3).astype(np.float32)
        out[split] = (X, y, a.astype(np.int64))
    return {"adult": out}


SHARED = {"recipe": RECIPE, "splits": splits(), "dataset": "adult"}
TASKS = ([{"method": "gcm", "options": {"lam": lam, "T": 2.0}, "model_seed": s} for lam in (0.1, 1.0) for s in (0, 1)]
         + [{"method": "oversampling", "options": {}, "model_seed": s} for s in (0, 1)])


@pytest.fixture(autouse=True)
def task_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRBOOK_TASKS", str(tmp_path / "tasks"))
    monkeypatch.setenv("FAIRBOOK_PROGRESS", "0")
    return tmp_path / "tasks"


def table(results) -> str:
    return pd.DataFrame([{**t, **r} for t, r in zip(TASKS, results)]).to_csv(index=False)


def test_executors_give_byte_identical_tables_and_the_cache_is_reused(task_cache):
    local = table(grid.run(gcm.experiment.train_eval, TASKS, grid.Grid("local", 2, cache=False), shared=SHARED))
    procs = table(grid.run(gcm.experiment.train_eval, TASKS, grid.Grid("processes", 2, cache=False), shared=SHARED))
    grid.shutdown()
    ray = pytest.importorskip("ray")
    try:
        on_ray = table(grid.run(gcm.experiment.train_eval, TASKS, grid.Grid("ray", 2), shared=SHARED))
    finally:
        ray.shutdown()
    assert local == procs == on_ray
    assert grid.last_report.computed == len(TASKS)
    again = table(grid.run(gcm.experiment.train_eval, TASKS, grid.Grid("local", 2), shared=SHARED))
    assert again == local and grid.last_report.cached == len(TASKS) and grid.last_report.computed == 0
    assert len(list(task_cache.rglob("*.pkl"))) == len(TASKS)


def test_results_follow_the_task_list_and_a_plain_call():
    res = grid.run(gcm.experiment.train_eval, TASKS[::-1], grid.Grid("local", 2), shared=SHARED)
    direct = grid._call(gcm.experiment.train_eval, SHARED, TASKS[-1], 1)
    assert direct[0] and res[0] == direct[1]


def test_a_concurrent_futures_executor_plugs_in():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        res = grid.run(gcm.experiment.train_eval, TASKS[:2], grid.Grid(ex, 2, cache=False), shared=SHARED)
    assert res == grid.run(gcm.experiment.train_eval, TASKS[:2], grid.Grid("local", 2, cache=False), shared=SHARED)


def test_the_key_changes_with_every_input():
    fp = grid.fingerprint(SHARED)
    base = grid.task_key(gcm.experiment.train_eval, fp, TASKS[0], 1)
    assert base == grid.task_key(gcm.experiment.train_eval, fp, dict(TASKS[0]), 1)
    assert base != grid.task_key(gcm.experiment.train_eval, fp, TASKS[1], 1)
    assert base != grid.task_key(gcm.experiment.train_eval, fp, TASKS[0], 2)
    assert base != grid.task_key(gcm.experiment.fit_recipe, fp, TASKS[0], 1)
    other = splits(seed=1)
    assert fp != grid.fingerprint({**SHARED, "splits": other})
    assert grid.fingerprint(np.zeros(3, np.float32)) != grid.fingerprint(np.zeros(3, np.float64))


def test_a_failing_task_names_its_parameters_and_keeps_finished_results(task_cache):
    tasks = TASKS[:2] + [{"method": "no-such-method", "model_seed": 7}] + TASKS[2:4]
    with pytest.raises(grid.TaskError, match=r"(?s)no-such-method.*model_seed.*7.*Traceback.*ValueError"):
        grid.run(gcm.experiment.train_eval, tasks, grid.Grid("local", 2), shared=SHARED)
    assert grid.last_report.computed == 2 and len(list(task_cache.rglob("*.pkl"))) == 2
    with pytest.raises(grid.TaskError, match="no-such-method"):
        grid.run(gcm.experiment.train_eval, tasks, grid.Grid("processes", 2), shared=SHARED)
    grid.shutdown()
    grid.run(gcm.experiment.train_eval, TASKS[:2], grid.Grid("local", 2), shared=SHARED)
    assert grid.last_report.cached == 2


RESUMABLE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_grid import SHARED, TASKS
    from fairbook import gcm, grid
    import dataclasses
    shared = dict(SHARED, recipe=dataclasses.replace(SHARED["recipe"], steps_per_epoch=400))
    grid.run(gcm.experiment.train_eval, TASKS, grid.Grid("local", 2), shared=shared)
    print("finished", grid.last_report.computed)
""")


def test_a_killed_run_resumes_and_reruns_only_the_missing_tasks(task_cache, tmp_path):
    script = tmp_path / "grid_run.py"
    script.write_text(RESUMABLE.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "FAIRBOOK_TASKS": str(task_cache)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(task_cache.rglob("*.pkl"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(task_cache.rglob("*.pkl")))
    assert 2 <= done < len(TASKS), "the run was not killed part-way"
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == str(len(TASKS) - done)
    assert len(list(task_cache.rglob("*.pkl"))) == len(TASKS)


def test_task_functions_must_be_importable():
    def local_fn(**kw):
        return kw

    with pytest.raises(ValueError, match="module-level function"):
        grid.run(local_fn, [{}], grid.Grid("local", 1))
    with pytest.raises(ValueError, match="also shared inputs"):
        grid.run(gcm.experiment.train_eval, [{"dataset": "adult"}], grid.Grid("local", 1), shared=SHARED)


@pytest.mark.parametrize("kw, match", [({"executor": "slurm"}, "executor must be one of"),
                                       ({"workers": 0}, "workers must be"),
                                       ({"executor": "local", "ray_address": "auto"}, "needs executor='ray'"),
                                       ({"executor": object()}, "no submit")])
def test_bad_grid_parameters_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        grid.Grid(**kw)


@pytest.mark.parametrize("override, match", [({"executor": "slurm"}, "executor"), ({"workers": "0"}, "workers"),
                                             ({"ray_address": "auto"}, "needs executor='ray'")])
def test_bad_executor_parameters_stop_the_request_before_the_kernel(override, match, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRBOOK_RUNS", str(tmp_path / "runs"))
    with pytest.raises(ParameterError, match=match):
        runner.run("gcm", "smoke", override)
    assert not (tmp_path / "runs").exists()


def test_stale_temporary_run_directories_are_removed_only_when_their_process_is_gone(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f".tmp-default-abc-{dead.pid}"
    alive = tmp_path / f".tmp-default-abc-{os.getpid()}"
    other = tmp_path / "default-abc"
    for d in (gone, alive, other):
        d.mkdir()
    assert runner.remove_stale(tmp_path) == [gone]
    assert not gone.exists() and alive.exists() and other.exists()


class _Job:
    """A job handle that is not a concurrent.futures.Future (as submitit's): result() only."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class _SubmititLike:
    def submit(self, fn, *args):
        return _Job(fn(*args))


def test_an_executor_returning_other_job_handles_plugs_in():
    res = grid.run(gcm.experiment.train_eval, TASKS[:2], grid.Grid(_SubmititLike(), 2, cache=False), shared=SHARED)
    assert res == grid.run(gcm.experiment.train_eval, TASKS[:2], grid.Grid("local", 2, cache=False), shared=SHARED)


def test_traced_eval_returns_the_history_of_its_training():
    history, result = gcm.experiment.traced_eval(**SHARED, method="oversampling", model_seed=0,
                                                 tracker={"every": 1, "n_permutations": 1, "per_layer": False})
    assert len(history) == RECIPE.epochs * RECIPE.steps_per_epoch and "r_y0_perm0" in history
    assert set(result) >= {"ap", "delta_eo", "val_ap"}
