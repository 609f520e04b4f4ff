"""``fairbook build``: run every chapter with one profile and publish the executed notebooks.

Executed notebooks are copied to ``book/chapters/``, ``book/reproducibility.md`` is generated from
the runs' provenance, ``book/scorecard.md`` from their ``results/claims.csv``, and Jupyter Book 1
builds ``_build/html`` (warnings are errors by default).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from . import chapters, runner
from .params import ParameterError

HTML = Path("_build") / "html"


def toc_chapters(root: Path) -> list[str]:
    """Chapter names listed in ``_toc.yml`` (entries ``book/chapters/<name>``)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [f.rsplit("/", 1)[1] for f in files if f.startswith("book/chapters/")]


def build(profile: str = "default", force: bool = False, strict: bool = True, log=print) -> Path:
    """Run (or reuse) every chapter with ``profile`` and build the site; returns the HTML folder."""
    root = chapters.project_root()
    names = chapters.available()
    listed = toc_chapters(root)
    if sorted(listed) != sorted(names):
        raise ParameterError(f"_toc.yml lists chapters {listed} but notebooks/ has {names}; "
                             "add every chapter to _toc.yml")
    for name in names:  # validate every request before running anything
        runner.prepare(name, profile)
    runs = [runner.run(name, profile, force=force, log=log) for name in names]

    out = root / "book" / "chapters"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for r in runs:
        shutil.copyfile(r.notebook, out / f"{r.chapter}.ipynb")
    (root / "book" / "reproducibility.md").write_text(reproducibility_page(runs))
    (root / "book" / "scorecard.md").write_text(scorecard_page(runs))

    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--builder", "html"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    log("building the site: " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    log(f"site written to {root / HTML}")
    return root / HTML


def _fmt_params(params: dict) -> str:
    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in params.items())


def reproducibility_page(runs: list[runner.Run]) -> str:
    """The "Reproducibility" page: every run in the book with its profile, parameters, commit, time."""
    lines = [
        "# Reproducibility",
        "",
        "Every chapter of this book is the executed notebook of one run below, made by",
        "`fairbook build`. Repeat any of them with the command shown; an identical request reuses",
        "the finished run, `--force` executes it again. This page is generated from each run's",
        "`provenance.json`.",
        "",
        "| chapter | profile | run | git commit | started (UTC) | wall time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    provs = [r.provenance for r in runs]
    for r, p in zip(runs, provs):
        lines.append(f"| {p['chapter']} | {p['profile']} | `{r.path.name}` | `{p['git_commit'][:12]}` "
                     f"| {p['started'].replace('+00:00', '')} | {p['wall_time_s']:.1f} s |")
    for r, p in zip(runs, provs):
        pk = ", ".join(f"{k} {v}" for k, v in p["packages"].items())
        lines += [
            "", f"## {p['chapter']}: {p['title']}", "",
            f"Command: `fairbook run {p['chapter']} --profile {p['profile']}`  ",
            f"Device: {p['device']}; Python {p['python']}; fairbook {p['fairbook_version']}; "
            f"data: {', '.join(f'{k} ({v[:12]})' for k, v in p['data'].items()) or 'none (simulated)'}  ",
            f"Seeds: {', '.join(f'{k} = {v}' for k, v in p['seeds'].items()) or 'none'}  ",
            f"Results: {', '.join(p['results'])}  ",
            f"Packages: {pk}", "", "```text", _fmt_params(p["parameters"]), "```",
        ]
    return "\n".join(lines) + "\n"


_BADGE = {"reproduced": "bdg-success", "contradicted": "bdg-danger", "inconclusive": "bdg-secondary"}


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(x, digits: int = 3) -> str:
    import math

    x = float(x)
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}g}".replace("-", "−")


def _p(x) -> str:
    x = float(x)
    return "< 0.0001" if 0 <= x < 1e-4 else _num(x, 2)


def scorecard_page(runs: list[runner.Run]) -> str:
    """The "Scorecard" page: every claim of every chapter's run with its estimate, interval, test and
    verdict (from ``results/claims.csv``, see :mod:`fairbook.claims`), and a summary line per paper."""
    import pandas as pd

    from . import claims as C

    lines = [
        "# Scorecard", "",
        "Every claim of the four papers that the book tests, judged by the run that made its chapter.",
        "The estimate is the claim's quantity in this run, oriented so that a positive value is the",
        "paper's direction (for a \"no change\" claim: the difference, to be inside the margin), with",
        "its 95 % interval over the replicated unit. A claim is **reproduced** when its Holm-adjusted",
        "p-value (within the chapter) is below 0.05 and the estimate lies on the paper's side,",
        "**contradicted** when it is below 0.05 on the other side, and **inconclusive** otherwise; the",
        "MDE is the effect this run would detect with 80 % power, and *underpowered* marks a claim whose",
        "MDE exceeds the paper's own effect. The rules are in `fairbook.claims`; this page is generated",
        "from each run's `results/claims.csv`.", "",
    ]
    for r in runs:
        path = r.path / "results" / "claims.csv"
        p = r.provenance
        lines += [f"## {p['title']}", ""]
        if not path.exists():
            lines += [f"The {p['chapter']} run (`{r.path.name}`) wrote no claims table.", ""]
            continue
        df = pd.read_csv(path, dtype={"note": str, "section": str}).fillna({"note": "", "section": ""})
        lines += [f"**{C.summary(df)}** (profile `{p['profile']}`, run `{r.path.name}`).", "",
                  "| verdict | claim | paper | this run: estimate [95 % CI] | unit (n) | p (Holm) | MDE |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for _, c in df.iterrows():
            where = (f"{{ref}}`{c.section}`" if c.section else f"{{doc}}`chapters/{p['chapter']}`")
            note = f" *{_cell(c.note)}*" if c.note else ""
            lines.append(
                f"| {{{_BADGE[c.verdict]}}}`{c.verdict}` | {_cell(c.claim)} ({where}){note} "
                f"| {_cell(c.source)}: {_cell(c.paper)} "
                f"| {_cell(c.quantity)}: **{_num(c.estimate)}** [{_num(c.ci_low)}, {_num(c.ci_high)}] "
                f"| {_cell(c.unit)} ({int(c.n)}) | {_p(c.p_holm)} | {_num(c.mde)} |")
        lines.append("")
    return "\n".join(lines) + "\n"
