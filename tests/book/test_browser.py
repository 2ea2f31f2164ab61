"""Open the built book in headless Chromium and check that it is a real book, fully offline.

Needs ``_build/html`` (``make book``) and Debian's ``chromium``; Playwright drives it (never
``playwright install``). Skips when chromium is absent; when the book is not built it skips too, unless
``REIDLIB_REQUIRE_BOOK=1`` (``make browser-test``), where it fails. Screenshots go to
``_build/screenshots/`` for a human to look at.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HTML = REPO / "_build" / "html"
SHOTS = REPO / "_build" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_SCHEMES = ("data:", "blob:", "about:")

sys.path.insert(0, str(REPO / "book" / "tools"))


def _chromium() -> str | None:
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _chapter_pages() -> list[str]:
    """Every chapter notebook in the toc, or the protocol page while no chapter exists."""
    from toc_files import toc_documents

    docs = toc_documents(REPO)
    chapters = [d for d in docs if d.parts[0] == "notebooks"] or [Path("book/protocol")]
    return [c.with_suffix(".html").as_posix() for c in chapters]


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").is_file():
        if os.environ.get("REIDLIB_REQUIRE_BOOK") == "1":
            pytest.fail(f"no built book at {HTML} (run `make book` first)")
        pytest.skip(f"book not built at {HTML}; run `make book` (make browser-test requires it)")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


def _open(browser, server: str, page_path: str, shot_name: str):
    """Load a page, wait for MathJax, take a full-page screenshot; returns (page, requests, errors)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = page.goto(f"{server}/{page_path}", wait_until="load")
    assert response is not None and response.ok, f"{page_path}: HTTP {response.status if response else '?'}"
    page.wait_for_load_state("networkidle")
    page.evaluate("async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }")
    page.evaluate("async () => Promise.all([...document.images].map(i => i.decode().catch(() => null)))")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{shot_name}.png"), full_page=True)
    return page, requests, errors


def _assert_offline(server: str, requests: list[str]) -> None:
    outside = [u for u in requests if not (u.startswith(server) or u.startswith(LOCAL_SCHEMES))]
    assert not outside, f"the page requested things outside the machine: {outside}"


def _assert_theme_and_sidebar(page) -> None:
    sheets = page.evaluate("[...document.styleSheets].map(s => s.href || '')")
    assert any("sphinx-book-theme" in s for s in sheets), f"book theme stylesheet not loaded: {sheets}"
    sidebar = page.locator(".bd-sidebar-primary")
    assert sidebar.count() == 1 and sidebar.is_visible(), "primary sidebar missing or hidden"
    links = sidebar.locator("nav a.reference.internal")
    assert links.count() >= 5, f"sidebar has {links.count()} links, expected the whole table of contents"
    captions = [t.strip() for t in sidebar.locator("p.caption").all_inner_texts()]
    for caption in ("Getting started", "Results", "Reference"):
        assert any(caption.lower() == c.lower() for c in captions), (
            f"sidebar caption {caption!r} missing: {captions}"
        )


def _assert_figures(page) -> None:
    images = page.locator("article img")
    assert images.count() >= 1, "no figures on the page"
    sizes = page.evaluate("[...document.querySelectorAll('article img')].map(i => [i.src, i.naturalWidth])")
    broken = [src[:80] for src, width in sizes if not width]
    assert not broken, f"images that did not decode: {broken}"


def _assert_tables(page) -> None:
    tables = page.locator("article table")
    assert tables.count() >= 1, "no tables on the page"
    assert tables.first.locator("tr").count() >= 2, "first table has no data rows"


def _assert_math(page) -> None:
    typeset = page.locator("mjx-container")
    assert typeset.count() >= 1, "no typeset math (MathJax did not run)"
    raw = page.evaluate(
        "[...document.querySelectorAll('.math')].filter(m => !m.querySelector('mjx-container')).length"
    )
    assert raw == 0, f"{raw} formulas left untypeset"


def test_intro_page(browser, server):
    page, requests, errors = _open(browser, server, "book/intro.html", "intro")
    assert page.locator("article h1").first.inner_text().strip(), "intro has no title"
    _assert_theme_and_sidebar(page)
    _assert_tables(page)
    assert not errors, f"JavaScript errors: {errors}"
    _assert_offline(server, requests)
    page.close()


def test_index_redirects_to_intro(browser, server):
    page = browser.new_page()
    page.goto(f"{server}/index.html", wait_until="load")
    page.wait_for_url("**/book/intro.html")
    page.close()


@pytest.mark.parametrize("path", _chapter_pages())
def test_chapter_page(browser, server, path):
    page, requests, errors = _open(browser, server, path, Path(path).stem)
    _assert_theme_and_sidebar(page)
    _assert_figures(page)
    _assert_tables(page)
    _assert_math(page)
    assert not errors, f"JavaScript errors: {errors}"
    _assert_offline(server, requests)
    page.close()


@pytest.mark.parametrize("path", ["book/claims_ledger.html", "book/results_overview.html"])
def test_results_pages(browser, server, path):
    page, requests, errors = _open(browser, server, path, Path(path).stem)
    _assert_theme_and_sidebar(page)
    _assert_tables(page)
    assert not errors, f"JavaScript errors: {errors}"
    _assert_offline(server, requests)
    page.close()


def test_api_reference(browser, server):
    page, requests, errors = _open(browser, server, "book/api/reidlib.results.html", "api_reidlib_results")
    _assert_theme_and_sidebar(page)
    documented = page.locator("article dl.py.function, article dl.py.class").count()
    assert documented >= 5, f"the API page documents {documented} functions/classes; autodoc did not run?"
    assert page.locator("article dl.py.function dt#reidlib\\.results\\.store\\.save_run").count() == 1
    assert not errors, f"JavaScript errors: {errors}"
    _assert_offline(server, requests)
    page.close()
