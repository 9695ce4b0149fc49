"""Stylising a video's frames without flicker: each frame is painted by a registered method and
tied to the previous frame's result, carried along the optical flow of the input frames
(:func:`~stylelib.flow.carrying_flow`: trusted where Ruder et al.'s test holds, and filled in
next to moving objects, where DIS blurs two motions into one).

* A one-pass network (fast, AdaIN, Magenta, SDEdit) keeps ``weight`` of the previous result,
  warped, wherever the flow can be trusted, and its own new picture elsewhere: a blend along
  the flow, cheap (two flows, the filling in and a warp a frame) but it smears what the flow
  gets wrong.
* Gatys optimisation (a method whose painter takes an ``anchor``) starts from the previous
  result, warped, where the flow holds (the photo elsewhere) and adds Ruder et al.'s temporal
  loss with ``weight``: each frame costs what one image does.

``weight`` 0 paints every frame by itself (the baseline the fixes are measured against).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from stylelib.errors import StylelibError, check_number
from stylelib.flow import carrying_flow, warp
from stylelib.gatys import Anchor
from stylelib.methods import Method, Mix, Painter
from stylelib.video import FrameStore

VIDEO_DEFAULT = "fast"
"""The method ``video`` runs unless told: one pass a frame."""
LONGEST = 512
"""The frames' long side unless told (a larger clip is made smaller)."""
BLEND = 0.6
"""A one-pass method's default share of the previous result kept where the flow holds. On the
made clips (chapter 8) it cut the temporal error of fast, AdaIN and Magenta to 0.14-0.26x of
frame by frame's, and kept 0.63-0.81 of their fine detail (:func:`~stylelib.metrics.detail`)."""
CPU = torch.device("cpu")
"""Where frames are painted unless a :class:`Painting` says otherwise."""
ANCHOR_WEIGHT = 500.0
"""Gatys's default temporal-loss weight (on the mean squared pixel difference). With the book's
100 L-BFGS steps, on the made clip with a moving square, it cut the temporal error to 0.25x of
frame by frame's (The Scream; 0.34x with The Starry Night) along the filled-in flow, against
0.61x (0.42x) with Ruder et al.'s trusted pixels alone."""


def default_weight(method: Method) -> float:
    """The temporal weight ``method`` gets unless told."""
    return ANCHOR_WEIGHT if method.anchors else BLEND


def quantised(image: torch.Tensor) -> torch.Tensor:
    """``image`` as an 8-bit file holds it: each frame is carried on as stored, so a job that
    resumes from stored frames continues exactly as one that never stopped."""
    return image.clamp(0, 1).mul(255).round().div(255)


@dataclass(frozen=True)
class Painting:
    """What to paint each frame with: the method, its loaded painter, the painting's pixels
    (or a :class:`~stylelib.methods.Mix`, or ``None`` for per-painting networks), the STYLE
    the user named, and the device the painter was loaded on (where frames must be)."""

    method: Method
    paint: Painter
    painting: torch.Tensor | Mix | None
    style: str
    device: torch.device = CPU


def check_weight(method: Method, weight: float) -> float:
    """Refuse a temporal weight the method cannot use: any weight >= 0 for an anchored
    optimisation; a share from 0 up to below 1 for a blend (1 would never change the picture)."""
    check_number(weight, "--temporal-weight")
    if not method.anchors and weight >= 1:
        raise StylelibError(f"--temporal-weight for --method {method.name} is the share of the "
                            f"previous frame kept, below 1; got {weight}. Try 0.6.")
    return weight


def stylize_frames(frames: Iterable[torch.Tensor], painting: Painting, weight: float,
                   store: FrameStore | None = None) -> Iterator[torch.Tensor]:
    """Each frame of ``frames`` painted and tied to the last result (see the module docstring),
    in order. With a ``store``, a frame already in it is read back instead of painted, and
    each newly painted frame is put there before it is yielded."""
    check_weight(painting.method, weight)
    previous_frame: torch.Tensor | None = None
    previous: torch.Tensor | None = None
    for index, frame in enumerate(frames):
        kept = None if store is None else store.get(index)
        if kept is not None:
            result = kept.to(frame.device)
        else:
            result = quantised(_paint(frame, previous_frame, previous, painting, weight))
            if store is not None:
                store.put(index, result)
        previous_frame, previous = frame, result
        yield result


def _paint(frame: torch.Tensor, previous_frame: torch.Tensor | None,
           previous: torch.Tensor | None, painting: Painting, weight: float) -> torch.Tensor:
    """One frame: painted alone when it is the first or ``weight`` is 0, else tied to the
    previous result warped onto it."""
    method, paint = painting.method, painting.paint
    if previous_frame is None or previous is None or weight == 0:
        return paint(frame, painting.painting, painting.style)
    flow, mask = carrying_flow(frame, previous_frame)
    carried = warp(previous, flow)
    if method.anchors:
        anchor = Anchor(carried, mask, weight)
        result: torch.Tensor = paint(frame, painting.painting, painting.style,  # type: ignore[call-arg]
                                     anchor=anchor)
        return result
    painted = paint(frame, painting.painting, painting.style)
    return painted + weight * mask * (carried - painted)
