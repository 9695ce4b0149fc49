"""Browser checks of the built book: every page of ``_toc.yml`` opened in headless Chromium.

The HTML folder (``$BOOK_HTML``, default ``_build/quick/_build/html``, as ``tests/run_all.sh``
builds it) is served from 127.0.0.1 and each page is loaded once; the checks below read what
that visit recorded, so a failure names the page and the check. Per page: HTTP 200 for the
page and every local file it loads, a non-empty ``<h1>``, every local or ``data:`` image in the
article decoded, no error text or stderr/traceback block in the cell outputs, every internal
link answered, every static slider (``stylelib.widgets``) switching frame and label, and on
notebook chapters the Colab badge and launch button leading to this notebook. A full-page
screenshot of each page goes to ``_build/screenshots/<page>.png``.

Chromium resolves no host name but 127.0.0.1 (``--host-resolver-rules``), so CDN scripts fail
at once and the results are the same online and offline. Run (after building the book)::

    BOOK_HTML=_build/quick/_build/html python -m pytest -q tests/browser -p no:cacheprovider
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from bookinfo import COLAB, ROOT, notebook_colab_url, toc_pages
from headless import SCREENSHOTS, TIMEOUT_MS, VIEWPORT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request, Response


PAGES = toc_pages()
NOTEBOOK_PAGES = [page for page in PAGES if (ROOT / f"{page}.ipynb").is_file()]
ERROR_TEXTS = ("Error displaying widget", "Traceback (most recent call last)", "Error:")
COLAB_GITHUB = f"{COLAB}/github/"


# --------------------------------------------------------------------------- in-page scripts

# Everything the checks need from one loaded page, read in one round trip.
READ_PAGE_JS = """
async ([errorTexts, colabPrefix]) => {
  const article = document.querySelector("article.bd-article") || document.querySelector("article");
  const body = article || document.body;
  const h1 = body.querySelector("h1");
  let title = "";
  if (h1) {
    const copy = h1.cloneNode(true);
    copy.querySelectorAll(".headerlink").forEach((e) => e.remove());
    title = copy.textContent.trim();
  }
  // Local and data: images; lazy ones are made eager so that every image gets decoded.
  const imgs = [...body.querySelectorAll("img")].filter(
    (i) => !(i.getAttribute("src") || "").startsWith("http"));
  imgs.forEach((i) => { i.loading = "eager"; });
  const images = await Promise.all(imgs.map(async (i) => {
    try { await i.decode(); } catch (e) { /* naturalWidth stays 0 */ }
    return {src: i.getAttribute("src") || "", width: i.naturalWidth};
  }));
  const outputErrors = [];
  document.querySelectorAll(".cell_output").forEach((o) => {
    const text = o.innerText;
    for (const needle of errorTexts) {
      const at = text.indexOf(needle);
      if (at >= 0) outputErrors.push(text.slice(Math.max(0, at - 60), at + 120).trim());
    }
  });
  // A generated Markdown table that was not rendered shows its delimiter row as text.
  const rawTables = [...document.querySelectorAll(".cell_output")]
    .map((o) => o.innerText).filter((t) => /\\|\\s*(-{3,}|\u2014)\\s*\\|/.test(t))
    .map((t) => t.slice(0, 160));
  const errorBlocks = [...document.querySelectorAll(".output.stderr, .output.traceback")].map(
    (b) => b.className + ": " + b.innerText.slice(0, 200));
  // Internal links: no scheme (http:, mailto:, javascript: ...), not protocol-relative, not #.
  const links = [...document.querySelectorAll("a[href]")]
    .map((a) => a.getAttribute("href"))
    .filter((h) => h && !h.startsWith("#") && !h.startsWith("//")
                   && !/^[a-z][a-z0-9+.-]*:/i.test(h))
    .map((h) => { const u = new URL(h, location.href); u.hash = ""; return [h, u.href]; });
  const colab = [...document.querySelectorAll("a[href]")].filter(
    (a) => a.getAttribute("href").startsWith(colabPrefix));
  const inArticle = colab.filter((a) => article && article.contains(a));
  const firstCell = body.querySelector(".cell");
  const badgeFirst = inArticle.length > 0 && (!firstCell ||
    (inArticle[0].compareDocumentPosition(firstCell) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0);
  return {
    hasArticle: !!article, title, images, outputErrors, rawTables, errorBlocks, links,
    badges: inArticle.map((a) => a.getAttribute("href")),
    launch: colab.filter((a) => !inArticle.includes(a)).map((a) => a.getAttribute("href")),
    badgeFirst,
  };
}
"""

# Move every static slider through each of its values (as a reader dragging it would: set the
# value, fire `input`) and record the image and label shown, then put it back where it was.
SLIDERS_JS = """
async () => {
  const figures = [...document.querySelectorAll("figure")].filter(
    (f) => f.querySelector("input[type=range]"));
  const results = [];
  for (const [n, fig] of figures.entries()) {
    const range = fig.querySelector("input[type=range]");
    const img = fig.querySelector("img");
    const output = fig.querySelector("output");
    const fire = (v) => {
      range.value = String(v);
      range.dispatchEvent(new Event("input", {bubbles: true}));
    };
    const shown = async () => {
      let decoded = false;
      if (img) { try { await img.decode(); decoded = img.naturalWidth > 0; } catch (e) {} }
      return {value: range.value, src: img ? img.getAttribute("src") || "" : null,
              label: output ? output.textContent.trim() : null, decoded};
    };
    const start = await shown();
    const steps = [];
    const lo = Number(range.min || 0), hi = Number(range.max || 100);
    const step = Number(range.step || 1);
    for (let v = lo; v <= hi && steps.length < 1000; v += step) {
      fire(v);
      steps.push(await shown());
    }
    fire(start.value);
    results.push({name: fig.id || ("figure #" + (n + 1)), className: fig.className,
                  start, steps, back: await shown()});
  }
  return results;
}
"""


# Every <video> in the article: wait until it can play (or fails), note its duration and which
# source it chose, play it muted for about a second, and note how far its clock moved.
VIDEOS_JS = """
async () => {
  const videos = [...(document.querySelector("article") || document.body)
    .querySelectorAll("video")];
  const ready = (v) => new Promise((done) => {
    if (v.readyState >= 2) return done("ready");
    if (v.networkState === 3) return done("no source played");  // NETWORK_NO_SOURCE
    v.addEventListener("canplay", () => done("ready"), {once: true});
    v.addEventListener("error", () => done("error"), {once: true});
    const sources = v.querySelectorAll("source");  // a source's failure fires on it, not v
    if (sources.length) sources[sources.length - 1].addEventListener(
      "error", () => done("no source played"), {once: true});
    setTimeout(() => done("timeout"), 15000);
  });
  const results = [];
  for (const [n, v] of videos.entries()) {
    v.muted = true;
    v.scrollIntoView();
    const state = await ready(v);
    v.loop = false;  // a short clip would wrap round within the wait
    v.pause();
    v.currentTime = 0;
    const before = v.currentTime;
    let played = "";
    try {
      played = await Promise.race([v.play().then(() => ""),
        new Promise((r) => setTimeout(() => r("play() never settled"), 3000))]);
    } catch (e) { played = String(e); }
    await new Promise((r) => setTimeout(r, 1200));
    results.push({name: "video #" + (n + 1), state, duration: v.duration, before,
                  after: v.currentTime, source: (v.currentSrc || "").slice(0, 30), played,
                  error: v.error ? v.error.code : null});
    v.pause();
  }
  return results;
}
"""


def video_problems(video: dict[str, Any]) -> list[str]:
    """What is wrong with one video a page played (empty when it played)."""
    problems = []
    if video["state"] != "ready":
        problems.append(f"never became playable ({video['state']}, media error {video['error']})")
    if not (isinstance(video["duration"], (int, float)) and 0 < video["duration"] < 3600):
        problems.append(f"has no duration ({video['duration']!r})")
    if video["played"]:
        problems.append(f"refused to play: {video['played']}")
    if not video["after"] > video["before"]:
        problems.append(f"its time did not advance ({video['before']} -> {video['after']} s)")
    return problems


# --------------------------------------------------------------------------- what a visit records


@dataclass
class PageReport:
    """What one visit of a page found; each test asserts on one part of it."""

    page: str
    url: str
    status: int | None = None
    error: str = ""
    failed_resources: list[str] = field(default_factory=list)
    title: str = ""
    has_article: bool = False
    images: list[dict[str, Any]] = field(default_factory=list)
    output_errors: list[str] = field(default_factory=list)
    raw_tables: list[str] = field(default_factory=list)
    """Cell outputs showing Markdown table syntax as text instead of a rendered table."""
    error_blocks: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    badges: list[str] = field(default_factory=list)
    launch: list[str] = field(default_factory=list)
    badge_first: bool = False
    sliders: list[dict[str, Any]] = field(default_factory=list)
    videos: list[dict[str, Any]] = field(default_factory=list)
    js_errors: list[str] = field(default_factory=list)

    def require_loaded(self) -> None:
        if self.error or self.status != 200:
            problem = self.error or f"HTTP {self.status}"
            fail(self.page, f"the page did not load ({self.url}: {problem}); see test_page_loads")


def fail(page: str, message: str, details: list[str] | None = None) -> NoReturn:
    """Fail the current check with a message that names the page, and no Python traceback."""
    lines = "".join(f"\n    {line}" for line in details or [])
    pytest.fail(f"{page}: {message}{lines}", pytrace=False)


def short(text: str, limit: int = 90) -> str:
    """A data: URI or long text cut to a readable length for a failure message."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def visit(browser: Browser, base: str, page_name: str) -> PageReport:
    """Load one page, read everything the checks need, save its screenshot, try its sliders."""
    report = PageReport(page=page_name, url=f"{base}/{page_name}.html")
    page: Page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda error: report.js_errors.append(str(error)))
    failures: list[str] = []  # local files that failed; read before closing the page

    def on_response(response: Response) -> None:
        if response.url.startswith(base) and response.status >= 400:
            failures.append(f"HTTP {response.status} {response.url}")

    def on_request_failed(request: Request) -> None:
        if request.url.startswith(base):
            failures.append(f"{request.failure} {request.url}")

    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    try:
        response = page.goto(report.url, wait_until="load")
        report.status = response.status if response is not None else None
        data = page.evaluate(READ_PAGE_JS, [list(ERROR_TEXTS), COLAB_GITHUB])
        report.has_article = data["hasArticle"]
        report.title = data["title"]
        report.images = data["images"]
        report.output_errors = data["outputErrors"]
        report.raw_tables = data["rawTables"]
        report.error_blocks = data["errorBlocks"]
        report.links = [(href, url) for href, url in data["links"]]
        report.badges = data["badges"]
        report.launch = data["launch"]
        report.badge_first = data["badgeFirst"]
        shot = SCREENSHOTS / f"{page_name}.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=shot, full_page=True)
        report.sliders = page.evaluate(SLIDERS_JS)
        report.videos = page.evaluate(VIDEOS_JS)
        report.failed_resources = list(failures)
    except Exception as error:  # a timeout or a crashed page: recorded, reported per page
        report.error = f"{type(error).__name__}: {error}"
    finally:
        page.close()
    return report


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def report_of(browser: Browser, server: str) -> Callable[[str], PageReport]:
    """``report_of(page)``: the page's visit, made on first use and then reused by every check."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # only this run's pages, none left over
    reports: dict[str, PageReport] = {}

    def report(page: str) -> PageReport:
        if page not in reports:
            reports[page] = visit(browser, server, page)
        return reports[page]

    return report


@pytest.fixture(scope="session")
def link_status() -> Callable[[str], str]:
    """``link_status(url)``: "" when the local server answers 200, else what went wrong (cached)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    seen: dict[str, str] = {}

    def status(url: str) -> str:
        if url not in seen:
            try:
                with opener.open(urllib.request.Request(url, method="HEAD"), timeout=10) as r:
                    seen[url] = "" if r.status == 200 else f"HTTP {r.status}"
            except urllib.error.HTTPError as error:
                seen[url] = f"HTTP {error.code}"
            except OSError as error:
                seen[url] = str(error)
        return seen[url]

    return status


