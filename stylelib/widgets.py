"""The interactive knob of every chapter: a slider over pre-rendered frames.

In a running notebook the slider is a live ipywidgets control that can also compute in-between
values; the static book has no kernel, so the same output also carries a self-contained HTML
slider whose few lines of inline JavaScript swap base64-encoded frames stored in the page.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import math
import time
from collections.abc import Callable, Container, Sequence
from typing import Any, Literal

import ipywidgets as widgets
from PIL import Image

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
"""Mime type of a live widget view; the book's HTML builder ranks ``text/html`` above it."""

_FINE_STEPS = 200
"""Least number of live slider positions across the range when in-between values can render."""

_LOG_RATIO = 100.0
"""Positive values spanning at least this ratio (e.g. style weights) are spaced logarithmically."""


def _encode(image: Image.Image) -> tuple[str, bytes]:
    """Encode a frame for embedding: PNG when smaller or transparent, else JPEG at quality 90."""
    png = io.BytesIO()
    image.save(png, format="PNG")
    if "A" in image.getbands() or "transparency" in image.info:
        return "png", png.getvalue()
    jpeg = io.BytesIO()
    opaque = image if image.mode in ("L", "RGB") else image.convert("RGB")
    opaque.save(jpeg, format="JPEG", quality=90)
    if jpeg.tell() < png.tell():
        return "jpeg", jpeg.getvalue()
    return "png", png.getvalue()


