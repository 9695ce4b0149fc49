"""Arbitrary style transfer with adaptive instance normalisation (Huang & Belongie 2017).

An encoder (the shared VGG, cut at relu4_1) turns the photo and the painting into features;
:func:`adain` gives the photo's features the painting's per-channel mean and standard
deviation; a trained :class:`Decoder` turns the result back into an image. One decoder serves
every style, so a new painting costs two encoder passes and one decoder pass, no training.

:class:`AdaIN` holds encoder and decoder; :meth:`AdaIN.prepare` encodes a photo and its styles
once and returns a :class:`Blend` whose :meth:`Blend.render` draws any content-style trade-off
``alpha`` with one decoder pass (the chapter's slider). :func:`stylize` adds the paper's user
controls: style interpolation, spatial masks and colour preservation. :func:`pretrained` loads
the bundled decoder; :mod:`stylelib.adain_training` trains decoders and
:mod:`stylelib.adain_original` loads the paper's own weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from tqdm import tqdm

from stylelib import tiles, weight_files
from stylelib.backbones import CHANNELS, FeatureExtractor
from stylelib.colour import match_colour
from stylelib.errors import StylelibError
from stylelib.images import check_image, pad_to_multiple
from stylelib.losses import STATISTICS_LAYERS, mean_std
from stylelib.precision import autocast, reduced
from stylelib.weight_files import WeightKind

ENCODER_LAYERS = STATISTICS_LAYERS
"""The layers the style loss reads; the deepest one is where AdaIN happens."""
DEEPEST = ENCODER_LAYERS[-1]
SCALE = 8
"""The encoder halves the size three times before relu4_1; the decoder doubles it three times."""
OVERLAP = 128
"""Pixels neighbouring tiles share: more than twice the encoder's reach to relu4_1 (about
40 px), so the photo statistics each tile gathers are those of the whole photo."""
KIND = WeightKind("AdaIN Decoder", "stylelib.adain.save_decoder", "load_decoder",
                  "stylelib.adain_training.train_decoder")
ORIGINAL = "vgg19-normalised"
"""The backbone name of the paper's own encoder (:func:`stylelib.adain_original.load_original`)."""


