"""How a chapter page shows an executed notebook: parameters folded, plotting code folded, the front
page's table from the claims (fast: no book build)."""
import json

import nbformat
import pandas as pd

from fairbook.book import chapters, runner, site


def fake_run(tmp_path, chapter="gcm", changes=None, verdicts=("reproduced", "inconclusive", "inconclusive")):
    ch = chapters.get(chapter)
    values = {**{n: s.default for n, s in ch.params.items()}, **(changes or {})}
    d = tmp_path / chapter / "smoke-abc"
    (d / "results").mkdir(parents=True)
    (d / "provenance.json").write_text(json.dumps({"chapter": chapter, "title": ch.title, "profile": "smoke",
                                                   "parameters": values}))
    pd.DataFrame({"verdict": list(verdicts), "source": ["Table 2", "Fig. 4, Table 1", "§3"]}).to_csv(
        d / "results" / "claims.csv", index=False)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title\n\nIntro."),
                nbformat.v4.new_code_cell("seed: int = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("# Parameters\nseed = 1", metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("import numpy as np"),
                nbformat.v4.new_markdown_cell("The argument."),
                nbformat.v4.new_code_cell("fig, ax = plt.subplots(1, 3, figsize=(12, 3))\nax[0].plot(x)\nfb.plotting.save(fig, 'f')")]
    nbformat.write(nb, d / f"{chapter}.ipynb")
    return runner.Run(chapter, "smoke", d, True)


def test_the_page_drops_injected_parameters_and_folds_parameters_setup_and_plots(tmp_path):
    run = fake_run(tmp_path, changes={"n_seeds": 1})
    nb = nbformat.read(site.page_notebook(run, tmp_path / "page.ipynb"), 4)
    assert [c.cell_type for c in nb.cells] == ["markdown", "markdown", "code", "markdown", "code"]
    block = nb.cells[1].source
    assert block.startswith(":::{dropdown} Parameters of this run: profile `smoke`, 1 changed")
    assert "| `n_seeds` | `1` (changed) |" in block and "| `seed` | `0` |" in block
    assert "hide-input" in nb.cells[2].metadata["tags"]           # the set-up cell
    assert {"hide-input", "full-width"} <= set(nb.cells[4].metadata["tags"])


def test_method_calls_stay_visible_and_plain_cells_get_no_tags():
    assert site.display_tags("ax.plot(x)\nax.set_title('t')\nres = hbr.table_tests(s)") == set()
    assert site.display_tags("fig, ax = plt.subplots(figsize=(6, 3))\nax.plot(x)\nfb.plotting.save(fig, 'a')") \
        == {"hide-input"}
    assert site.display_tags("x = fb.mime.curve(a)\ny = x + 1") == set()


def test_what_counts_toward_folding():
    # a method called inside a plot title is part of the figure, not a step of the method
    assert site.display_tags('fig, ax = plt.subplots()\nax.set_title(f"{fb.mime.domain_gap(a, b):.2f}")') \
        == {"hide-input"}
    # glued values and saved tables present a result; loops only steer
    assert site.display_tags('for ax in axes:\n    ax.plot(x)\nfor k in ks:\n    glue(k, fb.claims.Text(k))\n'
                             'fb.io.save_table(t, "t")\nt = t.round(2)') == {"hide-input"}
    # a call spread over lines is one statement
    assert site.display_tags('n = len(x)\ng = sns.relplot(d, x="a",\n                y="b",\n                col="c")\n'
                             'g.set_axis_labels("a", "b")') == {"hide-input"}
    # more computing than presenting, or no figure at all: open
    assert site.display_tags("a = 1\nb = a + 1\nc = b * 2\nplt.plot(c)") == set()
    assert site.display_tags('glue("x", fb.claims.Text("1"))') == set()


def test_the_front_page_table_counts_each_papers_verdicts(tmp_path):
    page = site.status_page([fake_run(tmp_path, "gcm"), fake_run(tmp_path, "aimfair", verdicts=("contradicted",) * 3)])
    assert "| GCM | {doc}`chapters/gcm` | Table 1, Table 2, Fig. 4 | 1 | 0 | 2 |" in page
    assert "| AIM-Fair | {doc}`chapters/aimfair` | Table 1, Table 2, Fig. 4 | 0 | 3 | 0 |" in page
