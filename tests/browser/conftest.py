"""Fixtures every browser check shares: the built book, a local server for it, headless Chromium."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from bookinfo import ROOT
from headless import CHROMIUM
from headless import FLAGS as CHROMIUM_ARGS

if TYPE_CHECKING:
    from playwright.sync_api import Browser

PLAYWRIGHT = "playwright==1.65.2"
"""The pinned package (its own browsers are never installed: the system Chromium is used)."""
# (Playwright gives Chromium a fresh temporary --user-data-dir itself and deletes it on close;
# it refuses the flag in `args`.)
BUILD_COMMAND = (
    "STYLELIB_PROFILE=quick STYLELIB_ASSETS_DIR=../shared/assets "
    "jupyter-book build . --path-output _build/quick -W -n --keep-going"
)
DEFAULT_BOOK_HTML = "_build/quick/_build/html"

class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def book_html() -> Path:
    """The built book's HTML folder; fail (never skip) with the build command when missing."""
    folder = Path(os.environ.get("BOOK_HTML") or DEFAULT_BOOK_HTML)
    folder = folder if folder.is_absolute() else ROOT / folder
    if not (folder / "index.html").is_file():
        pytest.fail(
            f"No built book at {folder} (set BOOK_HTML to the HTML folder, default "
            f"{DEFAULT_BOOK_HTML}). Build it from the repository root with\n    {BUILD_COMMAND}\n"
            "or run the whole CI sequence: bash tests/run_all.sh",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def server(book_html: Path) -> Iterator[str]:
    """Serve the book from 127.0.0.1 on a free port, in a background thread."""
    handler = functools.partial(QuietHandler, directory=str(book_html))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="book-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless system Chromium driven by Playwright."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}. Install it with:\n"
            "    apt-get update && apt-get install -y chromium",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            f"The Python package Playwright is missing: pip install {PLAYWRIGHT} "
            "(never `playwright install`: the system Chromium is used).",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
