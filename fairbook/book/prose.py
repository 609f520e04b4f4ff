"""The book's prose rule: a markdown cell never types a number or verdict about *this run*.

Numbers and verdicts of the run reach the prose through myst-nb's ``glue`` (``{glue:text}`key```);
typed numbers go stale when a parameter changes. :func:`violations` finds sentences that break the
rule in a chapter source; ``tests/test_prose.py`` runs it on every chapter.

What the check looks at, after removing math (``$…$``, ``$$…$$``), code (fenced and inline), MyST
roles and directives (``{glue:text}`…```, ``{cite}`…```, fenced ``{…}`` blocks), label lines
``(name)=`` and link targets:

* **run numbers** -- a decimal (``0.12``), a percentage (``12 %``), a count of claims
  (``8 of 14``), or an ``= number`` assignment;
* **verdict words** -- reproduced, contradicted, inconclusive, holds / hold (here), significant.

A sentence may state either only if it attributes it to the paper (it says *paper*, *authors*,
*reports*, *published*, or cites with ``{cite}``), or, for verdict words, if it states a rule
(*when*, *if*, *unless*, *means*). Integers (``Table 3``, ``eq. 6``, ``2 cores``) are structure, not
results, and pass.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["violations", "markdown_cells", "check_text"]

_STRIP = [
    re.compile(r"\$\$.*?\$\$", re.S),
    re.compile(r"```.*?```", re.S),
    re.compile(r"`[^`]*`"),             # inline code (a role's target is code too)
    re.compile(r"\{[a-z:-]+\}"),        # the role names left after their targets
    re.compile(r"\$[^$]+\$"),
    re.compile(r"^\(.*\)=\s*$", re.M),  # labels
    re.compile(r"\]\([^)]*\)"),         # link targets
    re.compile(r"<!--.*?-->", re.S),
]
_NUMBER = re.compile(
    r"(?<![\w.])[−+-]?\d+\.\d+|\d+(?:\.\d+)?\s*(?:%|pp\b)|\b\d+\s+of\s+\d+\b|=\s*[−-]?\d")
_VERDICT = re.compile(r"\b(reproduced|reproduces|contradicted|contradicts|inconclusive|holds|hold here|"
                      r"does not hold|do not hold|significant|significantly)\b", re.I)
_PAPER = re.compile(r"paper|authors|\breports?\b|\breported\b|published|\{cite", re.I)
_RULE = re.compile(r"\b(when|whenever|if|unless|means)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?:;])\s+(?=[A-Z(*_\[])|\n\s*\n|\n(?=\s*[-*|#] )")


def markdown_cells(path: str | Path) -> list[str]:
    """The markdown cells of a jupytext MyST chapter source."""
    import jupytext

    nb = jupytext.read(Path(path))
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def check_text(text: str) -> list[str]:
    """Sentences of one markdown text that type a run number or verdict (see module doc)."""
    out = []
    # split on the raw text so that a sentence keeps its {cite} and its math for attribution
    for raw in _sentences(text):
        clean = raw
        for rx in _STRIP:
            clean = rx.sub(" ", clean)
        attributed = bool(_PAPER.search(raw))
        if _NUMBER.search(clean) and not attributed:
            out.append(raw)
        elif _VERDICT.search(clean) and not attributed and not _RULE.search(clean):
            out.append(raw)
    return out


def violations(path: str | Path) -> list[str]:
    """Every offending sentence of a chapter source, prefixed with its markdown cell's number."""
    found = []
    for i, cell in enumerate(markdown_cells(path)):
        found += [f"markdown cell {i}: {s}" for s in check_text(cell)]
    return found


if __name__ == "__main__":  # python -m fairbook.book.prose notebooks/gcm.md ...
    bad = [f"{p}: {v}" for p in sys.argv[1:] for v in violations(p)]
    print("\n".join(bad) or "no typed run numbers or verdicts")
    sys.exit(1 if bad else 0)
