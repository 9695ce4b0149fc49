"""Tests for stylelib.adain: the AdaIN operation, the decoder and model, the user controls (alpha,
interpolation, masks, colour), training with resume, and weight files (own and the paper's).

A seeded random decoder is enough for shapes and for how the controls combine features; its last
bias is set to 0.5 so its images sit inside [0, 1] rather than being clamped flat.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from stylelib import adain as adain_module
from stylelib.adain import (
    ENCODER_LAYERS,
    AdaIN,
    Decoder,
    OriginalEncoder,
    adain,
    load_decoder,
    load_original,
    pretrained,
    save_decoder,
    stylize,
    train_decoder,
)
from stylelib.backbones import FeatureExtractor
from stylelib.checkpoints import TrainResult
from stylelib.colour import match_colour
from stylelib.errors import StylelibError
from stylelib.losses import mean_std

HED = "vgg16-hed"


@pytest.fixture(scope="module")
def model() -> AdaIN:
    """A seeded random decoder on the VGG-16-HED encoder, images centred in [0, 1]."""
    torch.manual_seed(0)
    decoder = Decoder()
    with torch.no_grad():
        decoder.body[-1].bias.fill_(0.5)
    return AdaIN(decoder, FeatureExtractor(ENCODER_LAYERS, HED))


@pytest.fixture(scope="module")
def photos(mirror_dir: Path) -> list[Path]:
    """Four photographs of the training collection."""
    return sorted((mirror_dir / "training" / "photos").glob("*.jpg"))[:4]


@pytest.fixture(scope="module")
def paintings(mirror_dir: Path) -> list[Path]:
    """Four paintings of the training collection."""
    return sorted((mirror_dir / "training" / "paintings").glob("*.jpg"))[:4]


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
        model: AdaIN, photo: torch.Tensor, painting: torch.Tensor) -> None:
    with torch.no_grad():
        reconstruction = model.decode(model.encode(photo)["relu4_1"], photo.shape[-2:])
    torch.testing.assert_close(stylize(model, photo, painting, alpha=0.0),
                               reconstruction.clamp(0, 1), rtol=0, atol=1e-6)
    styled = stylize(model, photo, painting, alpha=1.0)
    assert (styled - reconstruction.clamp(0, 1)).abs().mean() > 1e-3


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


# --------------------------------------------------------------------------- training


def test_training_reduces_the_loss(photos: list[Path], paintings: list[Path],
                                   photo: torch.Tensor, painting: torch.Tensor) -> None:
    result = train_decoder(photos, paintings, steps=12, batch_size=2, size=32, lr=1e-3,
                           warmup=2, backbone=HED, progress=False, preview=(photo, painting),
                           preview_every=6)
    totals = [h["total"] for h in result.history]
    assert result.steps_done == len(totals) == 12
    assert np.mean(totals[-3:]) < 0.8 * np.mean(totals[:3])
    assert result.net.card == {"backbone": HED}
    assert sorted(result.previews) == [6, 12]
    assert torch.equal(result.previews[12], stylize(AdaIN(result.net), photo, painting))


@dataclass
class Runs:
    """An uninterrupted 6-step run and one interrupted after step 4 and resumed."""

    whole: TrainResult[Decoder]
    resumed: TrainResult[Decoder]
    resumed_steps: list[int]


class SimulatedCrashError(Exception):
    """Stands for a crash or Ctrl-C in the middle of training."""


@pytest.fixture(scope="module")
def runs(photos: list[Path], paintings: list[Path], tmp_path_factory: pytest.TempPathFactory
         ) -> Runs:
    folder = tmp_path_factory.mktemp("adain-checkpoints")
    settings: dict[str, object] = {"steps": 6, "batch_size": 2, "size": 24, "backbone": HED,
                                   "checkpoint_every": 3, "progress": False, "lr": 1e-3}
    whole = train_decoder(photos, paintings, checkpoint=folder / "whole.safetensors", **settings)

    def crash_after_step_4(step: int, losses: dict[str, float], decoder: Decoder) -> None:
        if step == 4:
            raise SimulatedCrashError

    checkpoint = folder / "cut.safetensors"
    with pytest.raises(SimulatedCrashError):
        train_decoder(photos, paintings, checkpoint=checkpoint, callback=crash_after_step_4,
                      **settings)
    seen: list[int] = []
    resumed = train_decoder(photos, paintings, checkpoint=checkpoint,
                            callback=lambda step, losses, decoder: seen.append(step), **settings)
    return Runs(whole, resumed, seen)


def test_resume_continues_from_the_saved_step(runs: Runs) -> None:
    assert runs.resumed_steps == [4, 5, 6]
    assert runs.resumed.history[:3] == runs.whole.history[:3]
    assert [h["total"] for h in runs.resumed.history] == pytest.approx(
        [h["total"] for h in runs.whole.history], rel=1e-5)


def test_resumed_run_ends_with_the_uninterrupted_weights(runs: Runs) -> None:
    whole, resumed = runs.whole.net.state_dict(), runs.resumed.net.state_dict()
    assert whole.keys() == resumed.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0, msg=name)


def test_training_can_start_from_saved_weights(runs: Runs, photos: list[Path],
                                               paintings: list[Path], tmp_path: Path) -> None:
    saved = save_decoder(runs.whole.net, tmp_path / "first.safetensors", {"phase": "one"})
    again = train_decoder(photos, paintings, steps=1, batch_size=2, size=24, backbone=HED,
                          progress=False, start_from=saved, lr=1e-12, warmup=0)
    for name, value in runs.whole.net.state_dict().items():
        torch.testing.assert_close(again.net.state_dict()[name], value.half().float(),
                                   rtol=0, atol=1e-6, msg=name)
    with pytest.raises(StylelibError, match="No weights file at"):
        train_decoder(photos, paintings, steps=1, size=24, backbone=HED,
                      start_from=tmp_path / "none.safetensors")


def test_identity_term_rebuilds_the_photos_and_joins_the_total(
        model: AdaIN, photo: torch.Tensor, painting: torch.Tensor) -> None:
    batch = photo[..., :24, :24]
    plain = model.training_loss(batch, painting).as_floats()
    both = model.training_loss(batch, painting, identity_weight=100.0).as_floats()
    assert plain["identity"] == 0 and both["identity"] > 0
    assert both["content"] == pytest.approx(plain["content"])
    assert both["total"] == pytest.approx(plain["total"] + 100 * both["identity"])
    assert both.keys() == {"total", "content", "style", "tv", "identity"}


def test_paintings_must_be_there(photos: list[Path], tmp_path: Path) -> None:
    with pytest.raises(StylelibError, match="No paintings to train on"):
        train_decoder(photos, tmp_path, steps=1)


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


class Bait:
    """Unpickles by calling ``Path.touch(marker)``: proof that a pickle was (or was not) run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_pickled_weight_files_are_refused_and_never_run(tmp_path: Path) -> None:
    control = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(Bait(control)))
    assert control.exists(), "the bait must work, or this test proves nothing"
    marker = tmp_path / "payload-ran"
    bait = tmp_path / "decoder.pth"
    torch.save({"1.weight": Bait(marker)}, bait)
    with pytest.raises(StylelibError, match="never unpickles"):
        load_decoder(bait)
    with pytest.raises(StylelibError, match="weights_only=True"):
        load_original(bait, bait)
    assert not marker.exists()
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(StylelibError, match="not a readable safetensors file"):
        load_decoder(tmp_path / "garbage.safetensors")


