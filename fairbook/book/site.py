"""``fairbook build``: run every chapter with one profile and publish the executed notebooks.

Executed notebooks are copied to ``book/chapters/``, ``book/reproducibility.md`` is generated from
the runs' provenance, ``book/scorecard.md`` from their ``results/claims.csv``, and Jupyter Book 1
builds ``_build/html`` (warnings are errors by default).
"""
from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pandas as pd
import yaml

from .. import claims as C
from ..paths import project_root
from . import chapters, runner
from ..errors import ParameterError

HTML = Path("_build") / "html"


def toc_chapters(root: Path) -> list[str]:
    """Chapter names listed in ``_toc.yml`` (entries ``book/chapters/<name>``)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [f.rsplit("/", 1)[1] for f in files if f.startswith("book/chapters/")]


def build(profile: str = "default", force: bool = False, strict: bool = True, log=print) -> Path:
    """Run (or reuse) every chapter with ``profile`` and build the site; returns the HTML folder."""
    root = project_root()
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
        page_notebook(r, out / f"{r.chapter}.ipynb")
    (root / "book" / "reproducibility.md").write_text(reproducibility_page(runs))
    (root / "book" / "scorecard.md").write_text(scorecard_page(runs))
    (root / "book" / "status.md").write_text(status_page(runs))  # included by the front page

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


def page_notebook(run: runner.Run, dest: Path) -> Path:
    """The executed notebook as the chapter page shows it: papermill's injected-parameters cell
    removed, the ``parameters`` cell's code replaced by one folded block, "Parameters of this run"
    (:func:`parameters_block`), and the set-up cell after it (imports) folded, so that the page goes
    from the introduction to the argument."""
    import nbformat

    nb = nbformat.read(run.notebook, as_version=4)
    cells, setup_next = [], False
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            continue
        if "parameters" in tags:
            cells.append(nbformat.v4.new_markdown_cell(parameters_block(run)))
            setup_next = True
            continue
        if setup_next and cell.cell_type == "code":  # the imports and set-up: folded as well
            cell.metadata["tags"] = sorted(set(tags) | {"hide-input"})
            setup_next = False
        elif cell.cell_type == "code":
            cell.metadata["tags"] = sorted(set(tags) | display_tags(cell.source))
        cells.append(cell)
    nb.cells = cells
    nbformat.write(nb, dest)
    return dest


_PLOTTING = re.compile(r"^\s*(ax\b|axes\b|fig\b|plt\.|sns\.|fb\.plotting\.|for ax\b|(\w+\s*,\s*)*\w+\s*=\s*(plt|sns)\.|g\.(set_\w+|figure|axes|add_legend)\b|.*\.set_(x|y)?(label|title|ticks|lim)"
                       r"|.*\.(legend|annotate|axhline|axvline|text|errorbar|bar|barh|scatter|plot|imshow|fill_between)\()")
#: lines that only present a result (a figure, a glued value, a saved or displayed table)
_PRESENTING = re.compile(r"^\s*(glue\(|display\(|fb\.io\.save_table\()")
#: lines that only steer (loops, branches, definitions): neither computing nor presenting
_STEERING = re.compile(r"^\s*(for|if|elif|else|def|return|continue|break|try|except|finally|with)\b")
#: a call of the book's methods (the package, not its plotting and file helpers): such a cell stays open
_METHOD_CALL = re.compile(r"\b(fb\.(?!plotting|io\b)\w+|mime|hbr|gcm|aimfair|ddpm|ctx)"
                          r"\.\w+(\.\w+)*\(")
_FIGSIZE = re.compile(r"figsize\s*=\s*\(\s*([\d.]+)")


def _statements(source: str) -> list[str]:
    """The cell's logical lines (a call spread over several lines is one), comments and blanks left
    out; physical lines where the source does not tokenize (e.g. IPython magics)."""
    lines = source.splitlines()
    try:
        ends = [tok.end[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.NEWLINE]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [ln for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    out, start = [], 0
    for end in ends:
        chunk = [ln for ln in lines[start:end] if ln.strip() and not ln.strip().startswith("#")]
        out += ["\n".join(chunk)] if chunk else []
        start = end
    return out


def display_tags(source: str) -> set[str]:
    """Page tags of a code cell: ``hide-input`` (folded code) when it draws a figure (matplotlib /
    seaborn / ``fb.plotting``), at least half of its lines that are not loops or branches present
    (plot, glue, display or save a table), and none of its other lines calls a method of the book:
    a method call stays visible (one inside a plot title does not count), plotting code does not.
    ``full-width`` when it draws a figure 10 inches wide or more (multi-panel figures use the page
    width)."""
    lines = _statements(source)
    plotting = [ln for ln in lines if _PLOTTING.match(ln)]
    presenting = [ln for ln in lines if not _PLOTTING.match(ln) and _PRESENTING.match(ln)]
    working = [ln for ln in lines if not (_PLOTTING.match(ln) or _PRESENTING.match(ln) or _STEERING.match(ln))]
    tags = set()
    if plotting and len(plotting) + len(presenting) >= len(working) and not any(map(_METHOD_CALL.search, working)):
        tags.add("hide-input")
    if any(float(w) >= 10 for w in _FIGSIZE.findall(source)):
        tags.add("full-width")
    return tags


def parameters_block(run: runner.Run) -> str:
    """A folded MyST dropdown: every parameter's value in this run, its meaning, and a mark where the
    value differs from the notebook's own default (the ``default`` profile)."""
    ch = chapters.get(run.chapter)
    values = run.provenance["parameters"]
    changed = [n for n, spec in ch.params.items() if n in values and values[n] != spec.default]
    rows = ["| parameter | value | meaning |", "| --- | --- | --- |"]
    for n, spec in ch.params.items():
        mark = " (changed)" if n in changed else ""
        rows.append(f"| `{n}` | `{_cell(_fmt_value(values.get(n, spec.default)))}`{mark} | {_cell(spec.meaning)} |")
    profile = run.provenance["profile"]
    head = (f"Parameters of this run: profile `{profile}`, "
            + (f"{len(changed)} changed from the notebook's defaults" if changed else "the notebook's defaults"))
    return "\n".join([f":::{{dropdown}} {head}", *rows, "",
                      f"Rerun with other values: `fairbook run {run.chapter} -p NAME VALUE` (`fairbook list` shows them all).",
                      ":::"]) + "\n"


