"""Losses as small pieces: Gram matrix, content, style, mean/std and total variation.

Content and style terms are *relative* errors (divided by their target's energy), so a given
content/style weight means the same thing on every backbone and at every layer and size.
:class:`PerceptualLoss` composes them over a shared :class:`~stylelib.backbones.FeatureExtractor`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from stylelib.backbones import FeatureExtractor
from stylelib.errors import StylelibError, check_blend, check_number
from stylelib.precision import autocast

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYERS = ("relu4_2",)
STATISTICS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
"""Where AdaIN's style loss compares channel means and standard deviations (Huang & Belongie
2017): its encoder ends at the deepest one, and the comparison's mean/std error reads them all."""
EPS = 1e-8


class _OuterProduct(torch.autograd.Function):
    """``F Fᵀ`` with a one-matmul backward: ``(dG + dGᵀ) F``.

    Autograd's generic rule treats ``F`` and ``Fᵀ`` as two inputs and spends two large matmuls
    and an addition on the gradient; exploiting the symmetry halves the Gram's backward cost.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, flat: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(flat)
        return flat @ flat.transpose(1, 2)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (flat,) = ctx.saved_tensors  # type: ignore[attr-defined]
        grad = grad.to(flat.dtype)  # under autocast the Gram, hence its gradient, is fp16/bf16
        result: torch.Tensor = (grad + grad.transpose(1, 2)) @ flat
        return result


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Channel co-activations ``F Fᵀ / (H W)`` of ``[B, C, H, W]`` features, shape ``[B, C, C]``.

    Averaging over positions (rather than summing) makes Grams of different sizes comparable.
    """
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    outer: torch.Tensor = _OuterProduct.apply(flat)
    return outer / (height * width)