def test_the_papers_weight_files_load_with_their_own_layout(tmp_path: Path) -> None:
    """State dicts laid out like the release's (full VGG-19 and nn.Sequential decoder)."""
    torch.manual_seed(0)
    vgg = OriginalEncoder().body.state_dict()
    vgg["31.weight"] = torch.zeros(512, 512, 3, 3)  # relu4_2's conv: beyond relu4_1, ignored
    decoder = Decoder()
    torch.save(vgg, tmp_path / "vgg_normalised.pth")
    torch.save(decoder.body.state_dict(), tmp_path / "decoder.pth")
    original = load_original(tmp_path / "vgg_normalised.pth", tmp_path / "decoder.pth")
    assert original.encoder.backbone == "vgg19-normalised"
    torch.testing.assert_close(original.decoder.body[1].weight, decoder.body[1].weight)
    assert stylize(original, torch.rand(1, 3, 20, 28), torch.rand(1, 3, 16, 16)).shape == (
        1, 3, 20, 28)
    with pytest.raises(StylelibError, match=r"is not decoder\.pth of pytorch-AdaIN"):
        load_original(tmp_path / "vgg_normalised.pth", tmp_path / "vgg_normalised.pth")
    with pytest.raises(StylelibError, match="No file at"):
        load_original(tmp_path / "missing.pth", tmp_path / "decoder.pth")


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


