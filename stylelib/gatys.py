"""Style transfer by optimisation (Gatys, Ecker & Bethge): change the pixels until the losses agree.

:func:`stylize` covers the paper and its follow-ups: L-BFGS or Adam, content/style/per-layer
weights, content or noise initialisation, total variation, luminance-only transfer that keeps
the photo's colours, and coarse-to-fine optimisation for larger outputs. :func:`synthesize_texture`
is the same machinery with no content term (Gatys et al.'s texture synthesis).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from stylelib.backbones import FeatureExtractor, default_backbone
from stylelib.colour import luminance_only, match_luminance, to_luminance
from stylelib.errors import ImageError, StylelibError, check_int
from stylelib.images import MIN_SIDE, check_image, check_size, resize, resize_to
from stylelib.losses import CONTENT_LAYERS, STYLE_LAYERS, LossTerms, PerceptualLoss
from stylelib.precision import reduced
from stylelib.result_cache import remembered
from stylelib.tiled_loss import TiledLoss

Optimizer = Literal["lbfgs", "adam"]
Init = Literal["content", "noise"]


@dataclass
class GatysResult:
    """The stylised image, the loss after every evaluation, and the wall time."""

    image: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


class Anchor(NamedTuple):
    """A picture the result should stay near where ``mask`` (``[1, 1, H, W]``, 0 to 1) says:
    ``weight`` times their mean squared difference joins the loss. In a video, the previous
    frame's result warped onto this one (Ruder et al. 2016's temporal loss)."""

    image: torch.Tensor
    mask: torch.Tensor
    weight: float


@dataclass
class AnchoredTerms(LossTerms):
    """The perceptual terms and the :class:`Anchor` term (unweighted)."""

    anchor: torch.Tensor


class _Anchored:
    """A perceptual loss with an :class:`Anchor`'s term added, for :func:`optimize`."""

    def __init__(self, loss: Callable[[torch.Tensor], LossTerms], anchor: Anchor) -> None:
        self.loss, self.anchor = loss, anchor

    def __call__(self, image: torch.Tensor) -> AnchoredTerms:
        terms = self.loss(image)
        anchor = (self.anchor.mask * (image - self.anchor.image).square()).mean()
        return AnchoredTerms(terms.total + self.anchor.weight * anchor, terms.content,
                             terms.style, terms.tv, anchor)


RESTART_ABOVE = 10.0
"""An L-BFGS loss this many times the best so far counts as an overshoot (see :func:`optimize`).
Without the restart, Gram matching up to relu2_1 from noise on VGG-19 kept overshooting and
ended at 23.4 from 0.69; ordinary overshoots of a few times the loss recover by themselves."""


