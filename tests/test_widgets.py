"""Tests for stylelib.widgets: argument checks, the live widget and the static HTML slider."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from headless import CHROMIUM, FLAGS
from PIL import Image

from stylelib.widgets import WIDGET_MIME, FrameSlider, frame_slider

COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0)]
DATA_URI = re.compile(r"data:image/(?:png|jpeg);base64,[A-Za-z0-9+/=]+")


def solid(colour: tuple[int, int, int]) -> Image.Image:
    """A small flat frame whose colour identifies it."""
    return Image.new("RGB", (8, 8), colour)


def frames(n: int = 3) -> list[Image.Image]:
    return [solid(c) for c in COLOURS[:n]]


def shown_colour(slider: FrameSlider) -> tuple[int, ...]:
    """The colour of the image the live widget currently displays."""
    pixel = Image.open(io.BytesIO(slider.image.value)).convert("RGB").getpixel((4, 4))
    assert isinstance(pixel, tuple)
    return pixel


def img_src(fragment: str) -> str:
    match = re.search(r'<img src="([^"]+)"', fragment)
    assert match is not None
    return match.group(1)


class Recorder:
    """A render callback that records the values it was asked for."""

    def __init__(self, colour: tuple[int, int, int] = (255, 255, 255)) -> None:
        self.calls: list[float] = []
        self.colour = colour

    def __call__(self, value: float) -> Image.Image:
        self.calls.append(value)
        return solid(self.colour)


# Argument checks


def test_length_mismatch_names_frames() -> None:
    with pytest.raises(ValueError, match="frames"):
        frame_slider([0.0, 1.0, 2.0], frames(2), label="a")


def test_fewer_than_two_frames_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"values.*at least 2"):
        frame_slider([0.0], frames(1), label="a")


@pytest.mark.parametrize("values", [[0.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
def test_values_must_strictly_increase(values: list[float]) -> None:
    with pytest.raises(ValueError, match=r"values.*strictly increasing"):
        frame_slider(values, frames(3), label="a")


def test_bad_live_and_initial_are_rejected() -> None:
    with pytest.raises(ValueError, match="live"):
        frame_slider([0.0, 1.0], frames(2), label="a", live="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="initial"):
        frame_slider([0.0, 1.0], frames(2), label="a", initial=3.0)


# The mime bundle and the static HTML


def test_bundle_has_widget_view_and_html() -> None:
    slider = frame_slider([0.0, 0.5, 1.0], frames(3), label="alpha")
    bundle = slider._repr_mimebundle_()
    assert bundle[WIDGET_MIME]["model_id"] == slider.widget.model_id
    assert "alpha" in bundle["text/plain"]
    assert bundle["text/html"] == slider.html
    assert '<input type="range"' in bundle["text/html"]


def test_html_has_one_image_a_range_over_indices_and_every_frame() -> None:
    n = 4
    page = frame_slider([1.0, 2.0, 3.0, 4.0], frames(n), label="epoch").html
    assert page.count("<img") == 1
    assert re.search(rf'<input type="range"[^>]* min="0" max="{n - 1}"', page)
    uris = DATA_URI.findall(page)
    assert len(set(uris)) == n


def test_html_starts_at_middle_frame_or_nearest_to_initial() -> None:
    values = [0.0, 0.5, 1.0]
    middle = frame_slider(values, frames(3), label="a")
    near_end = frame_slider(values, frames(3), label="a", initial=0.9)
    first = frame_slider(values, frames(3), label="a", initial=0.0)
    assert 'value="1"' in middle.html
    assert 'value="2"' in near_end.html
    assert shown_colour(near_end) == COLOURS[2]
    # The frame shown first is the one the initial value selects.
    assert len({img_src(s.html) for s in (middle, near_end, first)}) == 3


def test_html_is_deterministic_and_ids_differ_between_sliders() -> None:
    def build(label: str) -> str:
        slider = frame_slider([0.0, 0.5, 1.0], frames(3), label=label)
        return str(slider._repr_mimebundle_()["text/html"])

    assert build("alpha") == build("alpha")
    ids = {re.findall(r'<figure id="([^"]+)"', build(label))[0] for label in ("alpha", "beta")}
    assert len(ids) == 2


def test_label_caption_and_values_are_escaped() -> None:
    page = frame_slider(
        [0.0, 1.0],
        frames(2),
        label='<b>"w"</b>',
        caption="Photo & <i>art</i>",
        fmt="{:g}</script>",
    ).html
    assert "<b>" not in page and "<i>" not in page
    assert "&lt;b&gt;" in page
    assert "Photo &amp; &lt;i&gt;art&lt;/i&gt;" in page
    assert page.count("</script>") == 1


def test_photo_like_frames_are_embedded_as_jpeg() -> None:
    photo = Image.effect_mandelbrot((128, 128), (-2.0, -1.5, 1.0, 1.5), 100).convert("RGB")
    page = frame_slider([0.0, 1.0], [photo, solid(COLOURS[0])], label="a", initial=0.0).html
    assert img_src(page).startswith("data:image/jpeg;base64,")
    assert "data:image/png;base64," in page  # the tiny flat frame stays lossless


# The live widget


def test_moving_to_a_prerendered_value_shows_that_frame() -> None:
    slider = frame_slider([0.0, 0.5, 1.0], frames(3), label="a")
    assert shown_colour(slider) == COLOURS[1]
    slider.slider.value = 1.0
    assert shown_colour(slider) == COLOURS[2]
    slider.slider.value = 0.0
    assert shown_colour(slider) == COLOURS[0]


def test_continuous_render_computes_in_between_values_once() -> None:
    render = Recorder()
    slider = frame_slider([0.0, 0.5, 1.0], frames(3), label="a", render=render, live="continuous")
    slider.slider.value = 0.25
    assert render.calls == [0.25]
    assert shown_colour(slider) == render.colour
    slider.slider.value = 1.0
    assert render.calls == [0.25]
    assert shown_colour(slider) == COLOURS[2]


def test_button_mode_renders_only_when_run_is_clicked() -> None:
    render = Recorder()
    slider = frame_slider([0.0, 0.5, 1.0], frames(3), label="a", render=render)
    assert slider.button is not None
    slider.slider.value = 0.75
    assert render.calls == []
    assert shown_colour(slider) == COLOURS[1]
    slider.button.click()
    assert render.calls == [0.75]
    assert shown_colour(slider) == render.colour
    assert slider.status.value.startswith("done in")


def test_frontend_grid_position_next_to_a_frame_shows_it_without_rendering() -> None:
    # The browser snaps a FloatSlider to min + k * step; the grid point nearest an
    # awkward pre-rendered value must still count as that frame.
    render = Recorder()
    values = [0.0, 1.0 / 3.0, 1.0]
    slider = frame_slider(values, frames(3), label="a", render=render, live="continuous")
    step = slider.slider.step
    slider.slider.value = 0.0
    slider.slider.value = round(values[1] / step) * step
    assert render.calls == []
    assert shown_colour(slider) == COLOURS[1]


def test_log_spaced_values_get_a_log_slider() -> None:
    render = Recorder()
    values = [1e2, 1e3, 1e4, 1e5]
    slider = frame_slider(values, frames(4), label="style weight", render=render)
    assert (slider.slider.min, slider.slider.max) == pytest.approx((2.0, 5.0))
    slider.slider.value = 1e5
    assert render.calls == []
    assert shown_colour(slider) == COLOURS[3]


# The static HTML in a real browser


def test_static_slider_swaps_frames_in_headless_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs /usr/bin/chromium (apt-get install -y chromium)")
    values = [0.0, 0.5, 1.0]
    first = frame_slider(values, frames(3), label="first")
    second = frame_slider(values, frames(3), label="second", fmt="{:.2f}")
    frame_2 = img_src(frame_slider(values, frames(3), label="x", initial=1.0).html)
    frame_1 = img_src(first.html)
    assert frame_1 != frame_2
    # Test-only: move the second slider to index 2 the way a user's drag does.
    drive = (
        "<script>var r=document.querySelectorAll('input[type=range]')[1];"
        "r.value='2';r.dispatchEvent(new Event('input'));</script>"
    )
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "slider.html"
        page.write_text(
            f"<!doctype html><html><body>{first.html}{second.html}{drive}</body></html>"
        )
        result = subprocess.run(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={os.path.join(tmp, 'profile')}",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    figures = re.findall(r"<figure.*?</figure>", result.stdout, flags=re.DOTALL)
    assert len(figures) == 2
    assert img_src(figures[0]) == frame_1  # the other slider on the page is untouched
    assert img_src(figures[1]) == frame_2
    assert re.search(r"<output[^>]*>1\.00</output>", figures[1])


def test_names_label_the_frames_live_and_static() -> None:
    """A picker over paintings shows their names, not the index values behind them."""
    slider = frame_slider([0, 1, 2], frames(3), label="style", names=["wave", "scream", "night"])
    assert [label for label, _ in slider.slider.options] == ["wave", "scream", "night"]
    assert '"wave","scream","night"' in slider.html
    with pytest.raises(ValueError, match="names: expected one per value"):
        frame_slider([0, 1, 2], frames(3), label="style", names=["a", "b"])
