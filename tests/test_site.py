"""The smoke book: built with warnings as errors, then opened in headless Chromium."""
import shutil
from pathlib import Path

import pytest

from fairbook import chapters, site
from sitecheck import CHROMIUM, check_site, discover_pages

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copytree(REPO / "book", root / "book",
                    ignore=shutil.ignore_patterns("chapters", "reproducibility.md", "scorecard.md"))
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