ADAIN_CARD = {"model", "backbone", "data", "training", "hardware", "time", "losses", "licence"}


def test_training_command_writes_the_decoder_with_a_card(
        mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "decoder.safetensors"
    arguments = ["--steps", "2", "--batch-size", "1", "--size", "32", "--scale", "48",
                 "--out", str(out)]
    adain_module.main(arguments)
    decoder = load_decoder(out)
    assert decoder.card.keys() >= ADAIN_CARD
    assert decoder.card["backbone"] == HED
    assert "2 Adam steps, batch 1 photo-painting pairs" in decoder.card["training"]
    assert "32 public-domain paintings" in decoder.card["data"]
    losses = json.loads(decoder.card["losses"].split(" (")[0])
    assert losses["content"] > 0 and losses["style"] > 0
    readme = out.with_suffix(".md").read_text(encoding="utf-8")
    assert all(value in readme for value in decoder.card.values())
    assert f"wrote {out}" in capsys.readouterr().out
    # The same command again resumes the finished checkpoint and trains nothing more.
    adain_module.main(arguments)
    assert "2 Adam steps" in load_decoder(out).card["training"]


def test_training_options_are_on_the_card_and_must_match_to_resume(mirror: Path,
                                                                   tmp_path: Path) -> None:
    """``--recolour`` and ``--photo-styles`` are named on the card and are part of the
    checkpoint's settings: resuming without them would mix two kinds of batches, so it is
    refused. ``--minutes 0`` stops after one of the three steps and publishes what it has."""
    out = tmp_path / "decoder.safetensors"
    arguments = ["--steps", "3", "--batch-size", "1", "--size", "32", "--scale", "48",
                 "--out", str(out)]
    adain_module.main([*arguments, "--recolour", "--photo-styles", "--minutes", "0"])
    card = load_decoder(out).card
    assert "1 Adam steps" in card["training"]
    assert "painting hues turned at random, photos among the styles" in card["training"]
    assert f"each counted {adain_module.PAINTING_REPEATS} times) and the photos" in card["data"]
    with pytest.raises(StylelibError, match="recolour=True"):
        adain_module.main(arguments)


def test_training_into_a_missing_folder_fails_before_training(mirror: Path, tmp_path: Path
                                                               ) -> None:
    out = tmp_path / "nowhere" / "decoder.safetensors"
    with pytest.raises(StylelibError, match=r"folder .*nowhere does not exist; create it first"):
        adain_module.main(["--steps", "2", "--size", "32", "--out", str(out)])
    assert not out.parent.exists()


def test_training_command_reports_bad_input_in_one_line(mirror: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stylelib.adain", "--steps", "1", "--size", "32",
         "--start-from", str(tmp_path / "gone.safetensors"),
         "--out", str(tmp_path / "decoder.safetensors")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: No weights file at {tmp_path / 'gone.safetensors'}: check the path."]
    assert not (tmp_path / "decoder.safetensors").exists()
