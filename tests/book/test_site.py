"""The smoke book: built with warnings as errors, then opened in headless Chromium."""
import shutil
from pathlib import Path

import pytest

from fairbook.book import chapters, site
from sitecheck import CHROMIUM, check_site, discover_pages

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copytree(REPO / "book", root / "book",
                    ignore=shutil.ignore_patterns("chapters", "reproducibility.md", "scorecard.md", "status.md"))
    mathjax = REPO / ".cache" / "npm"
    assert (mathjax / "node_modules" / "mathjax").is_dir(), "run `make mathjax` first"
    (root / ".cache").mkdir()
    (root / ".cache" / "npm").symlink_to(mathjax)
    mp = pytest.MonkeyPatch()
    mp.setenv("FAIRBOOK_ROOT", str(root))
    mp.setenv("FAIRBOOK_RUNS", str(root / "runs"))
    html = site.build("smoke", log=lambda m: None)
    yield root, html
    mp.undo()


def test_smoke_book_builds(smoke_site):
    root, html = smoke_site
    for page in ("intro.html", "chapters/mime.html", "reproducibility.html", "scorecard.html",
                 "references.html"):
        assert (html / "book" / page).exists(), page
    score = (root / "book" / "scorecard.md").read_text()
    assert "wrote no claims table" not in score
    assert score.count("reproduced, ") == len(chapters.available())  # a summary line per paper
    card = (html / "book" / "scorecard.html").read_text()
    assert "sd-badge" in card and "inconclusive" in card
    repro = (root / "book" / "reproducibility.md").read_text()
    assert "| mime | smoke |" in repro and "fairbook run mime --profile smoke" in repro
    status = (root / "book" / "status.md").read_text()
    import re
    for name in chapters.available():  # a row per paper: its chapter and the three counts, from claims.csv
        assert re.search(rf"\{{doc\}}`chapters/{name}` \| [^|]+ \| \d+ \| \d+ \| \d+ \|", status), name
    front = (html / "book" / "intro.html").read_text()
    assert all(f"chapters/{name}.html" in front for name in chapters.available()) and "reproduced" in front
    refs = (html / "book" / "references.html").read_text().lower()
    assert "minority inclusion" in refs and "group contribution matching" in refs


def test_rebuild_reuses_runs(smoke_site):
    root, _ = smoke_site
    before = sorted(p.name for p in (root / "runs" / "mime").iterdir())
    messages = []
    site.build("smoke", log=messages.append)
    assert any(m.startswith("reusing finished run") for m in messages)
    assert sorted(p.name for p in (root / "runs" / "mime").iterdir()) == before


@pytest.mark.parametrize("mode", ["file", "http"])
def test_site_in_headless_chromium(smoke_site, mode):
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    _, html = smoke_site
    pages = discover_pages(html)
    res = check_site(html, pages, mode=mode)
    chapter = res["pages"]["book/chapters/mime.html"]
    assert chapter["images"] >= 4 and chapter["mjx_containers"] >= 5
    assert res["pages"]["book/intro.html"]["images"] == 0
    assert all(u.startswith(("file://", "http://127.0.0.1:", "data:", "blob:", "about:"))
               for u in res["requests"])


def test_site_check_flags_a_page_that_never_goes_idle(tmp_path):
    """The idle check can fail: a page polling a local file every 100 ms is reported, a still page is not."""
    (tmp_path / "data.txt").write_text("x")
    body = "<html><body><main><p>{}</p></main>{}</body></html>"
    (tmp_path / "still.html").write_text(body.format("still", ""))
    poll = "<script>setInterval(() => fetch('data.txt?' + Math.random()).catch(() => 0), 100)</script>"
    (tmp_path / "busy.html").write_text(body.format("busy", poll))
    res = check_site(tmp_path, ["still.html", "busy.html"], mode="http", idle_timeout_ms=1500, strict=False)
    assert [p for p in res["problems"] if p.startswith("busy.html: network not idle")], res["problems"]
    assert not [p for p in res["problems"] if p.startswith("still.html")], res["problems"]


def _jupyter_book(root):
    import subprocess
    import sys

    return subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(root)],
                          capture_output=True, text=True, cwd=root)


def test_plain_jupyter_book_build_works_after_fairbook_build(smoke_site):
    root, html = smoke_site
    proc = _jupyter_book(root)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (html / "book" / "chapters" / "mime.html").exists()


def test_plain_jupyter_book_build_on_a_fresh_checkout_says_what_to_run(tmp_path):
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "book", tmp_path / "book",
                    ignore=shutil.ignore_patterns("chapters", "reproducibility.md", "scorecard.md", "status.md"))
    proc = _jupyter_book(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "have not been executed" in out and "make book" in out


def test_chapter_pages_lead_with_the_argument(smoke_site):
    """No parameter dump at the top of a chapter: the injected-parameters cell is gone, the declared
    parameters are one folded block, and prose comes before the first code cell."""
    _, html = smoke_site
    for name in chapters.available():
        page = (html / "book" / "chapters" / f"{name}.html").read_text()
        body = page[page.index("<h1"):]
        assert "injected-parameters" not in body and "# Parameters" not in body, name
        assert "seed: int =" not in body, f"{name}: the parameters cell is shown as code"
        block = body.index("Parameters of this run")
        assert "<details" in body[max(0, block - 800):block], f"{name}: the parameters are not folded"
        first_code = body.find('class="cell docutils container"')
        assert 0 <= body.find("<p>") < first_code, f"{name}: the page does not start with prose"
        assert body.count("Parameters of this run") == 1
        assert "_static/fairbook.css" in page  # long code lines wrap
    assert (html / "_static" / "fairbook.css").exists()


def test_chapter_pages_as_a_reader_sees_them(smoke_site):
    """In Chromium at 1400 px: prose first, the parameters folded, plotting code folded with its
    figures shown, multi-panel figures wider than the text."""
    from sitecheck import chapter_layout

    _, html = smoke_site
    for name in chapters.available():
        lay = chapter_layout(html / "book" / "chapters" / f"{name}.html")
        assert lay["firstBlock"] == "p" and lay["proseBeforeCode"], (name, lay)
        assert lay["parametersFolded"], (name, lay)
        assert lay["foldedCells"] >= 2 and lay["foldedCodeShown"] == 0, (name, lay)
        assert lay["foldedOutputsShown"] >= 2, (name, lay)
        assert lay["wideCells"] and min(lay["wideCells"]) > 1.2, (name, lay)


def test_the_reader_check_sees_unfolded_code(smoke_site, tmp_path):
    """Negative control: the same page with its folds opened shows code the check must count."""
    from sitecheck import chapter_layout

    _, html = smoke_site
    page = (html / "book" / "chapters" / "gcm.html").read_text()
    opened = tmp_path / "book" / "chapters" / "gcm.html"
    shutil.copytree(html, tmp_path, dirs_exist_ok=True)
    opened.write_text(page.replace('<details class="admonition hide above-input"',
                                   '<details open class="admonition hide above-input"'))
    lay = chapter_layout(opened)
    assert lay["foldedCodeShown"] == lay["foldedCells"] > 0, lay
