"""The try-it panels of chapters 4 and 5 in headless Chromium (``stylelib.tryit``, ``tryit.js``).

A local photo goes into a panel's file input and its button is pressed; the painted canvas is
compared with what PyTorch computes from the very pixels the page gave its network (read back
from the panel's input and painting canvases), so the only differences left are ONNX Runtime's
arithmetic and the canvas's rounding to 8 bits. Nothing of the panel's downloads may be
requested before the button is pressed. Timings are taken in the page (``performance.now()``)
and printed; screenshots go to ``_build/screenshots/tryit_*.png``. Run after building the book::

    BOOK_HTML=_build/quick/_build/html python -m pytest -q tests/browser/test_tryit.py -s
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from headless import CHROMIUM, SCREENSHOTS, VIEWPORT, WEBGPU_FLAGS
from PIL import Image

from stylelib import adain, assets, bundled, fast, precision, tryit

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TOLERANCE = 1 / 255
"""Largest mean absolute difference from PyTorch, per colour value in [0, 1].

The canvas rounds every value to a multiple of 1/255: a mean error of 0.25/255 for values spread
evenly between the steps. Float32 convolutions summed in another order (WebAssembly SIMD against
oneDNN) differ by about 1e-6 relative, far below a step. Measured: 0.25/255 for both panels at
both sizes, rounding alone. A real mistake is far above the bar: swapped colour channels, a
missing preprocessing step, a wrong alpha or a resampled input each change the picture by
10/255 or more on average.
"""
CHANGED = 10 / 255
"""Least mean absolute difference that counts as a different picture (ten times the tolerance)."""
PHOTO = "tubingen"
STYLE = "starry_night"
RUN_TIMEOUT_MS = 600_000
"""A first run downloads 42 MB and runs VGG on 2 busy cores: minutes, not seconds."""
PAGE_TIMEOUT_MS = 120_000
"""Longest wait for loading a chapter or one step of the form (2 cores, shared with training)."""
PANEL_FILES = "/_static/tryit/"


@pytest.fixture(scope="module")
def photo_file(mirror_dir: Path) -> Iterator[Path]:
    """The photo the reader picks, from the asset mirror."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STYLELIB_ASSETS_DIR", str(mirror_dir))
        yield assets.fetch(PHOTO)


@pytest.fixture(scope="module")
def adain_model(mirror_dir: Path) -> adain.AdaIN:
    """The bundled decoder with its encoder (whose weights come through the mirror)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STYLELIB_ASSETS_DIR", str(mirror_dir))
        return adain.pretrained()


def open_chapter(browser: Browser, server: str, chapter: str, *, init: str = "") -> tuple[
        Page, list[str]]:
    """Open a chapter; returns the page and the list of every URL it requests from now on."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    if init:
        page.add_init_script(init)
    page.goto(f"{server}/notebooks/{chapter}.html", wait_until="load")
    return page, requested


def press(page: Page, photo: Path | dict[str, Any], side: int = 256, **choices: str) -> str:
    """Choose the photo, the side and any drop-down value, press the button, wait; the state."""
    panel = page.locator(".tryit")
    panel.locator('input[name="photo"]').set_input_files(photo)
    panel.locator('select[name="side"]').select_option(str(side))
    for name, value in choices.items():
        panel.locator(f'select[name="{name}"]').select_option(value)
    panel.locator('button[name="run"]').click()
    page.wait_for_function(
        "() => ['done', 'error'].includes(document.querySelector('.tryit').dataset.state)",
        timeout=RUN_TIMEOUT_MS)
    return str(panel.get_attribute("data-state"))


def status(page: Page) -> str:
    return page.locator(".tryit-status").inner_text()


def move(page: Page, alpha: float) -> float:
    """Move the alpha slider as a reader would; milliseconds until the new picture is painted."""
    renders = int(page.locator(".tryit").get_attribute("data-renders") or 0)
    page.evaluate("""(alpha) => {
        const slider = document.querySelector('.tryit input[name="alpha"]');
        slider.value = String(alpha);
        slider.dispatchEvent(new Event('input', {bubbles: true}));
    }""", alpha)
    page.wait_for_function(
        "(n) => Number(document.querySelector('.tryit').dataset.renders) > n", arg=renders,
        timeout=RUN_TIMEOUT_MS)
    assert float(page.locator(".tryit").get_attribute("data-shown-alpha") or -1) == alpha
    return float(page.locator(".tryit").get_attribute("data-move-ms") or "nan")


