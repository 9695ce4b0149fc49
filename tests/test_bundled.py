"""Tests for stylelib.bundled: the shipped networks, their cards and their training command."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from stylelib import assets, bundled, fast
from stylelib.backbones import FeatureExtractor
from stylelib.errors import StylelibError
from stylelib.images import load_image
from stylelib.losses import PerceptualLoss
from stylelib.metrics import perceptual_errors

CARD_FIELDS = {"model", "style", "data", "training", "style_weight", "hardware", "time", "losses",
               "licence"}
TINY_RUN = ["great_wave", "--size", "16", "--scale", "24", "--style-size", "32", "--batch-size",
            "1"]
"""A training command that takes a second: 16 px crops of 24 px photos, batch 1."""


def test_every_bundled_net_is_shipped_within_the_size_budget() -> None:
    assert bundled.available() == list(bundled.STYLES)
    total = sum(bundled.weights_path(style).stat().st_size for style in bundled.STYLES)
    assert total <= 15_000_000, f"{total / 1e6:.1f} MB of bundled weights (budget 15 MB)"


@pytest.mark.parametrize("style", bundled.STYLES)
def test_model_cards_say_how_each_net_was_made(style: str) -> None:
    card = bundled.load(style).card
    assert card.keys() >= CARD_FIELDS
    assert assets.resolve(style).credit in card["style"]
    assert float(card["style_weight"]) > 0
    losses = json.loads(card["losses"].split(" (")[0])
    # the content loss sums the relative errors of the last phase's content layers
    layers = re.search(r"content weight \S+ at (\S+),", card["training"].rsplit("; then ", 1)[-1])
    content_layers = len(layers.group(1).split("+")) if layers else 1
    assert 0 < losses["style"] < 1 and 0 < losses["content"] < 2 * content_layers


def test_bundled_nets_paint_their_own_style(mirror: Path, extractor: FeatureExtractor) -> None:
    """Each net moves a held-out photo towards its own painting's Gram statistics (at 128 px:
    the nets paint strokes sized for photos of 256 px and more, which a tiny image cannot
    show), and the nets differ."""
    photo = load_image(mirror / "content" / "tubingen.jpg", 128)
    loss = PerceptualLoss(extractor=extractor)
    outputs: dict[str, torch.Tensor] = {}
    for style in bundled.STYLES:
        painting = load_image(mirror / "style" / f"{style}.jpg", 128)
        outputs[style] = fast.stylize(bundled.load(style), photo)
        painted = perceptual_errors(outputs[style], photo, painting, loss)
        untouched = perceptual_errors(photo, photo, painting, loss)
        assert painted["style"] < 0.5 * untouched["style"], style
    first, *others = outputs.values()
    for other in others:
        assert (first - other).abs().mean() > 0.05


def test_unknown_bundled_style_is_refused() -> None:
    with pytest.raises(StylelibError, match="No bundled network for style 'mona_lisa'"):
        bundled.load("mona_lisa")


def test_training_command_writes_weights_with_a_card(mirror: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny.safetensors"
    bundled.main([*TINY_RUN, "--steps", "2", "--out", str(out)])
    net = fast.load_weights(out)
    assert net.card.keys() >= CARD_FIELDS
    assert "2 Adam steps, batch 1 of 16 px crops" in net.card["training"]
    assert out.with_name("tiny.checkpoint.safetensors").is_file()
    assert net.card["training"] in out.with_suffix(".md").read_text(encoding="utf-8")
    assert f"wrote {out}" in capsys.readouterr().out


def test_training_command_takes_a_readers_painting_file_and_photo_folder(
        mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A painting file (not a book image) trains a network written to the current folder, never
    over a bundled one; ``--photos`` replaces the course's collection on the card."""
    painting = tmp_path / "my_painting.jpg"
    shutil.copy(mirror / "style" / "great_wave.jpg", painting)
    photos = tmp_path / "holiday"
    photos.mkdir()
    for name in ("tubingen", "golden_gate"):
        shutil.copy(mirror / "content" / f"{name}.jpg", photos / f"{name}.jpg")
    monkeypatch.chdir(tmp_path)
    bundled.main([str(painting), *TINY_RUN[1:], "--steps", "1", "--photos", str(photos)])
    card = fast.load_weights(tmp_path / "fast_my_painting.safetensors").card
    assert card["style"].startswith("my_painting.jpg: the reader's own painting, long side 32")
    assert card["data"].startswith("2 photos of the folder holiday, resized to")