# --------------------------------------------------------------------------- self-tests


def test_page_list_covers_the_book() -> None:
    """The checks below are parametrised by this list: it must not be empty or miss a chapter."""
    assert PAGES, "_toc.yml lists no pages"
    for page in ("book/intro", "book/how_to_run", "book/glossary", "book/references"):
        assert page in PAGES, f"{page} is missing from the pages read from _toc.yml: {PAGES}"
    for chapter in ("notebooks/02_gram_matrices", "notebooks/03_gatys"):
        if (ROOT / f"{chapter}.ipynb").is_file():
            assert chapter in PAGES
            assert chapter in NOTEBOOK_PAGES
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        entry = notebook.relative_to(ROOT).with_suffix("").as_posix()
        assert entry in NOTEBOOK_PAGES, f"{entry}.ipynb is not a page of _toc.yml"


def evaluate_on_each(browser: Browser, markups: list[str], script: str) -> list[Any]:
    """Run ``script`` on a blank page holding each piece of ``markups`` in turn and collect
    what it returns (a list per page): the self-tests' way to try a check on known markup."""
    page = browser.new_page()
    try:
        found: list[Any] = []
        for markup in markups:
            page.set_content(f"<!doctype html><body>{markup}</body>")
            found.extend(page.evaluate(script))
    finally:
        page.close()
    return found


