"""Promises about the repository itself."""
import json
import re
import tomllib
from pathlib import Path

import jupytext
import yaml

from fairbook.book import chapters
from fairbook.book.site import toc_chapters

REPO = Path(__file__).resolve().parents[2]


def _name(req: str) -> str:
    return re.split(r"[<>=!\[ ;]", req, maxsplit=1)[0].lower()


def test_notebook_sources_are_text_without_outputs():
    assert not list((REPO / "notebooks").glob("*.ipynb"))
    for src in (REPO / "notebooks").glob("*.md"):
        nb = jupytext.read(src)
        for cell in nb.cells:
            assert not cell.get("outputs"), f"{src.name} has outputs"


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): r for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    have = {}
    for spec in conda + [p for p in pip if not p.startswith("-e")]:
        have[_name(spec)] = spec.replace(" ", "")
    python = next(d for d in conda if d.startswith("python="))
    assert python == "python=" + project["requires-python"].lstrip(">=")
    for name, req in wanted.items():
        assert name in have, f"{name} is in pyproject.toml but not in environment.yml"
        assert have[name] == req.replace(" ", ""), f"{name}: pyproject {req!r} vs environment {have[name]!r}"
    extra = set(have) - set(wanted) - {"python", "pip", "nodejs"}
    assert not extra, f"environment.yml has packages pyproject.toml lacks: {extra}"


def test_every_chapter_in_toc_and_profiles():
    names = chapters.available()
    assert names and sorted(toc_chapters(REPO)) == sorted(names)
    for profile in chapters.PROFILES:  # default: the notebooks' own values (test_params checks it is empty)
        assert set(chapters.load_profile(profile)) == (set() if profile == "default" else set(names)), profile


def test_ci_calls_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make book" in readme and "make test" in readme


def test_no_remote_urls_in_book_config():
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    assert not re.search(r"https?://", json.dumps(cfg))
    assert "sphinx_thebe" not in cfg["sphinx"]["config"]["extensions"]


def test_every_chapter_has_both_runner_hooks():
    """The runner reads a chapter's hooks from one mapping; every chapter defines both."""
    assert set(chapters.HOOKS) == set(chapters.available())
    for name in chapters.available():
        hooks = chapters.hooks(name)
        assert hooks.__name__ == f"fairbook.{name}.chapter"
        assert callable(hooks.check_parameters) and callable(hooks.input_files), name
    assert chapters.hooks("no-such-chapter") is None
