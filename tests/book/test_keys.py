"""Scoped cache keys: a run's key and its grid tasks' keys hash the core and the chapter's own paper
subpackage; the harness (site, profiles) and the other papers cannot invalidate them."""
from __future__ import annotations

import shutil

import pytest

from fairbook import grid, paths
from fairbook.book import runner


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A copy of the package's source that the keys are computed from."""
    copy = tmp_path / "fairbook"
    shutil.copytree(paths.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("FAIRBOOK_ROOT", str(paths.project_root()))  # the real notebooks
    monkeypatch.setattr(paths, "PACKAGE_DIR", copy)
    grid._source_fingerprint.cache_clear()
    yield copy
    grid._source_fingerprint.cache_clear()


def keys(chapter: str, task) -> tuple[str, str]:
    grid._source_fingerprint.cache_clear()
    run_key = runner.prepare(chapter, "smoke")[3]
    return run_key, grid.task_key(task, "shared", {"seed": 0}, 1)


def touch(path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


def test_the_harness_and_other_papers_leave_keys_unchanged_own_code_changes_them(package):
    from fairbook.gcm import experiment

    task = experiment.train_eval
    before = keys("gcm", task)
    for edited in (package / "book" / "site.py", package / "book" / "profiles" / "paper.yml",
                   package / "hbr" / "claims.py", package / "aimfair" / "__init__.py"):
        touch(edited)
        assert keys("gcm", task) == before, f"editing {edited.relative_to(package)} re-keyed the gcm run"
    for edited in (package / "gcm" / "experiment.py", package / "claims.py"):
        run_key, task_key = keys("gcm", task)
        touch(edited)
        after = keys("gcm", task)
        assert after[0] != run_key and after[1] != task_key, f"editing {edited.relative_to(package)} kept the keys"


def test_source_fingerprint_scopes(package):
    core = paths.source_fingerprint()
    hbr = paths.source_fingerprint("hbr")
    assert hbr != core and paths.source_fingerprint("gcm") != hbr
    touch(package / "hbr" / "claims.py")
    assert paths.source_fingerprint() == core and paths.source_fingerprint("hbr") != hbr
    assert paths.scope_of("fairbook.hbr.experiment") == "hbr" and paths.scope_of("fairbook.metrics") is None
    assert paths.scope_of("fairbook.book.site") is None
    with pytest.raises(ValueError, match="paper must be one of"):
        paths.source_fingerprint("book")