def test_slider_check_catches_a_dead_slider(browser: Browser) -> None:
    """The slider check passes on a real stylelib slider and fails when its script is gone."""
    from PIL import Image

    from stylelib.widgets import frame_slider

    frames = [Image.new("RGB", (8, 6), (60 * i, 90, 200 - 60 * i)) for i in range(3)]
    live = frame_slider([1, 10, 100], frames, label="weight").html
    dead = live[: live.index("<script>")] + "</figure>"
    found = evaluate_on_each(browser, [live, dead], SLIDERS_JS)
    assert len(found) == 2
    assert slider_problems(found[0]) == []
    assert slider_problems(found[1]), "a slider whose script is gone must be reported"


def test_video_check_catches_a_video_that_does_not_play(browser: Browser) -> None:
    """The video check passes on a clip from stylelib.video.embed and fails on a broken one."""
    import torch

    from stylelib.video import embed

    frames = [torch.full((1, 3, 32, 48), i / 12) for i in range(12)]
    good = embed(frames, 12, caption="grey ramp")
    broken = good.replace("base64,", "base64,AAAA", 2)  # both video sources damaged
    found = evaluate_on_each(browser, [good, broken], VIDEOS_JS)
    assert len(found) == 2
    assert video_problems(found[0]) == []
    assert video_problems(found[1]), "a video that cannot be decoded must be reported"


