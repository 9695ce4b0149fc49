"""Colour helpers for luminance-only style transfer (Gatys et al. 2017, "preserving colour").

The style is transferred on luminance alone; the result's luminance is then recombined with
the photo's chrominance in YIQ space, so the output keeps the photo's colours.
"""

from __future__ import annotations

import colorsys

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


def _mean_covariance(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[3, 1]`` and covariance ``[3, 3]`` of a ``[1, 3, H, W]`` image's pixels (float64)."""
    pixels = image.reshape(3, -1).double()
    mean = pixels.mean(dim=1, keepdim=True)
    centred = pixels - mean
    return mean, centred @ centred.T / pixels.shape[1]


def _matrix_power(matrix: torch.Tensor, power: float) -> torch.Tensor:
    """``matrix ** power`` of a symmetric positive semi-definite matrix (eigenvalues >= 1e-8)."""
    values, vectors = torch.linalg.eigh(matrix)
    result: torch.Tensor = vectors @ torch.diag(values.clamp_min(1e-8).pow(power)) @ vectors.T
    return result


def match_colour(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Recolour ``source`` so its RGB mean and covariance equal ``target``'s, clamped to [0, 1].

    A linear colour transfer (Gatys et al. 2017; the AdaIN paper's colour control): applied to
    the style image before style transfer, the result takes the photo's colours.
    """
    source_mean, source_cov = _mean_covariance(source)
    target_mean, target_cov = _mean_covariance(target)
    transform = _matrix_power(target_cov, 0.5) @ _matrix_power(source_cov, -0.5)
    pixels = transform @ (source.reshape(3, -1).double() - source_mean) + target_mean
    return pixels.reshape(source.shape).to(source.dtype).clamp(0, 1)


def rotate_hue(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """Turn every pixel's colour by ``degrees`` around the grey axis of RGB, clamped to [0, 1].

    Greys stay grey and each pixel keeps the mean of its three channels, so a painting keeps its
    strokes but gets a new palette: ``[..., 3, H, W]`` in, the same shape out.
    """
    angle = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    axis = torch.full((3,), 3 ** -0.5, dtype=torch.float64)
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]],
                         dtype=torch.float64) * axis[0]
    rotation = (angle.cos() * torch.eye(3, dtype=torch.float64) + angle.sin() * cross
                + (1 - angle.cos()) * torch.outer(axis, axis))
    turned = torch.einsum("ij,...jhw->...ihw", rotation.to(image), image)
    return turned.clamp(0, 1)


GREY = 0.1
"""A saturation below which a colour's hue means little: nearly grey."""


def mean_hue(image: torch.Tensor) -> tuple[float, float]:
    """HSV hue in degrees (red 0, green 120, blue 240) and saturation of a ``[3, H, W]`` or
    ``[1, 3, H, W]`` image's mean colour: where its palette sits on the colour wheel."""
    red, green, blue = image.mean((-2, -1)).reshape(-1, 3).mean(0).tolist()
    hue, saturation, _ = colorsys.rgb_to_hsv(red, green, blue)
    return hue * 360, saturation