def _fmt_value(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    return '""' if v == "" else str(v)


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
    x = float(x)
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}g}".replace("-", "−")


def _p(x) -> str:
    x = float(x)
    return "< 0.0001" if 0 <= x < 1e-4 else _num(x, 2)


def status_page(runs: list[runner.Run]) -> str:
    """The front page's table (included by ``book/intro.md``): per paper its chapter, the parts of the
    paper its claims test (the claims' ``source``) and its reproduced / contradicted / inconclusive
    counts, from each run's ``results/claims.csv`` (the Scorecard's numbers)."""
    lines = ["| paper | chapter | parts of the paper tested | reproduced | contradicted | inconclusive |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        p, df = r.provenance, _claims(r)
        if df is None:
            lines.append(f"| {_paper_name(p['chapter'])} | {{doc}}`chapters/{p['chapter']}` | no claims table | | | |")
            continue
        parts = sorted({m.group(0) for src in df.source for m in _PART.finditer(src)}, key=_part_order)
        n = df.verdict.value_counts()
        lines.append(f"| {_paper_name(p['chapter'])} | {{doc}}`chapters/{p['chapter']}` | {_cell(', '.join(parts))} "
                     f"| {n.get('reproduced', 0)} | {n.get('contradicted', 0)} | {n.get('inconclusive', 0)} |")
    profiles = sorted({r.provenance["profile"] for r in runs})
    lines += ["", f"Counts from the runs of this build (profile {', '.join(f'`{x}`' for x in profiles)}); "
              "{doc}`scorecard` gives every claim with its estimate, interval and test."]
    return "\n".join(lines) + "\n"


def _claims(run: runner.Run):
    """The run's ``results/claims.csv`` (text columns as strings, empty where missing), or None."""
    path = run.path / "results" / "claims.csv"
    if not path.exists():
        return None
    text = ("note", "section", "source")
    return pd.read_csv(path, dtype=dict.fromkeys(text, str)).fillna(dict.fromkeys(text, ""))


def _paper_name(chapter: str) -> str:
    return {"aimfair": "AIM-Fair"}.get(chapter, chapter.upper())


#: a table, figure or theorem of a paper named in a claim's ``source`` ("Table D1", "Figs. E1–E8", "Theorem 2")
_PART = re.compile(r"(Tables?|Figs?\.|Theorem)\s*[A-Z]?\d+[a-z]?(?:\s*[–-]\s*[A-Z]?\d+[a-z]?)?")


def _part_order(part: str) -> tuple:
    """Tables, then figures, then theorems, each by number."""
    kind = 0 if part.startswith("Table") else 1 if part.startswith("Fig") else 2
    num = re.search(r"\d+(\.\d+)?", part)
    return kind, float(num.group()) if num else 0.0, part


def scorecard_page(runs: list[runner.Run]) -> str:
    """The "Scorecard" page: every claim of every chapter's run with its estimate, interval, test and
    verdict (from ``results/claims.csv``, see :mod:`fairbook.claims`), and a summary line per paper."""
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
        p, df = r.provenance, _claims(r)
        lines += [f"## {p['title']}", ""]
        if df is None:
            lines += [f"The {p['chapter']} run (`{r.path.name}`) wrote no claims table.", ""]
            continue
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
