"""Sphinx extension of the book's ``_config.yml``: ``jupyter-book build .`` on a checkout whose chapters
have not been executed stops at once and says what to run, instead of failing on missing pages."""
from __future__ import annotations

from pathlib import Path

#: What ``fairbook build`` writes before it calls Jupyter Book.
GENERATED = ("book/chapters", "book/reproducibility.md", "book/scorecard.md", "book/status.md")


def missing(root: str | Path) -> list[str]:
    return [p for p in GENERATED if not (Path(root) / p).exists()]


def _check(app, config) -> None:
    from sphinx.errors import ConfigError

    gone = missing(app.srcdir)
    if gone:
        raise ConfigError(
            f"the chapters have not been executed in this checkout ({', '.join(gone)} missing). "
            "Run `make book` (or `.venv/bin/fairbook build --profile default`): it executes every "
            "chapter and then builds the site; afterwards `jupyter-book build .` rebuilds the site.")


def setup(app):
    app.connect("config-inited", _check, priority=100)  # before the table of contents is read
    return {"parallel_read_safe": True, "parallel_write_safe": True}
