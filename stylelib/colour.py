"""Colour helpers for luminance-only style transfer (Gatys et al. 2017, "preserving colour").

The style is transferred on luminance alone; the result's luminance is then recombined with
the photo's chrominance in YIQ space, so the output keeps the photo's colours.
"""

from __future__ import annotations

import torch

RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` RGB to YIQ (Y = luminance, I and Q = chrominance)."""
    return torch.einsum("ij,bjhw->bihw", RGB_TO_YIQ.to(image), image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_yiq`."""
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(RGB_TO_YIQ).to(image), image)


def to_luminance(image: torch.Tensor) -> torch.Tensor:
    """The luminance of an RGB image, repeated on three channels so a VGG can read it."""
    return rgb_to_yiq(image)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_luminance: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Shift and scale the style's luminance to the content's mean and standard deviation."""
    target = rgb_to_yiq(content)[:, :1]
    mean, std = style_luminance.mean(), style_luminance.std()
    matched = (style_luminance - mean) / (std + 1e-8) * target.std() + target.mean()
    return matched.clamp(0, 1)


def luminance_only(stylised: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Combine the stylised image's luminance with the content's chrominance (I and Q)."""
    yiq = rgb_to_yiq(content)
    yiq = torch.cat([rgb_to_yiq(stylised)[:, :1], yiq[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0, 1)
