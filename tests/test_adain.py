"""Tests for stylelib.adain: the AdaIN operation, the decoder and model, the user controls (alpha,
interpolation, masks, colour) and the decoder's weight files. Training is tested in
test_adain_training.py, the paper's own weights in test_adain_original.py.

A seeded random decoder is enough for shapes and for how the controls combine features; its last
bias is set to 0.5 so its images sit inside [0, 1] rather than being clamped flat.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from stylelib import adain as adain_module
from stylelib.adain import (
    ENCODER_LAYERS,
    OVERLAP,
    AdaIN,
    Decoder,
    OriginalEncoder,
    adain,
    load_decoder,
    pretrained,
    save_decoder,
    stylize,
)
from stylelib.backbones import FeatureExtractor
from stylelib.colour import match_colour
from stylelib.errors import StylelibError
from stylelib.images import load_image
from stylelib.losses import mean_std
from stylelib.metrics import psnr, seam_ratio
from stylelib.tiles import layout

HED = "vgg16-hed"


@pytest.fixture(scope="module")
def model() -> AdaIN:
    """A seeded random decoder on the VGG-16-HED encoder, images centred in [0, 1]."""
    torch.manual_seed(0)
    decoder = Decoder()
    with torch.no_grad():
        decoder.body[-1].bias.fill_(0.5)
    return AdaIN(decoder, FeatureExtractor(ENCODER_LAYERS, HED))


# --------------------------------------------------------------------------- the operation


def test_adain_gives_the_content_the_style_statistics() -> None:
    torch.manual_seed(0)
    content = torch.randn(2, 8, 5, 6) * 3 + 1
    style = torch.randn(2, 8, 7, 4) * torch.rand(1, 8, 1, 1) * 4 - 2
    result = adain(content, style)
    assert result.shape == content.shape
    # The output's plain statistics are the style's std = sqrt(var + eps) (eps was added once).
    for got, want in zip(mean_std(result, eps=0.0), mean_std(style), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    # The spatial pattern is the content's: standardised, the two are the same.
    standardise = lambda x: (x - mean_std(x, 0.0)[0]) / mean_std(x, 0.0)[1]  # noqa: E731
    torch.testing.assert_close(standardise(result), standardise(content), rtol=0, atol=1e-3)


def test_adain_with_one_style_for_a_batch_and_bad_shapes() -> None:
    content, style = torch.randn(3, 4, 5, 5), torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(mean_std(adain(content, style))[0], mean_std(style)[0].expand(3, -1,
                               -1, -1), rtol=0, atol=1e-5)
    with pytest.raises(StylelibError, match="same channels"):
        adain(content, torch.randn(1, 5, 6, 6))
    with pytest.raises(StylelibError, match=r"\[B, C, H, W\]"):
        adain(content[0], style[0])


# --------------------------------------------------------------------------- the networks


def test_decoder_multiplies_the_size_by_eight() -> None:
    with torch.no_grad():
        assert Decoder()(torch.rand(2, 512, 3, 5)).shape == (2, 3, 24, 40)


@pytest.mark.parametrize("size", [(33, 47), (16, 16), (17, 90)])
def test_stylize_keeps_any_image_size(model: AdaIN, painting: torch.Tensor,
                                      size: tuple[int, int]) -> None:
    """Odd sizes are reflection-padded to multiples of 8 inside and cropped back."""
    result = stylize(model, torch.rand(1, 3, *size), painting)
    assert result.shape == (1, 3, *size)
    assert result.min() >= 0 and result.max() <= 1
    assert not result.is_inference()


def test_the_original_encoder_matches_the_release_layout() -> None:
    """relu1_1 … relu4_1 sit at indices 3, 10, 17 and 30 of vgg_normalised's nn.Sequential."""
    encoder = OriginalEncoder()
    assert encoder.taps == {3: "relu1_1", 10: "relu2_1", 17: "relu3_1", 30: "relu4_1"}
    features = encoder(torch.rand(1, 3, 32, 40))
    assert [tuple(f.shape[1:]) for f in features.values()] == [
        (64, 32, 40), (128, 16, 20), (256, 8, 10), (512, 4, 5)]


def test_a_decoder_refuses_another_backbone() -> None:
    decoder = Decoder()
    decoder.card = {"backbone": "vgg19"}
    with pytest.raises(StylelibError, match=r"trained on vgg19 features.*backbone='vgg19'"):
        AdaIN(decoder, FeatureExtractor(ENCODER_LAYERS, HED))


# --------------------------------------------------------------------------- user controls