def _script_json(value: object) -> str:
    """JSON that is safe inside an inline ``<script>`` (no ``</script>`` or ``<!--``)."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


class FrameSlider:
    """A slider over pre-rendered frames that is live in a kernel and static in the built book.

    ``slider``, ``image``, ``status`` and ``button`` are the live ipywidgets (``button`` is
    ``None`` unless ``live="button"`` with a ``render``); ``html`` is the static version.
    """

    def __init__(
        self,
        values: Sequence[float],
        frames: Sequence[Image.Image],
        *,
        label: str,
        render: Callable[[float], Image.Image] | None,
        live: Literal["continuous", "button"],
        fmt: str,
        caption: str,
        initial: float | None,
        names: Sequence[str] | None = None,
    ) -> None:
        _check_arguments(values, frames, live, initial)
        if names is not None and len(names) != len(values):
            raise ValueError(f"names: expected one per value ({len(values)}), got {len(names)}")
        self.values = tuple(float(v) for v in values)
        self.label = label
        self.caption = caption
        self.shown = tuple(names) if names else tuple(fmt.format(v) for v in self.values)
        self._fmt = fmt
        self._render = render
        self._log = self.values[0] > 0 and self.values[-1] >= _LOG_RATIO * self.values[0]
        self._encoded = [_encode(frame) for frame in frames]

        positions = [self._position(v) for v in self.values]
        span = positions[-1] - positions[0]
        min_gap = min(b - a for a, b in itertools.pairwise(positions))
        # Divide the range evenly and finely enough that every pre-rendered value sits within
        # half a step of exactly one grid point, so dragging can reach each frame.
        self._step = span / max(_FINE_STEPS, math.ceil(4 * span / min_gap))
        self.start = (len(self.values) - 1) // 2 if initial is None else self._nearest(initial)
        self.html = self._static_html()

        kind, data = self._encoded[self.start]
        self.image = widgets.Image(value=data, format=kind)
        self.slider = self._make_slider(positions)
        self.slider.observe(self._on_value, names="value")
        self.status = widgets.Label()
        self.button = None
        controls: list[Any] = [self.slider]
        if render is not None and live == "button":
            self.button = widgets.Button(description="Run", disabled=True)
            self.button.on_click(self._on_run)
            controls.append(self.button)
        if render is not None:
            controls.append(self.status)
        children: list[Any] = [widgets.HBox(controls), self.image]
        if caption:
            children.append(widgets.HTML(f"<small>{html.escape(caption)}</small>"))
        self.widget = widgets.VBox(children)

    def __repr__(self) -> str:
        return (
            f"FrameSlider({self.label!r}: {len(self.values)} frames, "
            f"{self.shown[0]} … {self.shown[-1]})"
        )

    def _repr_mimebundle_(
        self, include: Container[str] | None = None, exclude: Container[str] | None = None
    ) -> dict[str, Any]:
        """Both views in one bundle: a kernel frontend shows the widget, the static book the HTML.

        IPython filters by ``include``/``exclude`` itself, so they are accepted but not used.
        """
        return {
            "text/plain": repr(self),
            WIDGET_MIME: self.widget._repr_mimebundle_()[WIDGET_MIME],
            "text/html": self.html,
        }

    def _position(self, value: float) -> float:
        """Where a value lies along the slider: linear, or its log10 for log-spaced values."""
        return math.log10(value) if self._log else value

    def _nearest(self, value: float) -> int:
        """Index of the pre-rendered value closest to ``value`` along the slider."""
        target = self._position(value)
        return min(
            range(len(self.values)), key=lambda i: abs(self._position(self.values[i]) - target)
        )

    def _frame_at(self, value: float) -> int | None:
        """The pre-rendered frame a slider value lands on (within half a step), if any."""
        index = self._nearest(value)
        distance = abs(self._position(self.values[index]) - self._position(value))
        return index if distance <= self._step / 2 else None

    def _make_slider(self, positions: list[float]) -> Any:
        """Discrete slider over the frames, or a fine one over the whole range if we can render."""
        common = {"description": self.label, "value": self.values[self.start]}
        if self._render is None:
            options = list(zip(self.shown, self.values, strict=True))
            return widgets.SelectionSlider(options=options, **common)
        slider_class = widgets.FloatLogSlider if self._log else widgets.FloatSlider
        return slider_class(
            min=positions[0], max=positions[-1], step=self._step, readout_format=".3g", **common
        )

    def _show(self, image: tuple[str, bytes]) -> None:
        kind, data = image
        self.image.format = kind
        self.image.value = data

    def _on_value(self, change: dict[str, Any]) -> None:
        """Show a pre-rendered frame at once; otherwise compute now or wait for "Run"."""
        value = float(change["new"])
        index = self._frame_at(value)
        if index is not None:
            self._show(self._encoded[index])
            self.status.value = ""
            if self.button is not None:
                self.button.disabled = True
        elif self.button is None:
            self._compute(value)
        else:
            self.button.disabled = False
            self.status.value = f"press Run to compute {self._fmt.format(value)}"

    def _on_run(self, button: Any) -> None:
        """Compute the current value; the button stays off until the value changes again."""
        self._compute(float(self.slider.value))
        button.disabled = True

    def _compute(self, value: float) -> None:
        """Render an in-between value, reporting progress and time in the status text."""
        assert self._render is not None
        self.status.value = "computing…"
        started = time.perf_counter()
        try:
            image = self._render(value)
        except Exception as error:
            self.status.value = f"failed: {error}"
            raise
        self._show(_encode(image))
        self.status.value = f"done in {time.perf_counter() - started:.1f} s"

    def _static_html(self) -> str:
        """A kernel-free slider: a range input over frame indices, an image and a tiny script."""
        uris = [
            f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"
            for kind, data in self._encoded
        ]
        digest = hashlib.sha256()
        for _, data in self._encoded:
            digest.update(data)
        digest.update(json.dumps([self.label, self.caption, self.shown, self.start]).encode())
        uid = f"stylelib-slider-{digest.hexdigest()[:12]}"
        # The starting frame is embedded once, in the <img>; the script copies it from there.
        frames = [uri if i != self.start else "" for i, uri in enumerate(uris)]
        script = (
            "(function(){var s=document.currentScript,"
            f"root=s?s.parentNode:document.getElementById({_script_json(uid)}),"
            'r=root.querySelector("input[type=range]"),im=root.querySelector("img"),'
            f'o=root.querySelector("output"),f={_script_json(frames)},v={_script_json(self.shown)};'
            f'f[{self.start}]=im.getAttribute("src");'
            'r.addEventListener("input",function(){var i=+r.value;'
            "im.src=f[i];o.textContent=v[i];});})();"
        )
        label = html.escape(self.label)
        caption = f"<figcaption>{html.escape(self.caption)}</figcaption>" if self.caption else ""
        return (
            f'<figure id="{uid}" class="stylelib-slider" style="margin:0">'
            f'<div><label for="{uid}-range">{label}</label> '
            f'<input type="range" id="{uid}-range" min="0" max="{len(uris) - 1}" step="1" '
            f'value="{self.start}" style="vertical-align:middle"> '
            f'<output for="{uid}-range">{html.escape(self.shown[self.start])}</output></div>'
            f'<img src="{uris[self.start]}" alt="{label}" style="display:block;max-width:100%">'
            f"{caption}<script>{script}</script></figure>"
        )


def _check_arguments(
    values: Sequence[float],
    frames: Sequence[Image.Image],
    live: str,
    initial: float | None,
) -> None:
    """Reject bad slider arguments up front, naming the argument at fault."""
    if len(values) < 2:
        raise ValueError(f"values: a slider needs at least 2 values, got {len(values)}")
    if len(frames) != len(values):
        raise ValueError(f"frames: expected one image per value ({len(values)}), got {len(frames)}")
    for i, frame in enumerate(frames):
        if not isinstance(frame, Image.Image):
            raise TypeError(f"frames[{i}]: expected a PIL image, got {type(frame).__name__}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"values: must be finite numbers, got {list(values)}")
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            raise ValueError(
                f"values: must be strictly increasing, but values[{i}] = {values[i]} "
                f"follows {values[i - 1]}"
            )
    if live not in ("continuous", "button"):
        raise ValueError(f"live: must be 'continuous' or 'button', got {live!r}")
    if initial is not None and not values[0] <= initial <= values[-1]:
        raise ValueError(f"initial: must lie in [{values[0]}, {values[-1]}], got {initial}")


def frame_slider(
    values: Sequence[float],
    frames: Sequence[Image.Image],
    *,
    label: str,
    render: Callable[[float], Image.Image] | None = None,
    live: Literal["continuous", "button"] = "button",
    fmt: str = "{:g}",
    caption: str = "",
    initial: float | None = None,
    names: Sequence[str] | None = None,
) -> FrameSlider:
    """A slider showing ``frames[i]`` at ``values[i]``, live in a notebook and static in the book.

    ``render(value)`` (optional) computes in-between values: on every change with
    ``live="continuous"``, or when "Run" is clicked with ``live="button"`` (for slow methods).
    ``fmt`` formats values for display; ``initial`` picks the starting frame (the nearest one;
    the middle frame by default); ``caption`` is shown under the image. ``names`` replaces the
    formatted values as the frames' labels (e.g. one painting per frame, without ``render``).
    """
    return FrameSlider(
        values,
        frames,
        label=label,
        render=render,
        live=live,
        fmt=fmt,
        caption=caption,
        initial=initial,
        names=names,
    )
