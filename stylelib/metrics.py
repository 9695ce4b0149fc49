"""Scores that compare methods fairly: perceptual errors under one loss network, SSIM to the
photo, how well tiles join, and the Markdown tables the chapters print them in."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from skimage.metrics import structural_similarity

from stylelib.backbones import FeatureExtractor
from stylelib.errors import StylelibError
from stylelib.flow import trusted_flow, warp
from stylelib.images import check_image
from stylelib.losses import PerceptualLoss, mean_std, relative_error
from stylelib.tiles import Tile


@torch.no_grad()
def perceptual_errors(
    image: torch.Tensor, content: torch.Tensor, style: torch.Tensor, loss: PerceptualLoss
) -> dict[str, float]:
    """Relative content error to ``content`` and Gram style error to ``style`` of ``image``.

    These are the unweighted terms every method in the book minimises (content at relu4_2,
    style over relu1_1…relu5_1), so one ``loss`` scores all methods with the same yardstick.
    """
    image = check_image(image)
    loss.set_content(check_image(content, "content"))
    loss.set_style(check_image(style, "style"))
    terms = loss(image)
    return {"content": float(terms.content), "style": float(terms.style)}


@torch.no_grad()
def statistics_error(image: torch.Tensor, style: torch.Tensor, extractor: FeatureExtractor
                     ) -> float:
    """Relative error of the per-channel means and standard deviations of ``image``'s features
    to ``style``'s, summed over the extractor's layers: the statistics AdaIN matches."""
    ours, theirs = extractor(check_image(image)), extractor(check_image(style, "style"))
    total = 0.0
    for layer in extractor.layers:
        (mean, std), (target_mean, target_std) = mean_std(ours[layer]), mean_std(theirs[layer])
        total += float(relative_error(mean, target_mean) + relative_error(std, target_std))
    return total


@torch.no_grad()
def content_error(image: torch.Tensor, photo: torch.Tensor, extractor: FeatureExtractor,
                  layer: str = "relu2_2") -> float:
    """Relative error of ``image``'s features at ``layer`` to the photo's. At ``relu2_2`` (where
    Johnson et al. measure content) it sees edges and small shapes, so it catches a result that
    keeps the photo's layout at ``relu4_2`` but paints over its houses and windows."""
    ours = extractor(check_image(image))[layer]
    theirs = extractor(check_image(photo, "photo"))[layer]
    return float(relative_error(ours, theirs))


def style_separation(outputs: Sequence[torch.Tensor], extractor: FeatureExtractor) -> float:
    """How different one photo's results for different paintings are: the mean, over ordered
    pairs, of :func:`statistics_error` between two results. A method that paints every painting
    alike scores near 0; compare it with Gatys's results for the same paintings."""
    if len(outputs) < 2:
        raise ValueError(f"style_separation needs results for at least 2 paintings, got "
                         f"{len(outputs)}.")
    pairs = [(a, b) for i, a in enumerate(outputs) for j, b in enumerate(outputs) if i != j]
    return sum(statistics_error(a, b, extractor) for a, b in pairs) / len(pairs)


def ssim(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Structural similarity (Wang et al. 2004) of two same-size RGB images in [0, 1]."""
    image, reference = check_image(image), check_image(reference, "reference")
    if image.shape != reference.shape:
        raise ValueError(
            f"SSIM needs images of one size, got {tuple(image.shape)} and "
            f"{tuple(reference.shape)}: resize one to the other first."
        )
    arrays = [t[0].permute(1, 2, 0).float().cpu().numpy() for t in (image, reference)]
    score = structural_similarity(*arrays, channel_axis=2, data_range=1.0)  # type: ignore[no-untyped-call]
    return float(score)


def psnr(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (infinite when equal): how
    closely a tiled result matches the untiled one."""
    error = float((check_image(image).float() - check_image(reference, "reference").float())
                  .square().mean())
    return math.inf if error == 0 else -10 * math.log10(error)


def seam_ratio(image: torch.Tensor, parts: Sequence[Tile]) -> float:
    """Mean gradient magnitude across where tiles meet, over that everywhere else: about 1
    when no seam shows, above 1 for a visible edge, below for a blurred band.

    Where two tiles meet is every fade between neighbours (pixels both tiles paint); the
    gradient counted there is the one across the seam (horizontal for tiles side by side),
    compared with the same gradient elsewhere; the two directions' ratios are averaged.
    """
    across, down = _neighbour_differences(image)
    across_columns, across_rows = across.mean(dim=(0, 1, 2)), down.mean(dim=(0, 1, 3))
    ratios = []
    for gradients, starts, length in ((across_columns, {p.left for p in parts}, parts[0].width),
                                      (across_rows, {p.top for p in parts}, parts[0].height)):
        inside = torch.ones_like(gradients, dtype=torch.bool)
        ordered = sorted(starts)
        for first, second in itertools.pairwise(ordered):
            inside[second:first + length - 1] = False  # the overlap both tiles paint
        if not inside.all():
            ratios.append(float(gradients[~inside].mean() / gradients[inside].mean()))
    if not ratios:
        raise StylelibError("The image is one tile: there is no seam to measure.")
    return sum(ratios) / len(ratios)


def detail(image: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels, across and down: how much fine
    texture a picture holds. A fix against flicker that blends frames lowers it (strokes that
    moved are averaged into a smear); the ratio to the per-frame result measures that loss."""
    across, down = _neighbour_differences(image)
    return float(across.mean() + down.mean()) / 2


def _neighbour_differences(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute differences between each pixel and its right, and its lower, neighbour."""
    image = check_image(image).float()
    return ((image[..., :, 1:] - image[..., :, :-1]).abs(),
            (image[..., 1:, :] - image[..., :-1, :]).abs())


@torch.no_grad()
def temporal_error(outputs: Sequence[torch.Tensor], frames: Sequence[torch.Tensor],
                   flows: Sequence[torch.Tensor] | None = None,
                   masks: Sequence[torch.Tensor] | None = None) -> float:
    """Flicker: the mean over frames *t* > 0 of the squared difference between output *t* and
    output *t-1* warped onto it along the flow of the input ``frames``, where that flow can
    be trusted, divided by every value of the frame (Ruder et al. 2016; Huang et al. 2017).

    ``flows`` and ``masks`` are the backward flows and their reliable pixels (the true ones of
    a made clip, :mod:`stylelib.clips`); without them they come from the frames
    (:func:`stylelib.flow.trusted_flow`). Passing the input
    frames as ``outputs`` gives the clip's own error: the floor a stylised clip is held to.
    """
    if (flows is None) != (masks is None):
        raise StylelibError("Pass both flows and masks (a made clip's true ones), or neither.")
    if len(outputs) != len(frames) or len(frames) < 2:
        raise StylelibError(f"temporal_error needs as many outputs as frames, at least 2; got "
                            f"{len(outputs)} outputs for {len(frames)} frames.")
    total = 0.0
    for t in range(1, len(frames)):
        if flows is None or masks is None:
            flow, mask = trusted_flow(frames[t], frames[t - 1])
        else:
            flow, mask = flows[t - 1], masks[t - 1]
        output = check_image(outputs[t], "output").float()
        moved = warp(check_image(outputs[t - 1], "output").float(), flow.to(output.device))
        total += float((mask.to(output.device) * (output - moved).square()).mean())
    return total / (len(frames) - 1)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; floats are written with 3 significant digits."""
    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = [headers, ["---"] * len(headers), *([cell(v) for v in row] for row in rows)]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)