# --------------------------------------------------------------------------- every page


@pytest.mark.parametrize("page", PAGES)
def test_page_loads(page: str, report_of: Callable[[str], PageReport]) -> None:
    report = report_of(page)
    if report.error:
        fail(page, f"{report.url}: {report.error}")
    if report.status != 200:
        fail(page, f"{report.url} answered HTTP {report.status}")
    if report.failed_resources:
        fail(page, "local files the page loads failed", report.failed_resources)


@pytest.mark.parametrize("page", PAGES)
def test_page_has_a_title(page: str, report_of: Callable[[str], PageReport]) -> None:
    report = report_of(page)
    report.require_loaded()
    if not report.has_article:
        fail(page, "the page has no <article> (not a book page?)")
    if not report.title:
        fail(page, "the article's <h1> is missing or empty")


@pytest.mark.parametrize("page", PAGES)
def test_images_are_decoded(page: str, report_of: Callable[[str], PageReport]) -> None:
    report = report_of(page)
    report.require_loaded()
    broken = [short(image["src"]) for image in report.images if image["width"] <= 0]
    if broken:
        fail(page, f"{len(broken)} of {len(report.images)} images did not decode", broken)


@pytest.mark.parametrize("page", PAGES)
def test_cell_outputs_show_no_errors(page: str, report_of: Callable[[str], PageReport]) -> None:
    report = report_of(page)
    report.require_loaded()
    found = [f"block {block}" for block in report.error_blocks]
    found += [f"text {text!r}" for text in report.output_errors]
    if found:
        fail(page, "errors in the cell outputs (stderr/traceback blocks or error text)", found)


@pytest.mark.parametrize("page", PAGES)
def test_generated_tables_are_rendered(page: str, report_of: Callable[[str], PageReport]) -> None:
    report = report_of(page)
    report.require_loaded()
    if report.raw_tables:
        fail(page, "Markdown tables printed by cells show as text, not as tables",
             report.raw_tables)