def optimize(
    image: torch.Tensor,
    loss: Callable[[torch.Tensor], LossTerms],
    *,
    steps: int,
    optimizer: Optimizer = "lbfgs",
    lr: float | None = None,
    progress: bool = True,
    desc: str = "gatys",
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Minimise ``loss`` over the pixels of ``image`` for ``steps`` evaluations, kept in [0, 1].

    L-BFGS takes one iteration (one loss evaluation) per step, so both optimisers are compared
    at equal cost. It has no line search, so a step can overshoot; when the loss it reaches is
    more than :data:`RESTART_ABOVE` times the best seen, the image goes back to the best one and
    L-BFGS starts again with no curvature history (its first step is a short gradient step).
    ``callback(step, image)`` sees the image after each step.
    """
    check_int(steps, "steps")
    x = image.detach().contiguous().clone().requires_grad_(True)  # L-BFGS views the gradient flat

    def fresh() -> torch.optim.Optimizer:
        if optimizer == "lbfgs":
            return torch.optim.LBFGS([x], lr=lr or 1.0, max_iter=1, history_size=50)
        if optimizer == "adam":
            return torch.optim.Adam([x], lr=lr or 0.02)
        raise StylelibError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}.")

    opt = fresh()
    history: list[dict[str, float]] = []

    def closure() -> float:
        opt.zero_grad()
        terms = loss(x)
        terms.total.backward()  # type: ignore[no-untyped-call]
        history.append(terms.as_floats())
        return history[-1]["total"]

    best_loss, best = math.inf, x.detach().clone()
    with tqdm(total=steps, desc=desc, disable=not progress, leave=False) as bar:
        for step in range(steps):
            evaluated = x.detach().clone()
            opt.step(closure)
            now = history[-1]["total"]
            if now < best_loss:
                best_loss, best = now, evaluated
            elif optimizer == "lbfgs" and not now <= RESTART_ABOVE * best_loss:
                with torch.no_grad():  # an overshoot: back to the best image, forget curvature
                    x.copy_(best)
                opt = fresh()
            with torch.no_grad():
                x.clamp_(0, 1)
            bar.update()
            bar.set_postfix(loss=f"{now:.4g}")
            if callback is not None:
                callback(step, x.detach())
    if not math.isfinite(history[-1]["total"]):
        raise StylelibError("The loss diverged (NaN/inf): lower lr or the weights and run again.")
    return x.detach(), history


SINGLE_SCALE_UP_TO = 256
"""Outputs up to this long side (the book's) are solved at one scale unless told otherwise."""
COARSEST_SIDE = 128
"""Where the default pyramid of a larger output starts."""


def default_scales(side: int) -> int:
    """Pyramid levels :func:`stylize` uses for an output of long side ``side`` unless told.

    One up to 256 px. Above, enough halvings to start at 128-255 px: VGG-19's ``relu5_1`` sees
    156 px, so the coarse level paints the painting's large strokes over the whole picture and
    the finer levels add detail (at 512 px, three levels turn a fine texture over an almost
    untouched photo into the large swirls of the paper's figure; chapter 3 shows both).
    """
    check_int(side, "side")
    if side <= SINGLE_SCALE_UP_TO:
        return 1
    return 1 + int(math.log2(side / COARSEST_SIDE))


FULL_STEPS_UP_TO = 1024
"""Coarse-to-fine levels up to this long side take every step :func:`stylize` is given."""


def level_steps(steps: int, side: int) -> int:
    """The steps a level of long side ``side`` takes: ``steps`` up to
    :data:`FULL_STEPS_UP_TO` px, then a quarter at twice that side, a sixteenth at four
    times (at least one). Such a level starts from the one below, already painted, and only
    sharpens it; each of its steps costs as many times more as it has pixels, so each level
    takes about the time of the 1024 px one."""
    check_int(steps, "steps")
    return max(1, round(steps * min(1.0, FULL_STEPS_UP_TO / side) ** 2))


def _scales(size: int, scales: int) -> list[int]:
    """Long sides of a coarse-to-fine pyramid ending at ``size``, each twice the previous."""
    check_int(scales, "scales")
    sides = [size // 2**k for k in reversed(range(scales))]
    if sides[0] < MIN_SIDE:
        raise ImageError(
            f"scales={scales} makes the coarsest scale {sides[0]} px, below the backbone's "
            f"{MIN_SIDE} px: use fewer scales or a larger image."
        )
    return sides


def _levels(target: torch.Tensor, scales: int | None) -> int:
    """How many coarse-to-fine levels to solve: ``scales``, or by default
    :func:`default_scales`, fewer for a narrow image rather than a stretched coarse one."""
    if scales is not None:
        return scales
    levels = default_scales(max(target.shape[-2:]))
    while levels > 1 and min(target.shape[-2:]) // 2 ** (levels - 1) < MIN_SIDE:
        levels -= 1
    return levels


def _start_image(init: Init | torch.Tensor, previous: torch.Tensor | None,
                 level_content: torch.Tensor, side: int, generator: torch.Generator
                 ) -> torch.Tensor:
    """Where one level's optimisation starts: the coarser level's result upsampled, else
    ``init`` (the content, noise from ``generator``, or a given image) at this level's size."""
    if previous is not None:
        return F.interpolate(previous, size=level_content.shape[-2:], mode="bilinear")
    if isinstance(init, torch.Tensor):  # contiguous: L-BFGS views the pixels' gradient flat
        return resize(check_image(init, "init"), side).to(level_content.device).contiguous()
    if init == "content":
        return level_content
    if init == "noise":
        return torch.rand(level_content.shape, generator=generator).to(level_content.device)
    raise StylelibError(f"init must be 'content', 'noise' or a tensor, got {init!r}.")


def stylize(
    content: torch.Tensor,
    style: torch.Tensor | Sequence[torch.Tensor],
    *,
    style_blend: Sequence[float] | None = None,
    steps: int = 100,
    content_weight: float = 1.0,
    style_weight: float = 10.0,
    style_layers: Sequence[str] | Mapping[str, float] = STYLE_LAYERS,
    content_layers: Sequence[str] = CONTENT_LAYERS,
    tv_weight: float = 0.0,
    optimizer: Optimizer = "lbfgs",
    lr: float | None = None,
    init: Init | torch.Tensor = "content",
    preserve_color: bool = False,
    scales: int | None = None,
    tile: int | None = None,
    backbone: str | None = None,
    seed: int = 0,
    bf16: bool | None = None,
    anchor: Anchor | None = None,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> GatysResult:
    """Optimise an image that has ``content``'s layout and ``style``'s textures.

    ``content`` and ``style`` are ``[1, 3, H, W]`` tensors in [0, 1] (see
    :func:`stylelib.load_image`); the output has the content's size. Several styles, with
    ``style_blend`` weights (equal by default), give the texture between them: the weighted
    mean of their Gram matrices is the target. ``scales > 1`` first solves
    at 1/2, 1/4, … of that size and upsamples each result as the next start (coarse to fine),
    which gives large outputs coherent large-scale structure; by default
    (:func:`default_scales`) outputs above 256 px are solved coarse to fine from 128-255 px.
    ``steps`` counts the evaluations of each level up to :data:`FULL_STEPS_UP_TO` px; a larger
    level takes fewer (:func:`level_steps`). With ``tile``, a level larger than ``tile`` px is
    optimised in tiles of at most that size (:class:`~stylelib.tiled_loss.TiledLoss`: the Gram
    matrices still of the whole image, the network's memory that of a tile, the same steps).
    The style image is resized at every level by the same
    factor as the photo, so pass it at the output's size for strokes the size the painting has
    relative to its frame. ``preserve_color`` transfers
    style to the luminance only and keeps the photo's colours (Gatys et al. 2017). ``bf16``
    runs the backbone's passes in bfloat16 (the image, Gram matrices and losses stay float32);
    ``None`` does so where the hardware has it (:func:`stylelib.precision.reduced`).
    ``anchor`` keeps the result near a given picture where its mask says (see :class:`Anchor`).

    Where a book's result cache is active (:mod:`stylelib.result_cache`), a pair already
    optimised with the same settings and backbone comes from there, with the ``seconds`` it
    took then; with a ``callback`` the steps always run.
    """
    content = check_image(content, "content")
    if tile is not None:
        check_int(tile, "tile")
    styles = ([check_image(style, "style")] if isinstance(style, torch.Tensor) else
              [check_image(s, f"style[{k}]") for k, s in enumerate(style)])
    settings: dict[str, Any] = {
        "style_blend": None if style_blend is None else [float(w) for w in style_blend],
        "steps": steps, "content_weight": content_weight, "style_weight": style_weight,
        "style_layers": style_layers, "content_layers": content_layers, "tv_weight": tv_weight,
        "optimizer": optimizer, "lr": lr, "init": init, "preserve_color": preserve_color,
        "scales": scales, "tile": tile, "backbone": backbone or default_backbone(), "seed": seed,
        "precision": (reduced(content.device) if bf16 is None
                      else torch.bfloat16 if bf16 else None),
        "anchor": anchor,
    }

    def optimised() -> GatysResult:
        return _stylize(content, styles, **settings, progress=progress, callback=callback)

    if callback is not None:  # it sees every step, so the steps must run
        return optimised()
    return remembered("gatys.stylize", optimised, content, styles, settings, str(content.device))


def _stylize(
    content: torch.Tensor,
    styles: list[torch.Tensor],
    *,
    style_blend: Sequence[float] | None,
    steps: int,
    content_weight: float,
    style_weight: float,
    style_layers: Sequence[str] | Mapping[str, float],
    content_layers: Sequence[str],
    tv_weight: float,
    optimizer: Optimizer,
    lr: float | None,
    init: Init | torch.Tensor,
    preserve_color: bool,
    scales: int | None,
    tile: int | None,
    backbone: str,
    seed: int,
    precision: torch.dtype | None,
    anchor: Anchor | None,
    progress: bool,
    callback: Callable[[int, torch.Tensor], None] | None,
) -> GatysResult:
    """:func:`stylize`'s optimisation, every setting given (the result cache's computation)."""
    start = time.perf_counter()
    if preserve_color:
        styles = [match_luminance(to_luminance(style), content) for style in styles]
        target = to_luminance(content)
    else:
        target = content
    loss = PerceptualLoss(
        content_layers=content_layers, style_layers=style_layers, content_weight=content_weight,
        style_weight=style_weight, tv_weight=tv_weight, backbone=backbone, precision=precision,
    ).to(content.device)
    full_side = max(target.shape[-2:])
    levels = _levels(target, scales)
    generator = torch.Generator().manual_seed(seed)
    image: torch.Tensor | None = None
    history: list[dict[str, float]] = []
    for level, side in enumerate(_scales(full_side, levels)):
        level_content = resize(target, side)
        loss.set_style([resize(style, max(MIN_SIDE, round(max(style.shape[-2:]) * side
                                                          / full_side))) for style in styles],
                       style_blend)
        evaluate: Callable[[torch.Tensor], LossTerms] = loss
        if tile is not None and side > tile:
            evaluate = tiled = TiledLoss(loss, tile)
            tiled.set_content(level_content)
        else:
            loss.set_content(level_content)
        start_image = _start_image(init, image, level_content, side, generator)
        shape = (int(level_content.shape[-2]), int(level_content.shape[-1]))
        if anchor is not None:
            evaluate = _Anchored(evaluate, Anchor(
                resize_to(anchor.image, shape), resize_to(anchor.mask, shape), anchor.weight))
        image, level_history = optimize(
            start_image, evaluate, steps=level_steps(steps, side), optimizer=optimizer, lr=lr,
            progress=progress, desc=f"gatys {side}px" if levels > 1 else "gatys", callback=callback,
        )
        history += [{**h, "scale": level} for h in level_history]
    assert image is not None
    if preserve_color:
        image = luminance_only(image, content)
    return GatysResult(image, history, time.perf_counter() - start)


def synthesize_texture(
    style: torch.Tensor,
    *,
    size: int,
    steps: int = 100,
    style_layers: Sequence[str] | Mapping[str, float] = STYLE_LAYERS,
    optimizer: Optimizer = "lbfgs",
    backbone: str | None = None,
    pooling: str = "max",
    seed: int = 0,
    progress: bool = True,
) -> GatysResult:
    """Start from noise and match only the style's Gram matrices: a new sample of its texture.

    ``pooling="avg"`` uses average pooling in the backbone, which Gatys et al. found gives
    slightly smoother textures.
    """
    style = check_image(style, "style")
    check_size(size)
    start = time.perf_counter()
    layers = list(style_layers)
    loss = PerceptualLoss(
        content_layers=(), style_layers=style_layers, content_weight=0.0, style_weight=1.0,
        extractor=FeatureExtractor(layers, backbone, pooling=pooling),
    ).to(style.device)
    loss.set_style(style)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((1, 3, size, size), generator=generator).to(style.device)
    image, history = optimize(
        noise, loss, steps=steps, optimizer=optimizer, progress=progress, desc="texture"
    )
    return GatysResult(image, history, time.perf_counter() - start)