def pixels(page: Page, selector: str) -> torch.Tensor:
    """A canvas of the panel as a ``[1, 3, H, W]`` tensor in [0, 1] (lossless, via PNG)."""
    url = page.evaluate("(s) => document.querySelector(s).toDataURL('image/png')", selector)
    picture = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)[None].float() / 255


def difference(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"sizes differ: {list(a.shape)} and {list(b.shape)}"
    return float((a - b).abs().mean())


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print a measurement into the test log even when output is captured."""
    with capsys.disabled():
        print(f"\n[tryit] {line}", end="")


# --------------------------------------------------------------------------- before pressing


@pytest.mark.parametrize("chapter", ["04_fast_style", "05_adain"])
def test_nothing_downloaded_before_pressing(browser: Browser, server: str, chapter: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    page, requested = open_chapter(browser, server, chapter)
    try:
        assert page.locator(".tryit-panel").is_visible(), "the panel script did not start"
        assert page.locator(".tryit-elsewhere").count() == 0
        early = [url for url in requested if PANEL_FILES in url]
        assert early == [], f"downloaded before the button was pressed: {early}"
        weight = page.evaluate("""() => {
            const all = [...performance.getEntriesByType('navigation'),
                         ...performance.getEntriesByType('resource')];
            const size = (e) => e.encodedBodySize;
            const panel = all.filter((e) => /tryit\\.(js|css)/.test(e.name)).map(size);
            return {page: all.map(size).reduce((a, b) => a + b, 0),
                    panel: panel.reduce((a, b) => a + b, 0)
                           + document.querySelector('.tryit').outerHTML.length};
        }""")
    finally:
        page.close()
    report(capsys, f"{chapter}: page weight before pressing {weight['page'] / 1e3:.0f} kB, "
                   f"of which the panel (HTML, tryit.js, tryit.css) {weight['panel'] / 1e3:.1f} kB")
    assert weight["panel"] < 100_000


def test_clear_messages(browser: Browser, server: str, photo_file: Path) -> None:
    """No WebAssembly, a file over the cap, a file that is no image: a sentence, no download."""
    page, requested = open_chapter(browser, server, "05_adain",
                                   init="delete globalThis.WebAssembly")
    try:
        assert press(page, photo_file) == "error"
        assert "no WebAssembly" in status(page)
    finally:
        page.close()
    page, more = open_chapter(browser, server, "05_adain")
    try:
        # The caps come from the panel's data attributes; lowered here below the photo's
        # 406 kB and 0.79 megapixels, so no 20 MB file has to cross into the browser.
        cap = page.locator(".tryit")
        assert cap.get_attribute("data-max-bytes") == str(tryit.MAX_BYTES)
        assert cap.get_attribute("data-max-pixels") == str(tryit.MAX_PIXELS)
        page.evaluate("document.querySelector('.tryit').dataset.maxBytes = '100000'")
        assert press(page, photo_file) == "error"
        assert "tubingen.jpg is 0.4 MB; this panel reads files up to 0.1 MB" in status(page)
        page.evaluate("""() => Object.assign(document.querySelector('.tryit').dataset,
                                             {maxBytes: '20000000', maxPixels: '500000'})""")
        assert press(page, photo_file) == "error"
        assert "has 1 megapixels; this panel takes up to 0.5" in status(page)
        text = {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not a picture"}
        assert press(page, text) == "error"
        assert "could not be read as an image" in status(page)
    finally:
        page.close()
    assert [url for url in requested + more if PANEL_FILES in url] == []


# --------------------------------------------------------------------------- the two panels


@pytest.mark.parametrize("side", [256, 512])
def test_adain_panel_matches_pytorch(browser: Browser, server: str, photo_file: Path,
                                     adain_model: adain.AdaIN, side: int,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    page, requested = open_chapter(browser, server, "05_adain")
    try:
        assert press(page, photo_file, side, painting=STYLE) == "done", status(page)
        first = float(page.locator(".tryit").get_attribute("data-first-paint-ms") or "nan")
        page.locator(".tryit").screenshot(path=SCREENSHOTS / f"tryit_adain_{side}.png")
        photo, painting = pixels(page, ".tryit-input"), pixels(page, ".tryit-painting")
        styled = pixels(page, ".tryit-output")
        moves = [move(page, 0.0)]
        reconstruction = pixels(page, ".tryit-output")
        moves += [move(page, alpha) for alpha in (0.5, 0.25)]
        page.locator(".tryit").screenshot(path=SCREENSHOTS / f"tryit_adain_{side}_alpha.png")
    finally:
        page.close()
    assert max(photo.shape[-2:]) == side and photo.shape[-1] % 8 == photo.shape[-2] % 8 == 0
    assert any(PANEL_FILES in url and url.endswith(".onnx") for url in requested)
    monkeypatch.setenv(precision.ENV, "0")  # the page computes in float32, and so must PyTorch
    blend = adain_model.prepare(photo, painting)
    errors = [difference(styled, blend.render(1.0)), difference(reconstruction, blend.render(0.0))]
    report(capsys, f"AdaIN {side} px ({photo.shape[-1]}x{photo.shape[-2]}): first paint "
                   f"{first:.0f} ms, slider moves {', '.join(f'{m:.0f}' for m in moves)} ms; "
                   f"|page - PyTorch| alpha 1: {255 * errors[0]:.2f}/255, "
                   f"alpha 0: {255 * errors[1]:.2f}/255")
    assert errors[0] < TOLERANCE, "alpha 1 differs from PyTorch's AdaIN"
    assert errors[1] < TOLERANCE, "alpha 0 differs from PyTorch's AdaIN reconstruction"
    assert difference(styled, photo) > CHANGED, "the output is the photo"
    assert difference(styled, reconstruction) > CHANGED, "the slider changed nothing"


@pytest.mark.parametrize("side", [256, 512])
def test_fast_panel_matches_pytorch(browser: Browser, server: str, photo_file: Path, side: int,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    page, _ = open_chapter(browser, server, "04_fast_style")
    try:
        assert press(page, photo_file, side, style=STYLE) == "done", status(page)
        first = float(page.locator(".tryit").get_attribute("data-first-paint-ms") or "nan")
        page.locator(".tryit").screenshot(path=SCREENSHOTS / f"tryit_fast_{side}.png")
        photo, styled = pixels(page, ".tryit-input"), pixels(page, ".tryit-output")
        final_status = status(page)
    finally:
        page.close()
    monkeypatch.setenv(precision.ENV, "0")  # the page computes in float32, and so must PyTorch
    error = difference(styled, fast.stylize(bundled.load(STYLE), photo))
    report(capsys, f"fast {STYLE} {side} px ({photo.shape[-1]}x{photo.shape[-2]}): first paint "
                   f"{first:.0f} ms; |page - PyTorch| {255 * error:.2f}/255")
    assert error < TOLERANCE, "the page's network differs from PyTorch's"
    assert difference(styled, photo) > CHANGED, "the output is the photo"
    assert "this browser offers no WebGPU" in final_status


@pytest.fixture(scope="module")
def webgpu_browser(browser: Browser) -> Iterator[Browser]:
    """A second Chromium that offers WebGPU (software-rendered here: there is no GPU)."""
    gpu = browser.browser_type.launch(executable_path=CHROMIUM, args=WEBGPU_FLAGS)
    try:
        yield gpu
    finally:
        gpu.close()


def test_fast_panel_runs_on_webgpu_where_the_browser_offers_it(
        webgpu_browser: Browser, server: str, photo_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With a WebGPU adapter the panel loads the WebGPU build and paints on the GPU, as PyTorch
    does. The photo is 96 px: Chromium's software GPU takes about 15 s even for that."""
    small = tmp_path / "small.png"
    picture = Image.open(photo_file)
    picture.thumbnail((96, 96))
    picture.save(small)
    page, requested = open_chapter(webgpu_browser, server, "04_fast_style")
    try:
        has_adapter = page.evaluate("async () => !!(navigator.gpu && "
                                    "await navigator.gpu.requestAdapter())")
        assert has_adapter, f"this Chromium offers no WebGPU adapter with {WEBGPU_FLAGS}"
        assert press(page, small, 256, style=STYLE) == "done", status(page)
        backend = page.locator(".tryit").get_attribute("data-backend")
        first = float(page.locator(".tryit").get_attribute("data-first-paint-ms") or "nan")
        photo, styled = pixels(page, ".tryit-input"), pixels(page, ".tryit-output")
        final_status = status(page)
    finally:
        page.close()
    assert backend == "webgpu" and "on WebGPU" in final_status, final_status
    assert any(url.endswith("asyncify.wasm") for url in requested)
    assert not any(url.endswith("threaded.wasm") for url in requested)
    assert tuple(photo.shape[-2:]) == (72, 96)
    monkeypatch.setenv(precision.ENV, "0")
    error = difference(styled, fast.stylize(bundled.load(STYLE), photo))
    report(capsys, f"fast {STYLE} on WebGPU (software), 96x72: first paint {first:.0f} ms; "
                   f"|page - PyTorch| {255 * error:.2f}/255")
    assert error < TOLERANCE, "the WebGPU result differs from PyTorch's"
    assert difference(styled, photo) > CHANGED, "the output is the photo"