@pytest.mark.parametrize("page", PAGES)
def test_internal_links_resolve(
    page: str, report_of: Callable[[str], PageReport], link_status: Callable[[str], str]
) -> None:
    report = report_of(page)
    report.require_loaded()
    broken: dict[str, str] = {}  # one line per missing file, naming the first link to it
    for href, url in report.links:
        problem = link_status(url)
        if problem and url not in broken:
            broken[url] = f"{href} -> {url}: {problem}"
    if broken:
        fail(page, f"{len(broken)} internal links lead nowhere", list(broken.values()))


def makes_a_slider(notebook: Path) -> bool:
    """Whether a code cell of ``notebook`` (if it exists) calls ``frame_slider``."""
    if not notebook.is_file():
        return False
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    code = ["".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code"]
    return any("frame_slider(" in source for source in code)


def slider_problems(slider: dict[str, Any]) -> list[str]:
    """What is wrong with one slider's recorded run through its values (empty when it works)."""
    steps = slider["steps"]
    problems = []
    if len(steps) < 2:
        problems.append(f"{len(steps)} values: a slider needs at least 2")
    srcs = [s["src"] for s in steps]
    labels = [s["label"] for s in steps]
    if None in srcs:
        problems.append("no <img> inside the figure")
    elif len(set(srcs)) != len(srcs) or "" in srcs:
        problems.append(
            f"the image does not change with the value: {len(set(srcs))} distinct src "
            f"for {len(srcs)} values"
        )
    if None in labels:
        problems.append("no <output> inside the figure")
    elif len(set(labels)) != len(labels) or "" in labels:
        problems.append(f"the <output> label does not follow the value: {labels}")
    if not all(s["decoded"] for s in steps):
        problems.append(f"frames that do not decode at values {[s['value'] for s in steps]}")
    start, back = slider["start"], slider["back"]
    if (back["src"], back["label"]) != (start["src"], start["label"]):
        problems.append("moving back to the starting value does not restore its frame and label")
    return problems


@pytest.mark.parametrize("page", PAGES)
def test_sliders_switch_frames(page: str, report_of: Callable[[str], PageReport]) -> None:
    report = report_of(page)
    report.require_loaded()
    if makes_a_slider(ROOT / f"{page}.ipynb") and not report.sliders:
        fail(
            page,
            "the notebook makes a frame_slider but the page has no static slider "
            "(did the widget view outrank text/html in nb_mime_priority_overrides?)",
        )
    problems = [
        f"{slider['name']}: {problem}"
        for slider in report.sliders
        for problem in slider_problems(slider)
    ]
    if problems:
        fail(
            page,
            "static sliders that do not work",
            problems + [f"JavaScript error: {e}" for e in report.js_errors],
        )


@pytest.mark.parametrize("page", PAGES)
def test_videos_play(page: str, report_of: Callable[[str], PageReport]) -> None:
    """Each video has a duration and its time advances when played; a notebook that embeds
    clips (``video.embed``) must have videos on its page."""
    report = report_of(page)
    report.require_loaded()
    notebook = ROOT / f"{page}.ipynb"
    if notebook.is_file() and "embed(" in notebook.read_text(encoding="utf-8") \
            and not report.videos:
        fail(page, "the notebook embeds clips but the page has no <video>")
    problems = [f"{video['name']}: {problem}" for video in report.videos
                for problem in video_problems(video)]
    if problems:
        fail(page, "videos that do not play", problems + report.js_errors)


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_colab_badge_and_launch_button(page: str, report_of: Callable[[str], PageReport]) -> None:
    report = report_of(page)
    report.require_loaded()
    expected = notebook_colab_url(f"{page}.ipynb")
    if not report.badges:
        fail(page, "no Open-in-Colab badge link in the article")
    if not report.badge_first:
        fail(page, "the Colab badge must come before the first code cell")
    if set(report.badges) != {expected}:
        fail(page, f"the Colab badge must lead to {expected}, not", report.badges)
    if not report.launch:
        fail(page, "no Colab launch button (repository and launch_buttons in _config.yml?)")
    if set(report.launch) != {expected}:
        fail(page, f"the Colab launch button must lead to {expected}, not", report.launch)
