"""Headless-browser check of the built Jupyter Book site, as a reader would see it.

Checks, for every page, with Debian's /usr/bin/chromium driven by Playwright:

* the page loads (no navigation error, no uncaught JS exception, no failed
  local sub-resource such as a missing _static file or MathJax font);
* every <img> in the article is complete and decoded (naturalWidth > 0);
* math is typeset: when the page contains Sphinx math nodes (``.math``),
  ``MathJax.startup.promise`` resolves, every ``.math`` node contains an
  ``mjx-container``, there is no ``mjx-merror`` and no MathJax font failed;
* nothing leaves the machine: every request is recorded (``page.on("request")``)
  and, independently, every request goes through ``context.route`` which only
  lets through URLs inside the built site (file://<html_dir>/... or the
  127.0.0.1 test server) and aborts everything else. Any such attempt is a
  failure, even though it was blocked.

Pages are served two ways (the test is parametrised over both):

* ``file``: file:// URLs. This works with MathJax 3 (its CHTML woff fonts load
  fine from file:// in Chromium, and file:// requests are visible to
  page.route), and needs no port.
* ``http``: a ThreadingHTTPServer on 127.0.0.1:<ephemeral port> in a daemon
  thread, which is how the site is really consumed (relative URLs, MIME types,
  HTTP status codes for missing files).

Environment: FAIRBOOK_CHROMIUM, the browser binary (default: /usr/bin/chromium,
Debian's package, installed by `make test`). Never `playwright install`: the
system browser is used through executable_path.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit


CHROMIUM = Path(os.environ.get("FAIRBOOK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Schemes that never touch the network.
_INERT_SCHEMES = ("data:", "blob:", "about:")
_REDIRECT_RE = re.compile(r'<meta[^>]+http-equiv="refresh"', re.I)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@contextmanager
def _local_server(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def discover_pages(html_dir: Path) -> list[str]:
    """All built HTML pages (relative paths), excluding theme assets and
    redirect stubs such as the index.html that Jupyter Book writes."""
    pages = []
    for p in sorted(html_dir.rglob("*.html")):
        rel = p.relative_to(html_dir)
        if rel.parts[0] in ("_static", "_sources", "_images"):
            continue
        if _REDIRECT_RE.search(p.read_text(encoding="utf-8", errors="replace")[:4096]):
            continue
        pages.append(rel.as_posix())
    return pages


# JS run in the page after load. Returns facts; Python decides what is a problem.
_INSPECT_JS = """
async ({timeoutMs}) => {
  const withTimeout = (p, what) => Promise.race([
    p, new Promise((_, rej) => setTimeout(() => rej(new Error(what + ' timed out')), timeoutMs))]);
  const out = {imgs: [], mathNodes: 0, mathTypeset: 0, mjx: 0, merror: 0,
               mathjax: false, mathjaxError: null, badFonts: [], hasArticle: false};

  // ---- images (inside the article; whole body as a fallback)
  const article = document.querySelector('article, [role="main"], main');
  out.hasArticle = !!article;
  const imgs = [...(article || document.body).querySelectorAll('img')];
  for (const img of imgs) {
    if (img.loading === 'lazy') img.loading = 'eager';   // off-screen lazy images
    let decodeError = null;
    try { await withTimeout(img.decode(), 'decode ' + img.src); }
    catch (e) { decodeError = String(e); }
    out.imgs.push({src: img.currentSrc || img.src, complete: img.complete,
                   naturalWidth: img.naturalWidth, decodeError});
  }

  // ---- math
  const mathNodes = () => [...document.querySelectorAll('.math')];
  out.mathNodes = mathNodes().length;
  if (out.mathNodes > 0 || window.MathJax) {
    try {
      // We run after the 'load' event, so defer/async <script>s have already run
      // (or failed); allow a short grace period for loaders, then give up fast.
      const t0 = performance.now();
      while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
        if (performance.now() - t0 > Math.min(2000, timeoutMs))
          throw new Error('MathJax never loaded (MathJax.startup missing after load)');
        await new Promise(r => setTimeout(r, 25));
      }
      out.mathjax = true;
      await withTimeout(MathJax.startup.promise, 'MathJax.startup.promise');
      await withTimeout(document.fonts.ready, 'document.fonts.ready');
    } catch (e) { out.mathjaxError = String(e); }
  }
  out.mathTypeset = mathNodes().filter(n => n.querySelector('mjx-container')).length;
  out.mjx = document.querySelectorAll('mjx-container').length;
  out.merror = document.querySelectorAll('mjx-merror').length;
  out.badFonts = [...document.fonts].filter(f => f.status === 'error')
                                    .map(f => f.family);
  return out;
}
"""


def check_site(
    html_dir: Path,
    pages: list[str],
    *,
    mode: str = "file",
    chromium: Path = CHROMIUM,
    timeout_ms: int = 15_000,
    idle_timeout_ms: int = 20_000,
    concurrency: int = 2,
    strict: bool = True,
) -> dict:
    """Open every page of a built site in headless Chromium and check it.

    ``pages`` are paths relative to ``html_dir`` (e.g. "intro.html").
    ``mode`` is "file" (file:// URLs) or "http" (127.0.0.1 server thread).
    Up to ``concurrency`` pages are loaded at the same time (one tab each).
    The defaults leave room for a loaded 2-core CI machine: a 5 s idle wait
    with 4 tabs once timed out there on a page that is idle in ~0.3 s here.

    Returns a dict with per-page facts, all recorded requests, blocked
    requests, problems and timings. With ``strict`` (default) raises
    AssertionError listing *all* problems at the end, so one run shows
    everything that is wrong.
    """
    from playwright.sync_api import sync_playwright

    if mode not in ("file", "http"):
        raise ValueError(f"mode must be 'file' or 'http', not {mode!r}")
    html_dir = Path(html_dir).resolve()
    assert html_dir.is_dir(), f"{html_dir} does not exist - build the book first"
    t_start = time.perf_counter()
    result: dict = {
        "mode": mode,
        "html_dir": str(html_dir),
        "pages": {},
        "requests": [],
        "blocked": [],
        "problems": [],
        "timings": {},
    }
    problems: list[str] = result["problems"]

    with _local_server(html_dir) if mode == "http" else _nullctx() as server_url:
        base = server_url if mode == "http" else html_dir.as_uri() + "/"

        def allowed(url: str) -> bool:
            if url.startswith(_INERT_SCHEMES):
                return True
            if mode == "file":
                if not url.startswith("file://"):
                    return False
                path = Path(unquote(urlsplit(url).path)).resolve()
                return path == html_dir or html_dir in path.parents
            return url.startswith(base)

        def route_handler(route):
            url = route.request.url
            if allowed(url):
                route.continue_()
            else:
                result["blocked"].append(url)
                route.abort("blockedbyclient")

        with sync_playwright() as pw:
            t0 = time.perf_counter()
            browser = pw.chromium.launch(
                executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
            )
            result["timings"]["launch_s"] = round(time.perf_counter() - t0, 3)
            try:
                context = browser.new_context(service_workers="block")
                context.set_default_timeout(timeout_ms)
                context.route("**/*", route_handler)  # nothing un-allowed leaves
                for i in range(0, len(pages), max(1, concurrency)):
                    batch = [_PageCheck(context, base, rel, allowed)
                             for rel in pages[i:i + max(1, concurrency)]]
                    for pc in batch:          # start all navigations ...
                        pc.start()
                    for pc in batch:          # ... then inspect them one by one
                        pc.finish(timeout_ms, idle_timeout_ms)
                        result["pages"][pc.rel] = pc.info
                        result["requests"].extend(pc.requests)
                        problems.extend(f"{pc.rel}: {p}" for p in pc.problems)
                context.close()
            finally:
                browser.close()

    for url in sorted(set(result["blocked"])):
        problems.append(f"request to non-local URL was attempted (blocked): {url}")
    result["timings"]["total_s"] = round(time.perf_counter() - t_start, 3)
    if strict:
        assert not problems, (
            f"{len(problems)} problem(s) in {html_dir} [{mode}]:\n  " + "\n  ".join(problems)
        )
    return result


@contextmanager
def _nullctx():
    yield None


class _PageCheck:
    """One tab: records its requests/errors, then inspects the loaded page."""

    def __init__(self, context, base, rel, allowed):
        self.rel, self.allowed = rel, allowed
        self.url = base + rel
        self.info: dict = {"url": self.url}
        self.problems: list[str] = []
        self.requests: list[str] = []
        self._failed: list[str] = []
        self._bad_status: list[str] = []
        self._js_errors: list[str] = []
        self._pending: dict = {}  # request -> url, until it finishes or fails
        self.page = page = context.new_page()
        page.on("request", self._on_request)
        page.on("requestfinished", lambda r: self._pending.pop(r, None))
        page.on("websocket", lambda ws: self.requests.append(ws.url))
        page.on("requestfailed", self._on_failed)
        page.on("response", lambda r: self._bad_status.append(f"{r.status} {r.url}")
                if r.status >= 400 else None)
        page.on("pageerror", lambda e: self._js_errors.append(str(e)))

    def _on_request(self, request):
        self.requests.append(request.url)
        self._pending[request] = request.url

    def _on_failed(self, request):
        self._pending.pop(request, None)
        if self.allowed(request.url):  # non-local ones are reported as blocked
            self._failed.append(f"{request.url} ({request.failure})")

    def start(self):
        from playwright.sync_api import Error as PlaywrightError

        self._t0 = time.perf_counter()
        try:
            resp = self.page.goto(self.url, wait_until="commit")
            if resp is not None and resp.status >= 400:
                self.problems.append(f"HTTP {resp.status}")
        except PlaywrightError as e:
            self.problems.append(f"navigation failed: {e.message.splitlines()[0]}")

    def finish(self, timeout_ms, idle_timeout_ms):
        from playwright.sync_api import Error as PlaywrightError

        page, probs, facts = self.page, self.problems, None
        if not probs:
            try:
                page.wait_for_load_state("load")
                self.info["load_s"] = round(time.perf_counter() - self._t0, 3)
                facts = page.evaluate(_INSPECT_JS, {"timeoutMs": timeout_ms})
                # Let late requests (analytics, lazy loaders, fonts...) show up.
                # Playwright's "networkidle" (no connection for 500 ms) can miss its window on a
                # loaded machine; the page's own request log decides: a request still open, or
                # requests still being made at the end of the wait, is a problem.
                try:
                    page.wait_for_load_state("networkidle", timeout=idle_timeout_ms)
                except PlaywrightError:
                    seen = len(self.requests)
                    page.wait_for_timeout(2000)
                    late = self.requests[seen:]
                    self.info["networkidle_missed"] = True
                    if self._pending:
                        probs.append(f"network not idle after {idle_timeout_ms} ms: "
                                     f"{len(self._pending)} request(s) still open: "
                                     f"{sorted(set(self._pending.values()))[:5]}")
                    elif late:
                        probs.append(f"network not idle after {idle_timeout_ms} ms: {len(late)} "
                                     f"request(s) made in the 2 s after it: {sorted(set(late))[:5]}")
            except PlaywrightError as e:
                probs.append(f"failed to load/inspect: {e.message.splitlines()[0]}")
        self.info["check_s"] = round(time.perf_counter() - self._t0, 3)
        self.info["final_url"] = page.url
        page.close()

        if facts is not None:
            self.info.update(
                images=len(facts["imgs"]),
                math_nodes=facts["mathNodes"],
                math_typeset=facts["mathTypeset"],
                mjx_containers=facts["mjx"],
            )
            if not facts["hasArticle"]:
                probs.append("no <article>/<main> element found")
            for img in facts["imgs"]:
                if not img["complete"] or img["naturalWidth"] <= 0 or img["decodeError"]:
                    probs.append(f"image not loaded/decoded: {img}")
            if facts["mathNodes"]:
                if not facts["mathjax"] or facts["mathjaxError"]:
                    probs.append(f"MathJax did not start: {facts['mathjaxError']}")
                if facts["mjx"] == 0 or facts["mathTypeset"] < facts["mathNodes"]:
                    probs.append(
                        f"math not typeset: {facts['mathTypeset']}/{facts['mathNodes']} "
                        f".math nodes contain mjx-container ({facts['mjx']} in total)"
                    )
            if facts["merror"]:
                probs.append(f"{facts['merror']} MathJax error node(s) (mjx-merror)")
            if facts["badFonts"]:
                probs.append(f"fonts failed to load: {sorted(set(facts['badFonts']))}")
        probs += [f"local request failed: {u}" for u in self._failed]
        probs += [f"bad HTTP status: {s}" for s in self._bad_status]
        probs += [f"uncaught JS error: {e}" for e in self._js_errors]
        probs += [f"non-local request: {u}" for u in self.requests if not self.allowed(u)]
        self.info["requests"] = len(self.requests)


_LAYOUT_JS = r"""
() => {
  const shown = el => { const r = el.getBoundingClientRect();  // checkVisibility: false inside a closed <details>
    return el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}) && r.width > 0 && r.height > 0; };
  const h1 = document.querySelector("article.bd-article h1") || document.querySelector("article h1");
  const section = h1.closest("section") || h1.parentElement;
  const blocks = [...section.querySelectorAll(":scope > *")].filter(el => el !== h1 && shown(el));
  const first = blocks.length ? blocks[0] : null;
  const codes = [...document.querySelectorAll("div.cell_input")].filter(shown);
  const firstCode = codes.length ? codes[0] : null;
  const paras = [...section.querySelectorAll("p")].filter(shown);
  const proseFirst = !!(paras.length && (!firstCode ||
      (paras[0].compareDocumentPosition(firstCode) & Node.DOCUMENT_POSITION_FOLLOWING)));
  const params = [...document.querySelectorAll("details")].find(d => d.textContent.includes("Parameters of this run"));
  const folded = [...document.querySelectorAll("div.cell.tag_hide-input")];
  const text = paras.length ? paras[0].getBoundingClientRect().width : 0;
  return {
    firstBlock: first ? first.tagName.toLowerCase() + (first.className ? "." + first.className.split(" ")[0] : "") : null,
    proseBeforeCode: proseFirst,
    parametersFolded: !!params && !params.open && ![...params.querySelectorAll("table")].some(shown),
    foldedCells: folded.length,
    foldedCodeShown: folded.filter(c => { const i = c.querySelector("div.cell_input"); return i && shown(i); }).length,
    foldedOutputsShown: folded.filter(c => [...c.querySelectorAll("div.cell_output img")].some(shown)).length,
    wideCells: [...document.querySelectorAll("div.cell.tag_full-width")].map(c => c.getBoundingClientRect().width / text),
  };
}
"""


def chapter_layout(html_file: Path, *, chromium: Path = CHROMIUM, width: int = 1400) -> dict:
    """What a reader sees of a chapter page in a ``width``-pixel window: the first block under the
    title, whether prose comes before the first visible code, whether the parameters block is
    folded, how many cells have folded code (``foldedCodeShown``: how many of those show it anyway;
    ``foldedOutputsShown``: how many still show their figure) and the width of each ``full-width``
    cell relative to a paragraph of text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file://", *_INERT_SCHEMES))
                       else r.abort("blockedbyclient"))
            page.goto(Path(html_file).resolve().as_uri(), wait_until="load")
            return page.evaluate(_LAYOUT_JS)
        finally:
            browser.close()