def test_training_command_takes_johnsons_loss_and_names_it_in_the_card(
        mirror: Path, tmp_path: Path) -> None:
    """Content at relu2_2, a total-variation term and another loss network reach the loss (the
    first step's losses differ from the default run's) and are written in the card."""
    johnson, default = tmp_path / "johnson.safetensors", tmp_path / "default.safetensors"
    bundled.main([*TINY_RUN, "--steps", "1", "--out", str(default), "--backbone", "vgg16-hed"])
    bundled.main([*TINY_RUN, "--steps", "1", "--out", str(johnson), "--backbone", "vgg16-hed",
                  "--content-layers", "relu2_2", "--style-layers", "relu1_2", "relu2_2",
                  "relu3_3", "relu4_3", "--tv-weight", "0.5"])
    card = fast.load_weights(johnson).card
    assert ("content weight 1 at relu2_2, style weight 10.0 at relu1_2+relu2_2+relu3_3+relu4_3, "
            "total variation 0.5, loss network vgg16-hed") in card["training"]
    assert card["losses"] != fast.load_weights(default).card["losses"]


def test_training_further_extends_the_card_of_the_weights_it_starts_from(
        mirror: Path, tmp_path: Path) -> None:
    """A ``--start-from`` run appends its steps, time and hardware (when it differs) to the
    card's."""
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    bundled.main([*TINY_RUN, "--steps", "2", "--out", str(first)])
    earlier = fast.load_weights(first)
    fast.save_weights(earlier, first, {**earlier.card, "hardware": "a GPU", "time": "9 min"})
    bundled.main([*TINY_RUN, "--steps", "1", "--start-from", str(first), "--out", str(second)])
    card = fast.load_weights(second).card
    assert card["training"].startswith(f"{earlier.card['training']}; then 1 Adam steps")
    assert card["hardware"].startswith("a GPU; then CPU (")
    assert card["time"].startswith("9 min + ")
    third = tmp_path / "third.safetensors"
    bundled.main([*TINY_RUN, "--steps", "1", "--start-from", str(second), "--out", str(third)])
    assert fast.load_weights(third).card["hardware"] == card["hardware"]  # same CPU: no repeat




def test_multi_scale_training_command_says_so_in_the_card(mirror: Path, tmp_path: Path) -> None:
    out = tmp_path / "multi.safetensors"
    bundled.main(["great_wave", "--size", "16", "--scales", "24", "32", "--batch-size", "1",
                  "--steps", "2", "--out", str(out)])
    card = fast.load_weights(out).card
    assert "resized to long sides 24, 32 px in turn, batch by batch" in card["data"]
    assert card["style"].endswith("long sides 24, 32 px")
    further = tmp_path / "further.safetensors"
    bundled.main([*TINY_RUN, "--steps", "1", "--start-from", str(out), "--out", str(further)])
    carried = fast.load_weights(further).card
    photos = card["data"].split(" photos")[0]
    assert carried["data"] == (
        f"{card['data']}; then {photos} photos, resized to a long side of 24 px")
    assert carried["style"] == f"{card['style']}; then 32 px"
    again = tmp_path / "again.safetensors"
    bundled.main([*TINY_RUN, "--steps", "1", "--start-from", str(further), "--out", str(again)])
    unchanged = fast.load_weights(again).card
    assert (unchanged["data"], unchanged["style"]) == (carried["data"], carried["style"])
