"""A perceptual loss evaluated tile by tile, for optimising an image too large for one pass.

The style term needs the Gram matrices of the whole image, and a Gram matrix is a sum over
positions: a first pass without gradients adds up what each tile's *owned* positions give
(:class:`stylelib.tiles.Tile`). A second pass backpropagates, tile by tile, the style loss's
first-order change ``2⟨G - A, ΔG⟩ / ‖A‖²`` with ``G`` the whole image's Gram, plus the tile's
share of the content error; the tiles' gradients add up to the whole image's. The network's
activations are held for one tile at a time (the image, its gradient and the optimiser's
history stay full-size), at about 4/3 of the untiled time plus the margin each tile computes
around what it owns. The margin stands in for the rest of the image as the network sees it;
what it leaves out is measured in the tests.
"""

from __future__ import annotations

import math

import torch

from stylelib.errors import StylelibError
from stylelib.losses import EPS, LossTerms, PerceptualLoss, total_variation
from stylelib.precision import autocast
from stylelib.tiles import Tile, fitted, layout

STRIDE = 16
"""VGG's deepest style layer (``relu5_1``) is 16 times smaller than the image: tiles start on
this grid so that every layer's owned positions split the feature map exactly."""
MARGIN = 64
"""Pixels each tile computes beyond what it owns, on each side that has a neighbour."""


def _stride(window: torch.Tensor, features: torch.Tensor) -> int:
    """How many times smaller than ``window`` the ``features`` computed from it are (a power
    of two; a window cut at the image's edge need not be a multiple of it)."""
    return int(2 ** round(math.log2(window.shape[-2] / features.shape[-2])))


