"""Fast style transfer (Johnson, Alahi & Fei-Fei 2016): train a network once per style, then
stylise any photo with one forward pass.

:class:`TransformerNet` is the paper's image transformation network with instance normalisation
(Ulyanov et al. 2016) and resize-convolution upsampling (Odena et al. 2016). :func:`train` fits
it to one style with the same :class:`~stylelib.losses.PerceptualLoss` that Gatys optimisation
minimises, saving checkpoints and resuming after an interruption. :func:`save_weights`,
:func:`load_weights`, :func:`stylize` and :func:`export_onnx` use the trained network.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from stylelib import weight_files
from stylelib.data import (
    MultiScaleCrops,
    PhotoCrops,
    batches_from,
    default_workers,
    photo_files,
)
from stylelib.distributed import rank_part, world
from stylelib.errors import StylelibError, check_int, check_number
from stylelib.files import write_atomically
from stylelib.flow import camera_flow, warp
from stylelib.images import (
    MIN_SIDE,
    check_image,
    check_size,
    pad_to_multiple,
    resize,
)
from stylelib.losses import CONTENT_LAYERS, STYLE_LAYERS, PerceptualLoss
from stylelib.precision import autocast, reduced
from stylelib.profiles import pick_device, seeded
from stylelib.tiles import paint_normalised
from stylelib.training import Plan, TrainResult, fit, step_seed
from stylelib.weight_files import WeightKind


def _conv(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, *, relu: bool = True
) -> list[nn.Module]:
    """A reflection-padded convolution (no dark zero borders), instance norm, then ReLU.

    The convolution has no bias: the norm subtracts each channel's mean, which cancels it.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2,
                  padding_mode="reflect", bias=False),
        nn.InstanceNorm2d(out_channels, affine=True),
    ]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


