"""The "try it" panels: a reader stylises their own photo in the built book's page, in the browser.

:func:`panel` is a notebook output holding the panel's HTML; ``_static/tryit.js`` brings it to
life in the static book, downloading the networks that :mod:`stylelib.tryit_build` put there
only when the reader presses its button. In a kernel (Jupyter, Colab) that script is absent, so
the output shows only a note pointing to the online book.
"""

from __future__ import annotations

import html
from typing import Literal

from stylelib import bundled

PAINTINGS = ("starry_night", "the_scream", "great_wave", "en_campo_gris")
"""Public-domain paintings the AdaIN panel offers (beside the reader's own)."""
PAINTING_SIDE = 512
"""Long side of the bundled paintings, in pixels."""
SIDES = (256, 512)
"""Long sides the reader can pick for the stylised photo."""
MAX_BYTES = 20_000_000
"""Largest photo or painting file the panel reads."""
MAX_PIXELS = 40_000_000
"""Largest photo or painting it decodes (a 40-megapixel image already takes 160 MB of memory)."""

Kind = Literal["fast", "adain"]


def _select(name: str, label: str, options: list[tuple[str, str]]) -> str:
    """A labelled drop-down list of ``(value, text)`` options."""
    items = "".join(f'<option value="{html.escape(value)}">{html.escape(text)}</option>'
                    for value, text in options)
    return f'<label>{label} <select name="{name}">{items}</select></label>'


class Panel:
    """One panel; displayed in a notebook, it is the HTML below (see :func:`panel`)."""

    def __init__(self, kind: Kind) -> None:
        if kind not in ("fast", "adain"):
            raise ValueError(f"kind must be 'fast' or 'adain', got {kind!r}")
        self.kind = kind

    def __repr__(self) -> str:
        return f"Panel({self.kind!r}): runs in the online book"

    def _controls(self) -> str:
        """The choices that differ between the two panels."""
        if self.kind == "fast":
            styles = [(style, f"{style} network") for style in bundled.available()]
            return _select("style", "Network", styles)
        paintings = [(name, name) for name in PAINTINGS]
        return (
            _select("painting", "Painting", paintings)
            + ' <label>or your own <input type="file" name="painting-file" accept="image/*">'
            "</label>"
        )

    def _slider(self) -> str:
        """AdaIN's alpha slider: live after the first result, one decoder call per move."""
        if self.kind == "fast":
            return ""
        return (
            '<p><label>alpha <input type="range" name="alpha" min="0" max="1" step="0.05" '
            'value="1" disabled> <output name="alpha-value">1.00</output></label> '
            "(0: the decoder redraws the photo, 1: full style)</p>"
        )

    def _canvases(self) -> str:
        """The photo as the network sees it, (AdaIN) the painting, and the result; each shown
        once drawn (an empty canvas would take 300 x 150 pixels of the page)."""
        parts = ["input", "output"] if self.kind == "fast" else ["input", "painting", "output"]
        return "".join(f'<canvas class="tryit-{part}" hidden></canvas>' for part in parts)

    def _repr_html_(self) -> str:
        sides = [(str(side), f"{side} px") for side in SIDES]
        return (
            f'<div class="tryit" data-tryit="{self.kind}" data-max-bytes="{MAX_BYTES}" '
            f'data-max-pixels="{MAX_PIXELS}">'
            '<p class="tryit-elsewhere"><em>The live panel works in the online book only: there '
            "your browser runs the networks on your own photo. In a notebook, the cells of this "
            "chapter do the same with PyTorch.</em></p>"
            '<div class="tryit-panel" hidden>'
            "<p><strong>Try it on your own photo.</strong> Your photo never leaves this browser: "
            "the networks are downloaded when you press the button and run here; nothing is "
            "uploaded.</p>"
            '<p><label>Photo <input type="file" name="photo" accept="image/*"></label> '
            f"{self._controls()} {_select('side', 'Long side', sides)} "
            '<button type="button" name="run">Stylise in this browser</button></p>'
            '<p><progress hidden></progress> <output class="tryit-status"></output></p>'
            f"{self._slider()}"
            f'<div class="tryit-images">{self._canvases()}</div>'
            '<p class="tryit-sizes"></p><p class="tryit-credit"></p>'
            "</div></div>"
        )


def panel(kind: Kind) -> Panel:
    """The chapter's panel: ``"fast"`` (a bundled network) or ``"adain"`` (any painting)."""
    return Panel(kind)