class _Precomputed(torch.autograd.Function):
    """``value``, whose gradient with respect to ``image`` was computed beforehand."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, image: torch.Tensor,
                value: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gradient)
        return value.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
                 ) -> tuple[torch.Tensor, None, None]:
        (gradient,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * gradient, None, None


class TiledLoss:
    """``loss`` (a :class:`~stylelib.losses.PerceptualLoss` with its style targets set) on
    images of any size, a window of at most ``tile`` px a pass; call :meth:`set_content` first
    (it fixes the image size)."""

    def __init__(self, loss: PerceptualLoss, tile: int, margin: int = MARGIN) -> None:
        if tile < 4 * margin + STRIDE:  # two margins each side of an owned border, and a step
            raise StylelibError(f"Tiles of {tile} px cannot keep a {margin} px margin round "
                                f"what they own: use tiles of at least {4 * margin + STRIDE} px.")
        self.loss, self.tile, self.margin = loss, tile, margin
        self.tiles: list[Tile] = []
        self.shape = (0, 0)
        self.content: list[dict[str, torch.Tensor]] = []
        self.content_energy: dict[str, float] = {}
        self.positions: dict[str, int] = {}

    def _owned_features(self, window: torch.Tensor, tile: Tile) -> dict[str, torch.Tensor]:
        """The backbone's features of ``tile``'s window (in the loss's precision), each layer's
        owned positions only, as ``[C, positions]`` float32."""
        with autocast(window.device, self.loss.precision):
            features = self.loss.extractor(window)
        # only the owned part is made float32
        return {k: tile.owned_part(v[0], _stride(window, v)).float().flatten(1)
                for k, v in features.items()}

    def _windows(self, image: torch.Tensor) -> list[tuple[Tile, torch.Tensor]]:
        if tuple(image.shape[-2:]) != self.shape:
            raise StylelibError(f"The loss was set for {self.shape} images, got "
                                f"{tuple(image.shape[-2:])}: call set_content with that size.")
        return [(tile, tile.window(image)) for tile in self.tiles]

    @torch.no_grad()
    def set_content(self, image: torch.Tensor) -> None:
        """Lay the tiles out for ``image``'s size (on the :data:`STRIDE` grid of the image
        padded up to it, the last row and column cut at its edge) and record each tile's owned
        content features, their energy and every layer's number of positions."""
        height, width = image.shape[-2:]
        grid = (height + -height % STRIDE, width + -width % STRIDE)
        longest, overlap = self.tile // STRIDE * STRIDE, 2 * self.margin
        sides = (fitted(grid[0], longest, overlap, STRIDE),
                 fitted(grid[1], longest, overlap, STRIDE))
        self.tiles = layout(*grid, sides, overlap, STRIDE)
        self.shape = (height, width)
        self.content, energy = [], dict.fromkeys(self.loss.content_layers, 0.0)
        positions: dict[str, int] = {}
        for tile, window in self._windows(image):
            owned = self._owned_features(window, tile)
            self.content.append({k: owned[k] for k in self.loss.content_layers})
            for k in self.loss.content_layers:
                energy[k] += float(owned[k].square().sum())
            for k, value in owned.items():
                positions[k] = positions.get(k, 0) + value.shape[1]
        self.content_energy, self.positions = energy, positions

    @torch.no_grad()
    def grams(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The whole image's Gram matrices at the style layers, added up tile by tile."""
        sums: dict[str, torch.Tensor] = {}
        for tile, window in self._windows(image):
            features = self._owned_features(window, tile)
            for k in self.loss.style_targets:
                flat = features[k]
                # float32 products, summed in float64 on the CPU (MPS has no float64)
                part = (flat @ flat.T).to("cpu", torch.float64)
                sums[k] = sums[k] + part if k in sums else part
        return {k: (total / self.positions[k]).float()[None].to(image.device)
                for k, total in sums.items()}

    def __call__(self, image: torch.Tensor) -> LossTerms:
        """The loss's terms on ``[1, 3, H, W]`` ``image`` (unweighted, as
        :class:`~stylelib.losses.PerceptualLoss` reports them); ``total`` carries the gradient
        of the whole image's loss, computed here tile by tile."""
        content_weight, style_weight, tv_weight = self.loss.weights
        if not self.tiles or (style_weight and not self.loss.style_targets):
            raise StylelibError("Call set_style on the loss and set_content here first.")
        zero = torch.zeros((), device=image.device)
        grams = self.grams(image) if self.loss.style_targets else {}
        style, slopes = zero, {}
        for k, target in self.loss.style_targets.items():
            energy = target.square().sum() + EPS
            difference = grams[k] - target
            style = style + self.loss.style_weights[k] * difference.square().sum() / energy
            # Σ_p fᵀ S f has gradient 2 S f, the relative error's through G (S symmetric)
            slopes[k] = self.loss.style_weights[k] * 2 * difference[0] / energy / self.positions[k]
        gradient = torch.zeros_like(image)
        content = zero
        for (tile, window), targets in zip(self._windows(image), self.content, strict=True):
            if not targets and not style_weight:
                break  # nothing in the network to evaluate
            part = window.detach().requires_grad_(True)
            with torch.enable_grad():
                features = self._owned_features(part, tile)
                content_part = sum(((features[k] - t).square().sum()
                                    / (self.content_energy[k] + EPS)
                                    for k, t in targets.items()), zero)
                style_part = sum((((slope @ features[k]) * features[k]).sum()
                                  for k, slope in slopes.items()), zero)
                weighted = content_weight * content_part + style_weight * style_part
                if weighted.requires_grad:
                    weighted.backward()  # type: ignore[no-untyped-call]
            if part.grad is not None:
                tile.window(gradient).add_(part.grad)
            content = content + content_part.detach()
        tv = zero
        if tv_weight:
            with torch.enable_grad():
                pixels = image.detach().requires_grad_(True)
                tv = total_variation(pixels)
                (tv_weight * tv).backward()  # type: ignore[no-untyped-call]
            assert pixels.grad is not None
            gradient += pixels.grad
            tv = tv.detach()
        total = content_weight * content + style_weight * style + tv_weight * tv
        return LossTerms(_Precomputed.apply(image, total, gradient), content, style, tv)
