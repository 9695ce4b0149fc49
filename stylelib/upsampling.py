"""Large prints whose marks are print-sized: paint at a working size, then carry the picture up
to the print with the photo as guide.

A one-pass network paints marks of a fixed size in pixels, so a 4096 px picture painted
directly has marks a quarter as large, relative to the picture, as a 1024 px one: a different,
finer-grained picture. Painting at a working size keeps the marks' share of the picture; the
result is then enlarged and given back the photo's fine detail in the manner of the fast
guided filter (He & Sun 2015): in each small window the painted colours are fitted as a linear
function of the photo's luminance at the working size, and the fit's slope carries the
luminance detail the photo has only at full size into the painted colours.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812

from stylelib.colour import rgb_to_yiq
from stylelib.errors import StylelibError
from stylelib.images import resize_to

WORKING = 1024
"""The long side at which marks have the size a reader sees at ``--style-scale 1``."""
RADIUS = 2
"""The guided filter's window radius at the working size, in pixels."""
EPS = 1e-3
"""How strongly the filter prefers a flat fit to following the photo's luminance."""


def working_size(size: int, style_scale: float) -> int:
    """The long side to paint at for a ``size`` px print: :data:`WORKING` / ``style_scale``,
    never above ``size`` (``style_scale`` 2 paints marks twice as large, 0.25 paints a
    4096 px print at full size)."""
    if not (math.isfinite(style_scale) and style_scale > 0):
        raise StylelibError(
            f"--style-scale must be a positive number, got {style_scale}: 1 paints marks as at "
            f"{WORKING} px, 2 twice as large, 0.5 half as large.")
    return min(size, max(1, round(WORKING / style_scale)))


def painting_size(work: int, style_scale: float) -> int:
    """The long side to read the painting at for a working size ``work``: ``style_scale``
    times it, so the painting's strokes take ``style_scale`` times the share of the picture
    they take at 1 (a 4096 px print at 0.25 reads it at 1024 px, as the 1024 px picture
    does). Scaled up with the picture instead, a painting is only blurred past its own
    pixels, and AdaIN's statistics of a blurred painting paint a pale, grey picture (seen at
    4096 px with ``--style-scale 0.25``)."""
    return max(1, round(work * style_scale))


def _box(image: torch.Tensor, radius: int) -> torch.Tensor:
    """The mean over each ``(2 radius + 1)``-pixel square window (smaller at the borders)."""
    side = 2 * radius + 1
    return F.avg_pool2d(F.pad(image, (radius,) * 4, mode="replicate"), side, stride=1)


def guided_upsample(painted: torch.Tensor, photo: torch.Tensor, radius: int = RADIUS,
                    eps: float = EPS) -> torch.Tensor:
    """``painted`` (``[1, 3, h, w]``, the photo painted at a working size) brought up to the
    size of ``photo`` (``[1, 3, H, W]``) with the photo's fine luminance detail added; in
    [0, 1].

    The painted picture is enlarged bicubically, which keeps its marks; the detail the photo
    has at full size and not at the working size is added through each window's fitted slope
    (colour change per unit of luminance), so it appears where the painting follows the
    photo's edges and not in flat painted areas, whose marks stay as painted.
    """
    size = photo.shape[-2:]
    guide_full = rgb_to_yiq(photo.float())[:, :1]
    guide = resize_to(guide_full, (painted.shape[-2], painted.shape[-1]))
    mean_guide = _box(guide, radius)
    mean_painted = _box(painted.float(), radius)
    variance = _box(guide * guide, radius) - mean_guide**2
    covariance = _box(guide * painted.float(), radius) - mean_guide * mean_painted
    slope = F.interpolate(_box(covariance / (variance + eps), radius), size=size,
                          mode="bilinear", align_corners=False)
    detail = guide_full - F.interpolate(guide, size=size, mode="bilinear", align_corners=False)
    enlarged = F.interpolate(painted.float(), size=size, mode="bicubic", align_corners=False)
    return enlarged.add_(slope.mul_(detail)).clamp_(0, 1)