def relative_error(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error divided by the target's energy, averaged over the batch."""
    dims = tuple(range(1, value.dim()))
    error = (value - target).pow(2).sum(dims)
    energy = target.pow(2).sum(dims) + EPS
    return (error / energy).mean()


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """How far features are from the content image's features (relative squared error)."""
    return relative_error(features, target)


def style_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """How far the features' Gram matrix is from the style's (relative squared error)."""
    return relative_error(gram_matrix(features), target_gram)


def mean_std(features: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over positions, each ``[B, C, 1, 1]``.

    The standard deviation is ``sqrt(var + eps)``: ``eps`` keeps a constant channel divisible.
    """
    mean = features.mean(dim=(2, 3), keepdim=True)
    std = (features.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return mean, std


def mean_std_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """AdaIN's style loss: squared distance between per-channel means and standard deviations."""
    mean, std = mean_std(features)
    target_mean, target_std = mean_std(target)
    return (mean - target_mean).pow(2).mean() + (std - target_std).pow(2).mean()


def structure_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the two feature maps each normalised to zero mean and unit
    standard deviation per channel: where things are, with the per-channel statistics that
    carry a painting's style taken out, so it asks for the photo's layout and not its colours."""
    mean, std = mean_std(features)
    target_mean, target_std = mean_std(target)
    return F.mse_loss((features - mean) / std, (target - target_mean) / target_std)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels: penalises high-frequency noise."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()


@dataclass
class LossTerms:
    """The weighted parts of a perceptual loss; ``total`` is what gets minimised."""

    total: torch.Tensor
    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """Plain numbers for histories and tables."""
        return {k: float(v.detach()) for k, v in vars(self).items()}


def _layer_weights(style_layers: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    """Per-layer style weights; a plain list of layers shares weight 1 equally."""
    if isinstance(style_layers, Mapping):
        weights = {k: float(v) for k, v in style_layers.items()}
    else:
        weights = {k: 1.0 / len(style_layers) for k in style_layers} if style_layers else {}
    if not all(w >= 0 and math.isfinite(w) for w in weights.values()):
        raise StylelibError(f"Style layer weights must be finite numbers >= 0, got {weights}.")
    return weights


class PerceptualLoss(nn.Module):
    """``content_weight·content + style_weight·Σ w_l·style_l + tv_weight·TV`` on one backbone.

    Targets are computed once by :meth:`set_content` and :meth:`set_style`, then reused on
    every evaluation: only the image being optimised goes through the network. With
    ``precision`` (e.g. ``torch.bfloat16``, see :mod:`stylelib.precision`) the network's passes,
    targets' and image's alike, run under autocast to it, and their features return to float32
    before the Gram matrices and sums.
    """

    def __init__(
        self,
        *,
        content_layers: Sequence[str] = CONTENT_LAYERS,
        style_layers: Sequence[str] | Mapping[str, float] = STYLE_LAYERS,
        content_weight: float = 1.0,
        style_weight: float = 1.0,
        tv_weight: float = 0.0,
        backbone: str | None = None,
        extractor: FeatureExtractor | None = None,
        precision: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.precision = precision
        for name, value in (("content_weight", content_weight), ("style_weight", style_weight),
                            ("tv_weight", tv_weight)):
            check_number(value, name)
        self.content_layers = tuple(content_layers)
        self.style_weights = _layer_weights(style_layers)
        self.weights = (content_weight, style_weight, tv_weight)
        layers = [*self.content_layers, *self.style_weights]
        self.extractor = extractor or FeatureExtractor(layers, backbone)
        missing = set(layers) - set(self.extractor.layers)
        if missing:
            raise StylelibError(f"The extractor does not compute {sorted(missing)}.")
        self.content_targets: dict[str, torch.Tensor] = {}
        self.style_targets: dict[str, torch.Tensor] = {}

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The backbone's float32 features of ``image``, computed in :attr:`precision`."""
        if self.precision is None:
            return self.extractor(image)  # type: ignore[no-any-return]
        with autocast(image.device, self.precision):
            computed = self.extractor(image)
        return {k: v.float() for k, v in computed.items()}

    @torch.no_grad()
    def set_content(self, image: torch.Tensor) -> None:
        """Record the content image's features at the content layers."""
        features = self.features(image)
        self.content_targets = {k: features[k].detach() for k in self.content_layers}

    @torch.no_grad()
    def set_style(self, image: torch.Tensor | Sequence[torch.Tensor],
                  blend: Sequence[float] | None = None) -> None:
        """Record the style image's Gram matrices at the style layers; for several images,
        their mean weighted by ``blend`` (scaled to sum to 1; equal by default): one texture
        between them.
        A Gram matrix is divided by the map's size, so paintings of any size mix evenly."""
        images = [image] if isinstance(image, torch.Tensor) else list(image)
        weights = check_blend(blend, len(images))
        targets: dict[str, torch.Tensor] = {}
        for picture, weight in zip(images, weights, strict=True):
            features = self.features(picture)
            for k in self.style_weights:
                gram = weight * gram_matrix(features[k]).detach()
                targets[k] = targets[k] + gram if k in targets else gram
        self.style_targets = targets

    def forward(self, image: torch.Tensor) -> LossTerms:
        """Evaluate every term on ``image`` (one backbone pass)."""
        content_weight, style_weight, tv_weight = self.weights
        if content_weight and not self.content_targets:
            raise StylelibError("Call set_content(image) before evaluating a content loss.")
        if style_weight and not self.style_targets:
            raise StylelibError("Call set_style(image) before evaluating a style loss.")
        features = self.features(image)
        zero = image.new_zeros(())
        content = sum(
            (content_loss(features[k], t) for k, t in self.content_targets.items()), zero
        )
        style = sum(
            (self.style_weights[k] * style_loss(features[k], t)
             for k, t in self.style_targets.items()), zero
        )
        tv = total_variation(image) if tv_weight else zero
        total = content_weight * content + style_weight * style + tv_weight * tv
        return LossTerms(total, content, style, tv)