class ResizeConv(nn.Module):
    """Nearest-neighbour upsampling by 2, then a reflection-padded 3x3 convolution, computed
    exactly but on the small image.

    After nearest upsampling a 3x3 window covers only 2x2 distinct input pixels, and which ones
    depends on the output pixel's phase (even or odd row and column). Each of the four phases is
    therefore a 2x2 convolution of the small image whose taps are sums of the 3x3 kernel's: the
    same output from 4/9 of the multiply-adds and no enlarged copy. Every output pixel still sees
    the whole kernel, so, unlike a stride-2 transposed convolution, nothing paints checkerboards.
    """

    taps: torch.Tensor

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, bias=False)
        """The 3x3 kernel as applied to the enlarged image (no bias: instance norm follows)."""
        # [phase, small-image tap, kernel tap]: how a row of 3 taps folds onto 2 small pixels.
        phase_taps = [[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]
        self.register_buffer("taps", torch.tensor(phase_taps), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` to ``[B, out_channels, 2H, 2W]``."""
        height, width = x.shape[-2:]
        kernels = torch.einsum("apk,bql,oikl->oabipq", self.taps, self.taps, self.conv.weight)
        # Replicating one pixel of the small image = reflecting one pixel of the enlarged one.
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
        phases = F.conv2d(padded, kernels.flatten(0, 2))
        phases = phases.reshape(x.shape[0], self.conv.out_channels, 2, 2, height + 1, width + 1)
        rows = [
            torch.stack([phases[:, :, a, b, a:a + height, b:b + width] for b in (0, 1)], -1)
            for a in (0, 1)
        ]
        return torch.stack(rows, 3).flatten(4, 5).flatten(2, 3)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions added to their input: the block only has to learn a change."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv(channels, channels, 3),
                                  *_conv(channels, channels, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + body(x)``."""
        result: torch.Tensor = x + self.body(x)
        return result


class TransformerNet(nn.Module):
    """Johnson et al.'s image transformation network: RGB in [0, 1] to stylised RGB in [0, 1].

    Two stride-2 convolutions, five residual blocks at 1/4 resolution, two resize-convolutions
    back up, a 9x9 convolution to RGB. The output goes through a sigmoid rather than a clamp: a
    clamp sends no gradient to pixels beyond [0, 1], so early in training they can stay stuck at
    black or white, while a sigmoid keeps every pixel trainable and still bounds the image.
    """

    card: dict[str, str]
    """The model card that :func:`load_weights` read (empty for a new network)."""

    def __init__(self) -> None:
        super().__init__()
        self.card = {}
        self.encoder = nn.Sequential(*_conv(3, 32, 9), *_conv(32, 64, 3, 2), *_conv(64, 128, 3, 2))
        self.residuals = nn.Sequential(*(ResidualBlock(128) for _ in range(5)))
        self.decoder = nn.Sequential(
            ResizeConv(128, 64), nn.InstanceNorm2d(64, affine=True), nn.ReLU(inplace=True),
            ResizeConv(64, 32), nn.InstanceNorm2d(32, affine=True), nn.ReLU(inplace=True),
        )
        self.to_rgb = nn.Conv2d(32, 3, 9, padding=4, padding_mode="reflect")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Stylise ``[B, 3, H, W]`` images of any size; the output has the input's size.

        The network halves the size twice, so the input is reflection-padded to a multiple of 4
        on the bottom and right, and the result is cropped back.
        """
        height, width = image.shape[-2:]
        features = self.decoder(self.residuals(self.encoder(pad_to_multiple(image, 4))))
        if features.device.type == "cpu":
            # oneDNN runs a convolution with 3 output channels about twice as fast channels-last.
            features = features.contiguous(memory_format=torch.channels_last)
        rgb = torch.sigmoid(self.to_rgb(features))
        return rgb[..., :height, :width].contiguous()


# --------------------------------------------------------------------------- weight files


KIND = WeightKind("TransformerNet", "stylelib.fast.save_weights", "load_weights",
                  "stylelib.fast.train")


def save_weights(net: TransformerNet, path: str | Path, card: Mapping[str, str]) -> Path:
    """Save ``net`` as fp16 safetensors (half the size) with the model card as metadata."""
    return weight_files.save_weights(net, path, card)


def load_weights(path: str | Path) -> TransformerNet:
    """A float32 :class:`TransformerNet` (eval mode) from a safetensors file, card attached."""
    net, card = weight_files.load_weights(TransformerNet(), path, KIND)
    net.card = card
    return net


# --------------------------------------------------------------------------- training


def _check_numbers(*, steps: int, batch_size: int, checkpoint_every: int, preview_every: int,
                   warmup: int, cooldown: int, size: int, scale: int | None, lr: float,
                   seed: int, scales: Sequence[int]) -> None:
    """Refuse a training setting that is not a number of the right kind, and ``scale`` with
    ``scales``."""
    if scales and scale is not None:
        raise StylelibError("Pass scale (one photo size) or scales (several), not both.")
    for side in scales:
        check_size(side, "scales")
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("checkpoint_every", checkpoint_every), ("preview_every", preview_every)):
        check_int(value, name)
    check_int(warmup, "warmup", minimum=0)
    check_int(cooldown, "cooldown", minimum=0)
    check_size(size)
    check_size(scale, "scale")
    check_number(lr, "lr", strict=True)
    check_int(seed, "seed", minimum=0)


def _checked_preview(preview: torch.Tensor | None) -> torch.Tensor | None:
    """The preview image, checked, if there is one."""
    return None if preview is None else check_image(preview, "preview")


def _style_targets(loss: PerceptualLoss, style: torch.Tensor, scales: Sequence[int]
                   ) -> dict[int, dict[str, torch.Tensor]]:
    """Set ``loss``'s style target to ``style``; with ``scales``, compute the targets of the
    painting resized to each long side (the last one stays set)."""
    targets = {}
    for side in scales:
        loss.set_style(resize(style, side))
        targets[side] = loss.style_targets
    if not scales:
        loss.set_style(style)
    return targets


Losses = tuple[torch.Tensor, dict[str, float]]
"""A step's total loss and its terms as numbers, what :func:`~stylelib.training.fit` takes."""
Scored = tuple[torch.Tensor, dict[str, float], torch.Tensor]
"""A step's :data:`Losses` and the network's pictures of the batch."""


def _at_batch_scale(step: Callable[[torch.Tensor], Scored], loss: PerceptualLoss,
                    targets: dict[int, dict[str, torch.Tensor]]) -> Callable[[Any], Scored]:
    """``step`` on a :class:`MultiScaleCrops` batch, against the painting at the batch's size."""
    def scaled(batch: Any) -> Scored:
        images, sides = batch
        loss.style_targets = targets[int(sides[0])]
        return step(images)

    return scaled


def _perceptual_step(net: TransformerNet, loss: PerceptualLoss, device: torch.device, bf16: bool
                     ) -> Callable[[torch.Tensor], Scored]:
    """One step's loss: stylise the batch and score it against itself as the content."""
    def step(batch: torch.Tensor) -> Scored:
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss.set_content(batch)
            painted = net(batch)
            terms = loss(painted)
        return terms.total, terms.as_floats(), painted

    return step


def _losses(step: Callable[[Any], Scored]) -> Callable[[Any], Losses]:
    """``step`` reporting only its :data:`Losses`."""
    def reported(batch: Any) -> Losses:
        total, losses, _ = step(batch)
        return total, losses

    return reported


MOTION = (4.0, 0.03)
"""The largest shift (pixels, each way) and zoom step of the camera motion the temporal term
trains with: about what a handheld clip moves between two frames at 256 px."""
GRAIN = 0.01
"""The standard deviation of the sensor noise added to the moved crop: a frame is never the
last one moved exactly (Gupta et al. 2017 train stability against such noise)."""


def temporal_term(net: TransformerNet, batch: torch.Tensor, painted: torch.Tensor, seed: int
                  ) -> torch.Tensor:
    """How much ``net`` flickers on the batch: each crop is moved by a random camera motion
    (up to :data:`MOTION`, drawn from ``seed``) with sensor grain, and the network's picture of
    the moved crop is compared with ``painted`` (its picture of ``batch``, which the step has
    already made) moved the same way, where the moved crop still sees it (mean squared
    difference; Huang et al. 2017, with made motion instead of video). Under ``torchrun`` the
    motions are drawn for the whole global batch."""
    generator = torch.Generator().manual_seed(seed)
    whole = batch.shape[0] * world().size
    shifts = rank_part((torch.rand(whole, 2, generator=generator) * 2 - 1) * MOTION[0])
    zooms = rank_part(1 + (torch.rand(whole, generator=generator) * 2 - 1) * MOTION[1])
    grain = rank_part(torch.randn((whole, *batch.shape[1:]), generator=generator) * GRAIN)
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    moves = [camera_flow(size, (float(x), float(y)), float(z), batch.float())
             for (x, y), z in zip(shifts.tolist(), zooms.tolist(), strict=True)]
    flows = torch.cat([flow for flow, _ in moves])
    seen = torch.cat([mask for _, mask in moves])
    moved = (warp(batch, flows) + grain.to(batch.device, batch.dtype)).clamp(0, 1)
    second: torch.Tensor = net(moved)
    return (seen * (second.float() - warp(painted.float(), flows)).square()).mean()


def _with_temporal(step: Callable[[Any], Scored],
                   net: TransformerNet, device: torch.device, bf16: bool, weight: float,
                   seed: int) -> Callable[[tuple[int, Any]], Losses]:
    """``step`` on an (index, batch) pair, plus ``weight`` times :func:`temporal_term` on the
    batch's images, its motion drawn from the step's own seed."""
    def steady(indexed: tuple[int, Any]) -> Losses:
        index, batch = indexed
        total, losses, painted = step(batch)
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            flicker = temporal_term(net, images.to(device), painted, step_seed(seed, index))
        return total + weight * flicker, {**losses, "temporal": float(flicker.detach())}

    return steady


def train(
    style: torch.Tensor,
    photos: Sequence[str | Path] | str | Path,
    *,
    steps: int,
    batch_size: int = 4,
    size: int = 256,
    scale: int | None = None,
    scales: Sequence[int] = (),
    content_weight: float = 1.0,
    style_weight: float = 10.0,
    tv_weight: float = 0.0,
    temporal_weight: float = 0.0,
    content_layers: Sequence[str] = CONTENT_LAYERS,
    style_layers: Sequence[str] = STYLE_LAYERS,
    lr: float = 1e-3,
    warmup: int = 100,
    cooldown: int = 0,
    bf16: bool = False,
    workers: int | None = None,
    backbone: str | None = None,
    device: str | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 200,
    seed: int = 0,
    start_from: str | Path | None = None,
    progress: bool = True,
    minutes: float | None = None,
    preview: torch.Tensor | None = None,
    preview_every: int = 50,
    callback: Callable[[int, dict[str, float], TransformerNet], None] | None = None,
) -> TrainResult[TransformerNet]:
    """Train a :class:`TransformerNet` to paint ``photos`` in the manner of ``style``.

    Each step stylises ``batch_size`` random ``size``-pixel crops (:class:`PhotoCrops`) and takes
    an Adam step on the perceptual loss; ``scale`` is the long side photos are resized to first
    (default: crops span the short side). ``scales`` (instead of ``scale``) trains at several
    sizes, batch by batch (:class:`~stylelib.data.MultiScaleCrops`), each batch against the
    painting resized to the same long side: pass ``style`` at the largest, and the network
    learns strokes for each size it will stylise (Gatys's, at 256 and at 512 px, differ).
    The layers default to the library's (content relu4_2,
    style relu1_1…relu5_1), the loss Gatys optimisation minimises; ``content_layers=["relu2_2"]``
    is Johnson et al.'s choice, which keeps far more of the photo's edges. The learning
    rate rises linearly over the first ``warmup`` steps: Adam's first step moves every weight by
    ``lr`` at once and overshoots (at 32 px the loss jumped from 5.7 to 169 without warm-up);
    over the last ``cooldown`` steps it falls linearly towards 0, so the final steps are small
    and average out the crop-to-crop noise instead of ending on one noisy step. ``bf16`` runs
    the forward passes in bfloat16 autocast (1.65x faster per step on the book's 2-core AVX-512
    BF16 CPU; in a test step the loss changed by 0.1%, the gradient's direction by cosine 0.999).
    ``workers`` processes decode the photos (default :func:`~stylelib.data.default_workers`).
    Under ``torchrun`` each process trains on its share of every batch (``batch_size`` is the
    global batch) and the weights move as one process's would (:mod:`stylelib.distributed`).

    With ``checkpoint``, the state is saved every ``checkpoint_every`` steps and at the end, and
    an existing checkpoint is resumed up to ``steps`` in total; weights and crops depend only on
    ``seed``, so the result equals an uninterrupted run's (bit for bit on one machine).
    ``start_from`` (a weights file) starts from a trained network instead of random weights, to
    train it further, e.g. with other loss weights (a fresh optimiser; pick a new ``seed`` so
    the crops differ from the first run's). ``minutes`` ends this call early once that much
    time has passed, with a checkpoint at the step reached (pass ``checkpoint``; the same call
    again goes on from there). ``preview`` (an image) is stylised every ``preview_every`` steps
    and at the end, to watch the network learn. ``temporal_weight`` adds
    :func:`temporal_term`, so the network paints a moving scene without flicker: each step
    then also paints the batch moved by a made camera motion (1.4x the time of a step without:
    3.4 s against 2.4 s at 256 px, batch 4, bfloat16, on 2 CPU cores).
    ``callback(step, losses, net)`` runs after each step; ``step`` counts the steps done.
    """
    _check_numbers(steps=steps, batch_size=batch_size, checkpoint_every=checkpoint_every,
                   preview_every=preview_every, warmup=warmup, cooldown=cooldown, size=size,
                   scale=scale, lr=lr, seed=seed, scales=scales)
    check_number(temporal_weight, "temporal_weight")
    style, preview = check_image(style, "style"), _checked_preview(preview)
    files, dev = photo_files(photos), pick_device(device)
    loss = PerceptualLoss(
        content_layers=content_layers, style_layers=style_layers, content_weight=content_weight,
        style_weight=style_weight, tv_weight=tv_weight, backbone=backbone,
    ).to(dev)
    targets = _style_targets(loss, style.to(dev), scales)
    net = (load_weights(start_from) if start_from is not None
           else seeded(TransformerNet, seed)).to(dev)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    settings: dict[str, object] = {
        "batch_size": batch_size, "size": size, "scale": scale, "content_weight": content_weight,
        "style_weight": style_weight, "tv_weight": tv_weight, "lr": lr, "warmup": warmup,
        "cooldown": cooldown, "bf16": bf16, "seed": seed, "backbone": loss.extractor.backbone,
        "content_layers": ",".join(content_layers), "style_layers": ",".join(style_layers),
        "photos": len(files), "start_from": None if start_from is None else Path(start_from).name,
        **({"scales": ",".join(map(str, scales))} if scales else {}),
        **({"temporal_weight": temporal_weight} if temporal_weight else {}),
    }
    plan = Plan(steps, lr, warmup, Path(checkpoint).expanduser() if checkpoint else None,
                checkpoint_every, settings, KIND, preview_every, progress, minutes, cooldown)
    crops = (MultiScaleCrops(files, size, seed, scales, batch_size) if scales
             else PhotoCrops(files, size, seed, scale))
    step = _perceptual_step(net, loss, dev, bf16)
    scored = _at_batch_scale(step, loss, targets) if scales else step
    shown = preview
    decoders = default_workers(dev, workers)

    def batches(done: int) -> Iterable[Any]:
        made = batches_from(crops, batch_size, done, steps, decoders)
        return zip(itertools.count(done), made, strict=False) if temporal_weight else made

    return fit(net, optimizer, plan, batches,
               _with_temporal(scored, net, dev, bf16, temporal_weight, seed) if temporal_weight
               else _losses(scored), callback=callback,
               preview=None if shown is None else lambda: stylize(net, shown))


# --------------------------------------------------------------------------- inference


OVERLAP = 128
"""Pixels neighbouring tiles share: twice the network's reach (about 54 px: a 9x9, two
stride-2 3x3s, ten 3x3s at a quarter size, two resize-convolutions and a 9x9), so every pixel a
tile owns is computed as in the whole image."""


def stylize(net: TransformerNet, image: torch.Tensor, tile: int | None = None, *,
            progress: bool = False) -> torch.Tensor:
    """Stylise one ``[1, 3, H, W]`` image of any size with a trained network.

    Runs in inference mode (no autograd bookkeeping) on the network's device, in bfloat16 where
    the hardware has it (:func:`stylelib.precision.reduced`: 308 ms instead of 557 ms at 512 px
    on 2 cores); the result is returned in float32 on the image's device as an ordinary tensor,
    free to modify or differentiate.

    With ``tile``, an image larger than ``tile`` px is painted in overlapping tiles of that
    size whose instance norms use the whole image's statistics
    (:func:`stylelib.tiles.paint_normalised`): memory stays that of one tile, and the result
    matches the untiled one.
    """
    image = check_image(image)
    device = next(net.parameters()).device

    def run(model: nn.Module, window: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(device, reduced(device)):
            result: torch.Tensor = model(window.to(device))
        return result

    height, width = image.shape[-2:]
    if tile is None or max(height, width) <= tile:
        return run(net, image).to(image.device, torch.float32, copy=True)
    return paint_normalised(run, net, image, tile, OVERLAP, 4, progress=progress).to(image.device)


def export_onnx(net: TransformerNet, path: str | Path, size: int = 256) -> Path:
    """Export ``net`` to ONNX with dynamic height and width (traced on a ``size``² image).

    The graph takes and returns ``[1, 3, H, W]`` RGB in [0, 1], inputs named ``image`` and
    outputs ``stylised``; it runs in onnxruntime, in browsers and on phones without PyTorch.
    """
    check_size(size)
    target = Path(path).expanduser()
    example = torch.full((1, 3, size, size), 0.5, device=next(net.parameters()).device)
    height = torch.export.Dim("height", min=MIN_SIDE)
    width = torch.export.Dim("width", min=MIN_SIDE)
    def export(temporary: Path) -> None:
        torch.onnx.export(
            net, (example,), temporary, input_names=["image"], output_names=["stylised"],
            dynamic_shapes={"image": {2: height, 3: width}}, dynamo=True, external_data=False,
            verbose=False,
        )

    try:
        write_atomically(target, export)
    except ImportError as error:
        raise StylelibError(
            f"ONNX export needs the onnx and onnxscript packages ({error}): "
            "pip install onnx onnxscript."
        ) from None
    return target