def test_alpha_zero_reconstructs_the_content_and_one_does_not(
        model: AdaIN, photo: torch.Tensor, painting: torch.Tensor,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLELIB_BF16", "0")  # exactly, in the precision of the passes below
    with torch.no_grad():
        reconstruction = model.decode(model.encode(photo)["relu4_1"], photo.shape[-2:])
    torch.testing.assert_close(stylize(model, photo, painting, alpha=0.0),
                               reconstruction.clamp(0, 1), rtol=0, atol=1e-6)
    styled = stylize(model, photo, painting, alpha=1.0)
    assert (styled - reconstruction.clamp(0, 1)).abs().mean() > 1e-3


def test_bfloat16_passes_give_the_float32_picture_to_a_grey_level(
        model: AdaIN, photo: torch.Tensor, painting: torch.Tensor,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the hardware has bfloat16 the encoder and decoder run in it; the features, their
    statistics and the mix stay float32, so the picture moves by rounding only."""
    pictures = []
    for setting in ("0", "1"):
        monkeypatch.setenv("STYLELIB_BF16", setting)
        pictures.append(stylize(model, photo, painting, alpha=0.7))
    assert pictures[1].dtype == torch.float32
    assert 0 < float((pictures[1] - pictures[0]).abs().mean()) < 1 / 255


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), True])
def test_alpha_outside_zero_one_is_refused(model: AdaIN, photo: torch.Tensor,
                                          painting: torch.Tensor, alpha: float) -> None:
    with pytest.raises(StylelibError, match=re.escape(f"alpha must be in [0, 1], got {alpha!r}")):
        stylize(model, photo, painting, alpha=alpha)


def test_cached_renderer_equals_stylize_with_one_decoder_pass_per_frame(
        model: AdaIN, photo: torch.Tensor, painting: torch.Tensor) -> None:
    blend = model.prepare(photo, painting)
    calls = {"encoder": 0, "decoder": 0}
    hooks = [getattr(model, name).register_forward_hook(
        lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
        for name in calls]
    try:
        frames = {alpha: blend.render(alpha) for alpha in (0.0, 0.3, 1.0)}
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"encoder": 0, "decoder": 3}
    for alpha, frame in frames.items():
        assert torch.equal(frame, stylize(model, photo, painting, alpha=alpha)), alpha
    assert not torch.equal(frames[0.3], frames[1.0])


def test_interpolation_weights_mix_the_styles(model: AdaIN, photo: torch.Tensor,
                                              painting: torch.Tensor) -> None:
    """Weights (1, 0) give the first style alone; (0.5, 0.5) lies between the two styles."""
    other = photo.flip(-1)
    alone = stylize(model, photo, painting)
    assert torch.equal(stylize(model, photo, [painting, other], style_weights=[1.0, 0.0]), alone)
    half = stylize(model, photo, [painting, other], style_weights=[0.5, 0.5])
    assert not torch.equal(half, alone)
    assert torch.equal(half, stylize(model, photo, [painting, other]))  # equal shares by default


@pytest.mark.parametrize(
    ("weights", "message"),
    [([0.5, 0.4], r"must sum to 1, but \[0.5, 0.4\] sum to 0.9"),
     ([1.5, -0.5], "non-negative"), ([1.0], "1 style_weights for 2 styles")],
)
def test_bad_interpolation_weights_are_refused(model: AdaIN, photo: torch.Tensor,
                                               painting: torch.Tensor, weights: list[float],
                                               message: str) -> None:
    with pytest.raises(StylelibError, match=message):
        stylize(model, photo, [painting, photo], style_weights=weights)


def test_masks_apply_each_style_in_its_region(model: AdaIN, photo: torch.Tensor,
                                              painting: torch.Tensor) -> None:
    """A mask that gives every pixel to the first style equals that style alone; with a
    left/right split, the AdaIN target is each style's own target on its side."""
    height, width = photo.shape[-2:]
    assert width % 16 == 0, "the split must fall on a relu4_1 cell boundary"
    other = photo.flip(-1)
    ones, zeros = torch.ones(height, width), torch.zeros(1, 1, height, width)
    alone = stylize(model, photo, painting)
    assert torch.equal(stylize(model, photo, [painting, other], mask=[ones, zeros]), alone)
    left = torch.zeros(height, width)
    left[:, : width // 2] = 1
    split = model.prepare(photo, [painting, other], mask=[left, 1 - left]).target
    cells = width // 16
    first, second = (model.prepare(photo, style).target for style in (painting, other))
    torch.testing.assert_close(split[..., :cells], first[..., :cells])
    torch.testing.assert_close(split[..., cells:], second[..., cells:])


def test_bad_masks_are_refused(model: AdaIN, photo: torch.Tensor, painting: torch.Tensor
                               ) -> None:
    height, width = photo.shape[-2:]
    styles = [painting, photo]
    half = torch.full((height, width), 0.5)
    with pytest.raises(StylelibError, match=re.escape(
            f"mask[1] must have shape [{height}, {width}] or [1, 1, {height}, {width}]")):
        stylize(model, photo, styles, mask=[half, torch.full((height + 1, width), 0.5)])
    with pytest.raises(StylelibError, match="sum to 1 at every pixel"):
        stylize(model, photo, styles, mask=[half, half * 0.5])
    with pytest.raises(StylelibError, match="one mask per style"):
        stylize(model, photo, styles, mask=[half])
    with pytest.raises(StylelibError, match="not both"):
        stylize(model, photo, styles, mask=[half, half], style_weights=[0.5, 0.5])


def test_tiles_normalised_by_the_whole_photo_paint_the_untiled_picture(
        model: AdaIN, mirror_dir: Path, painting: torch.Tensor,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two 272 px tiles of a 270x340 photo, two styles blended: the tiles share the whole
    photo's relu4_1 statistics, so the result is the untiled one; a mask cannot be tiled."""
    monkeypatch.setenv("STYLELIB_BF16", "0")
    photo = load_image(mirror_dir / "content" / "tubingen.jpg", 340)[..., :270, :]
    styles = [painting, painting.flip(-1)]
    whole = stylize(model, photo, styles, alpha=0.8, style_weights=[0.3, 0.7])
    tiled = stylize(model, photo, styles, alpha=0.8, style_weights=[0.3, 0.7], tile=272)
    assert tiled.shape == photo.shape
    assert psnr(tiled, whole) > 45
    parts = layout(272, 344, 272, OVERLAP, 8)
    assert seam_ratio(tiled, parts) == pytest.approx(seam_ratio(whole, parts), rel=0.02)
    assert torch.equal(stylize(model, photo, styles, tile=340), stylize(model, photo, styles))
    with pytest.raises(StylelibError, match="mask cannot be painted in tiles"):
        stylize(model, photo, styles, mask=[torch.ones(270, 340), torch.zeros(270, 340)],
                tile=272)


def test_colour_matching_gives_the_style_the_photo_colours(photo: torch.Tensor,
                                                           painting: torch.Tensor) -> None:
    matched = match_colour(painting, photo)
    assert matched.shape == painting.shape
    mean = lambda x: x.reshape(3, -1).mean(1)  # noqa: E731
    covariance = lambda x: torch.cov(x.reshape(3, -1))  # noqa: E731
    assert (mean(matched) - mean(photo)).abs().max() < 0.02
    assert (covariance(matched) - covariance(photo)).abs().max() < 0.005
    assert (mean(painting) - mean(photo)).abs().max() > 0.05


def test_preserve_color_changes_the_result(model: AdaIN, photo: torch.Tensor,
                                           painting: torch.Tensor) -> None:
    plain = stylize(model, photo, painting)
    kept = stylize(model, photo, painting, preserve_color=True)
    recoloured = stylize(model, photo, match_colour(painting, photo))
    assert torch.equal(kept, recoloured)
    assert not torch.equal(kept, plain)


# --------------------------------------------------------------------------- weight files


def test_decoder_round_trips_in_fp16_with_its_card(model: AdaIN, tmp_path: Path) -> None:
    decoder = Decoder()
    decoder.load_state_dict(model.decoder.state_dict())
    decoder.card = {"backbone": HED}
    path = save_decoder(decoder, tmp_path / "decoder.safetensors", {"steps": "12"})
    assert path.stat().st_size < 7_200_000  # 3.5 M parameters at 2 bytes each
    loaded = load_decoder(path)
    assert loaded.card == {"backbone": HED, "steps": "12"}
    assert not loaded.training
    for name, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, decoder.state_dict()[name], rtol=1e-3, atol=1e-6)


def test_pretrained_loads_the_bundled_decoder_with_its_backbone(
        model: AdaIN, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "adain_decoder.safetensors"
    monkeypatch.setattr(adain_module, "weights_path", lambda: path)
    with pytest.raises(StylelibError, match=r"No bundled AdaIN decoder.*train_decoder"):
        pretrained()
    model.decoder.card = {"backbone": HED}
    try:
        save_decoder(model.decoder, path, {"steps": "0"})
    finally:
        model.decoder.card = {}
    bundled = pretrained()
    assert bundled.encoder.backbone == HED
    assert bundled.decoder.card["steps"] == "0"