def adain(
    content_features: torch.Tensor, style_features: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Give each channel of the content features the style features' mean and standard
    deviation (over positions, per sample): ``std(s) (c - mean(c)) / std(c) + mean(s)`` with
    ``std = sqrt(var + eps)``.

    Both are ``[B, C, H, W]`` with the same channels; a style batch of one serves every content.
    """
    if content_features.dim() != 4 or style_features.dim() != 4:
        raise StylelibError(
            f"adain needs [B, C, H, W] features, got {list(content_features.shape)} and "
            f"{list(style_features.shape)}: pass encoder outputs, not images."
        )
    if content_features.shape[1] != style_features.shape[1] or style_features.shape[0] not in (
            1, content_features.shape[0]):
        raise StylelibError(
            f"Content features {list(content_features.shape)} and style features "
            f"{list(style_features.shape)} must have the same channels and batch (or a style "
            "batch of 1): encode both with the same encoder layer."
        )
    return restyle(content_features, mean_std(content_features, eps),
                   mean_std(style_features, eps))


MeanStd = tuple[torch.Tensor, torch.Tensor]
"""Per-channel mean and deviation, each ``[B, C, 1, 1]`` (:func:`stylelib.losses.mean_std`)."""


def restyle(features: torch.Tensor, content: MeanStd, style: MeanStd) -> torch.Tensor:
    """AdaIN with the statistics given: ``features`` normalised by the content's mean and
    deviation, then given the style's. A tile of a large photo uses the whole photo's."""
    (content_mean, content_std), (style_mean, style_std) = content, style
    return (features - content_mean) / content_std * style_std + style_mean


# --------------------------------------------------------------------------- the networks


def _conv(in_channels: int, out_channels: int, *, relu: bool = True) -> list[nn.Module]:
    """A reflection-padded 3x3 convolution (no dark borders), then ReLU unless it is the last."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(in_channels, out_channels, 3)]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


def _upsample() -> nn.Module:
    """Nearest-neighbour doubling: the decoder's mirror of a max pooling."""
    return nn.Upsample(scale_factor=2, mode="nearest")


class Decoder(nn.Module):
    """The paper's decoder: the encoder up to relu4_1 mirrored, pooling replaced by nearest
    upsampling. ``[B, 512, h, w]`` features to ``[B, 3, 8h, 8w]`` RGB, roughly in [0, 1].

    No normalisation layers: the paper found they make every output the same style. The layer
    order matches the original ``decoder.pth``, so its state dict loads as it is.
    """

    card: dict[str, str]
    """The model card; ``backbone`` names the encoder the decoder was trained with."""

    def __init__(self) -> None:
        super().__init__()
        self.card = {}
        self.body = nn.Sequential(
            *_conv(512, 256), _upsample(),
            *_conv(256, 256), *_conv(256, 256), *_conv(256, 256), *_conv(256, 128), _upsample(),
            *_conv(128, 128), *_conv(128, 64), _upsample(),
            *_conv(64, 64), *_conv(64, 3, relu=False),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Decode relu4_1 features to an image (not clamped: training needs every gradient)."""
        image: torch.Tensor = self.body(features)
        return image


class OriginalEncoder(nn.Module):
    """The paper's encoder: VGG-19 to relu4_1 with reflection padding, behind a 1x1 convolution
    that maps RGB in [0, 1] to the Caffe input the network was trained on (``vgg_normalised``).

    Its layer order matches the original ``vgg_normalised.pth``, whose state dict loads as it is.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ORIGINAL
        self.layers = ENCODER_LAYERS
        layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
        self.taps: dict[int, str] = {}
        in_channels = 3
        for block, convs in enumerate((2, 2, 4, 1), start=1):
            for index in range(convs):
                layers += _conv(in_channels, CHANNELS[block - 1])
                in_channels = CHANNELS[block - 1]
                if index == 0:
                    self.taps[len(layers) - 1] = f"relu{block}_1"
            if block < 4:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        self.body = nn.Sequential(*layers)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> OriginalEncoder:
        """Stay in eval mode: the encoder is fixed, only decoders are trained."""
        return super().train(False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """relu1_1 … relu4_1 of RGB images in [0, 1]."""
        features: dict[str, torch.Tensor] = {}
        x = image
        for index, module in enumerate(self.body):
            x = module(x)
            if index in self.taps:
                features[self.taps[index]] = x
        return features


Encoder = FeatureExtractor | OriginalEncoder


@dataclass(frozen=True)
class Blend:
    """A content image with its AdaIN target encoded once: each :meth:`render` is one feature
    mix and one decoder pass, so a slider over ``alpha`` costs a decoder pass per frame."""

    model: AdaIN
    content: torch.Tensor
    """The content image's relu4_1 features."""
    target: torch.Tensor
    """The style-mixed AdaIN target at relu4_1."""
    size: tuple[int, int]
    """The content image's height and width (the decoded image is cropped to it)."""
    device: torch.device
    """Where results go: the content image's device."""

    def render(self, alpha: float = 1.0) -> torch.Tensor:
        """Decode ``alpha t + (1 - alpha) f(c)``: 0 reconstructs the photo, 1 is full style."""
        check_alpha(alpha)
        device = self.model.device
        with torch.inference_mode():
            features = mix(self.target, self.content, alpha)
            with autocast(device, reduced(device)):
                image = self.model.decode(features, self.size).float().clamp(0, 1)
        return image.to(self.device, copy=True)


def mix(target: torch.Tensor, content: torch.Tensor, alpha: float | torch.Tensor
        ) -> torch.Tensor:
    """The content-style trade-off in feature space: ``alpha t + (1 - alpha) f(c)``."""
    return alpha * target + (1 - alpha) * content


class AdaIN(nn.Module):
    """Encoder (frozen VGG to relu4_1) and decoder of arbitrary style transfer.

    Without ``encoder``, the shared :class:`~stylelib.backbones.FeatureExtractor` is built for
    the backbone the decoder's card names, else ``backbone``, else the default backbone. A
    decoder only works with the encoder it was trained with, so a mismatch is refused.
    """

    def __init__(
        self,
        decoder: Decoder | None = None,
        encoder: Encoder | None = None,
        *,
        backbone: str | None = None,
    ) -> None:
        super().__init__()
        self.decoder = decoder if decoder is not None else Decoder()
        trained_on = self.decoder.card.get("backbone")
        if encoder is None:
            encoder = FeatureExtractor(ENCODER_LAYERS, trained_on or backbone)
        missing = [layer for layer in ENCODER_LAYERS if layer not in encoder.layers]
        if missing:
            raise StylelibError(
                f"The encoder does not compute {missing}: build it with "
                f"FeatureExtractor({list(ENCODER_LAYERS)}, backbone)."
            )
        if trained_on is not None and trained_on != encoder.backbone:
            raise StylelibError(
                f"This decoder was trained on {trained_on} features, but the encoder is "
                f"{encoder.backbone}: use backbone={trained_on!r} (or train a decoder for "
                f"{encoder.backbone} with stylelib.adain_training.train_decoder)."
            )
        self.encoder: Encoder = encoder
        self.eval()

    @property
    def device(self) -> torch.device:
        """The device of the decoder's weights, where images are encoded and decoded."""
        return next(self.decoder.parameters()).device

    def encode(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """relu1_1 … relu4_1 of ``[B, 3, H, W]`` RGB in [0, 1], reflection-padded to multiples
        of 8 so the decoder gives back the padded size exactly.

        On the CPU the image goes channels-last: oneDNN runs these convolutions faster so
        (two encoder passes and a decoder pass at 512² measured 3.1 s, 2.3 s channels-last).
        """
        padded = pad_to_multiple(image, SCALE)
        if padded.device.type == "cpu":
            padded = padded.contiguous(memory_format=torch.channels_last)
        features: dict[str, torch.Tensor] = self.encoder(padded)
        return features

    def decode(self, features: torch.Tensor, size: tuple[int, int] | None = None
               ) -> torch.Tensor:
        """Decode relu4_1 features to an image, cropped to ``size`` (height, width) if given."""
        if features.device.type == "cpu":
            features = features.contiguous(memory_format=torch.channels_last)
        image: torch.Tensor = self.decoder(features)
        if size is not None:
            image = image[..., : size[0], : size[1]]
        return image.contiguous()

    def prepare(
        self,
        content: torch.Tensor,
        styles: torch.Tensor | Sequence[torch.Tensor],
        *,
        style_weights: Sequence[float] | None = None,
        preserve_color: bool = False,
        mask: Sequence[torch.Tensor] | None = None,
    ) -> Blend:
        """Encode the content and every style once, and mix their AdaIN targets (see
        :func:`stylize` for the arguments); the returned :class:`Blend` renders any alpha.

        The encoder and decoder passes run in bfloat16 where the hardware has it
        (:func:`stylelib.precision.reduced`: 579 instead of 1,357 ms at 512 px on the book's
        CPU); the features, their statistics and the mix stay float32."""
        content = check_image(content, "content")
        style_list = _style_list(styles)
        height, width = content.shape[-2:]
        weights = _mixing_weights(style_weights, mask, len(style_list), (height, width))
        device = self.device
        with torch.inference_mode():
            content_features = self.features(content)
            whole = mean_std(content_features)
            target = torch.zeros_like(content_features)
            for statistics, weight in zip(self.style_statistics(style_list, content,
                                                                preserve_color), weights,
                                          strict=True):
                target += _on(weight, device) * restyle(content_features, whole, statistics)
        return Blend(self, content_features, target, (height, width), content.device)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """relu4_1 of ``image`` on the model's device, in float32 (the encoder pass in bfloat16
        where :func:`stylelib.precision.reduced` says so)."""
        device = self.device
        with torch.inference_mode(), autocast(device, reduced(device)):
            return self.encode(image.to(device))[DEEPEST].float()

    def statistics(self, image: torch.Tensor, tile: int | None = None, *,
                   progress: bool = False) -> MeanStd:
        """The relu4_1 mean and deviation of ``image``; one larger than ``tile`` px is encoded
        in overlapping tiles, each counting the pixels it owns (memory of one tile)."""
        if tile is None or max(image.shape[-2:]) <= tile:
            with torch.inference_mode():
                return mean_std(self.features(image))
        padded, parts = tiles.padded_layout(image, tile, OVERLAP, SCALE)
        whole = tiles.Statistics()
        for part in tqdm(parts, desc="statistics", unit="tile", disable=not progress,
                         leave=False):
            whole.add(self.features(part.window(padded)), part)
        return whole.mean_std()

    def style_statistics(self, styles: Sequence[torch.Tensor], photo: torch.Tensor,
                         preserve_color: bool, tile: int | None = None) -> list[MeanStd]:
        """Each style's relu4_1 mean and deviation (see :meth:`statistics`), recoloured to
        ``photo``'s colours first with ``preserve_color``."""
        device = self.device
        with torch.inference_mode():
            return [self.statistics(match_colour(style.to(device), photo.to(device))
                                    if preserve_color else style, tile)
                    for style in styles]

    def paint_tiles(self, content: torch.Tensor, styles: Sequence[torch.Tensor],
                    weights: Sequence[float], alpha: float, preserve_color: bool, tile: int,
                    *, progress: bool = False) -> torch.Tensor:
        """:func:`stylize` of a photo larger than ``tile`` px, in overlapping tiles: the photo's
        relu4_1 statistics are gathered over the whole photo first (one encoder pass per
        tile), so every tile is normalised as the untiled photo is."""
        photo = self.statistics(content, tile, progress=progress)
        style_statistics = self.style_statistics(styles, content, preserve_color, tile)
        device = self.device

        def paint(window: torch.Tensor) -> torch.Tensor:
            features = self.features(window)
            target = torch.zeros_like(features)
            for statistics, weight in zip(style_statistics, weights, strict=True):
                target += weight * restyle(features, photo, statistics)
            with torch.inference_mode(), autocast(device, reduced(device)):
                return self.decode(mix(target, features, alpha)).float().clamp(0, 1)

        return tiles.paint(paint, content, tile, OVERLAP, SCALE,
                           progress=progress).to(content.device)


def _on(weight: float | torch.Tensor, device: torch.device) -> float | torch.Tensor:
    """A style's mixing weight on ``device`` (a number stays a number)."""
    return weight.to(device) if isinstance(weight, torch.Tensor) else weight


# --------------------------------------------------------------------------- user controls


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` if it is a number in [0, 1], else raise one clear error."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise StylelibError(
            f"alpha must be in [0, 1], got {alpha!r}: 0 keeps the photo, 1 is full style."
        )
    return alpha


def _style_list(styles: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One style image or several, each checked."""
    if isinstance(styles, torch.Tensor):
        return [check_image(styles, "style")]
    if not styles:
        raise StylelibError("No style image given: pass a style image or a list of them.")
    return [check_image(style, f"styles[{index}]") for index, style in enumerate(styles)]


def _mixing_weights(
    style_weights: Sequence[float] | None, mask: Sequence[torch.Tensor] | None, count: int,
    size: tuple[int, int],
) -> Sequence[float | torch.Tensor]:
    """Each style's share of the AdaIN target: a number, or a map at relu4_1 resolution."""
    if style_weights is not None and mask is not None:
        raise StylelibError(
            "Pass style_weights or mask, not both: a mask already sets each style's share."
        )
    if mask is not None:
        return _mask_maps(mask, count, size)
    if style_weights is None:
        return [1.0 / count] * count
    weights = [float(weight) for weight in style_weights]
    if len(weights) != count:
        raise StylelibError(
            f"Got {len(weights)} style_weights for {count} styles: pass one weight per style."
        )
    if not all(math.isfinite(weight) and weight >= 0 for weight in weights):
        raise StylelibError(f"style_weights must be non-negative numbers, got {weights}.")
    total = math.fsum(weights)
    if abs(total - 1) > 1e-6:
        raise StylelibError(
            f"style_weights must sum to 1, but {weights} sum to {total:.6g}: divide each by "
            "their sum."
        )
    return weights


def _mask_maps(mask: Sequence[torch.Tensor], count: int, size: tuple[int, int]
               ) -> list[torch.Tensor]:
    """Per-style masks ``[H, W]`` or ``[1, 1, H, W]`` that sum to 1 at every pixel, averaged
    over each 8x8 cell: each style's weight at every relu4_1 position."""
    height, width = size
    if len(mask) != count:
        raise StylelibError(f"Got {len(mask)} masks for {count} styles: pass one mask per style.")
    maps = []
    for index, region in enumerate(mask):
        if not isinstance(region, torch.Tensor) or tuple(region.shape) not in (
                (height, width), (1, 1, height, width)):
            got = list(region.shape) if isinstance(region, torch.Tensor) else type(region).__name__
            raise StylelibError(
                f"mask[{index}] must have shape [{height}, {width}] or [1, 1, {height}, {width}] "
                f"(the content image's height and width), got {got}."
            )
        maps.append(region.detach().float().cpu().reshape(1, 1, height, width))
    stacked = torch.cat(maps)
    if not torch.isfinite(stacked).all() or stacked.min() < 0:
        raise StylelibError("Masks must be finite and non-negative (0 = none of that style).")
    coverage = stacked.sum(0)
    if (coverage - 1).abs().max() > 1e-3:
        raise StylelibError(
            "The masks must sum to 1 at every pixel (each pixel's style shares), but they sum "
            f"to between {float(coverage.min()):.3g} and {float(coverage.max()):.3g}: divide "
            "them by their sum, e.g. masks / masks.sum(0)."
        )
    cells = F.avg_pool2d(pad_to_multiple(stacked, SCALE), SCALE)
    return list(torch.unbind(cells.unsqueeze(1)))


def stylize(
    model: AdaIN,
    content: torch.Tensor,
    style_or_styles: torch.Tensor | Sequence[torch.Tensor],
    alpha: float = 1.0,
    style_weights: Sequence[float] | None = None,
    preserve_color: bool = False,
    mask: Sequence[torch.Tensor] | None = None,
    tile: int | None = None,
    *,
    progress: bool = False,
) -> torch.Tensor:
    """Paint ``content`` (``[1, 3, H, W]`` in [0, 1]) in the manner of one or several styles.

    * ``alpha`` in [0, 1] trades content for style in feature space: ``alpha t + (1 - alpha) f(c)``.
    * Several styles mix their AdaIN targets with ``style_weights`` (non-negative, summing to 1;
      equal shares by default), or region by region with ``mask``: one mask per style, each
      ``[H, W]`` or ``[1, 1, H, W]`` like the content, together summing to 1 at every pixel.
      Each style's target is computed from the whole photo's statistics and applied where its
      mask is (masks are averaged over the 8x8 cells of relu4_1).
    * ``preserve_color`` first recolours each style with the photo's colour mean and covariance
      (the paper's colour control), so the result keeps the photo's colours.
    * With ``tile``, a photo larger than ``tile`` px is painted in overlapping tiles of that
      size normalised by the whole photo's statistics (:meth:`AdaIN.paint_tiles`): memory
      stays that of one tile.

    Runs in inference mode on the model's device; returns an ordinary tensor clamped to [0, 1]
    on the content's device.
    """
    check_alpha(alpha)
    if tile is not None and max(content.shape[-2:]) > tile:
        if mask is not None:
            raise StylelibError("A mask cannot be painted in tiles: pass tile=None with a mask.")
        content = check_image(content, "content")
        styles = _style_list(style_or_styles)
        weights = [float(weight) for weight in _mixing_weights(
            style_weights, None, len(styles), (content.shape[-2], content.shape[-1]))]
        return model.paint_tiles(content, styles, weights, alpha, preserve_color, tile,
                                 progress=progress)
    blend = model.prepare(content, style_or_styles, style_weights=style_weights,
                          preserve_color=preserve_color, mask=mask)
    return blend.render(alpha)


# --------------------------------------------------------------------------- weight files


def save_decoder(decoder: Decoder, path: str | Path, card: Mapping[str, str]) -> Path:
    """Save ``decoder`` as fp16 safetensors; the card is its own card (the backbone it was
    trained on) updated with ``card``."""
    return weight_files.save_weights(decoder, path, {**decoder.card, **card})


def load_decoder(path: str | Path) -> Decoder:
    """A float32 :class:`Decoder` (eval mode) from a safetensors file, card attached."""
    decoder, card = weight_files.load_weights(Decoder(), path, KIND)
    decoder.card = card
    return decoder


def weights_path() -> Path:
    """Where the project's own decoder is bundled (its card names the backbone it trained on)."""
    return Path(__file__).parent / "weights" / "adain_decoder.safetensors"


def pretrained(device: str | torch.device = "cpu") -> AdaIN:
    """The bundled decoder with its encoder, or a clear error when it is not there."""
    path = weights_path()
    if not path.is_file():
        raise StylelibError(
            f"No bundled AdaIN decoder at {path}: train one with "
            "stylelib.adain_training.train_decoder and save it with save_decoder, or load the "
            "paper's weights with stylelib.adain_original.load_original."
        )
    return AdaIN(load_decoder(path)).to(device)

