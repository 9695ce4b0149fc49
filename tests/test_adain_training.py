"""Tests for stylelib.adain_training: the decoder's loss, training with resume and from saved
weights, and the training command with its model card."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from stylelib import adain_training
from stylelib.adain import ENCODER_LAYERS, AdaIN, Decoder, load_decoder, save_decoder, stylize
from stylelib.adain_training import train_decoder, training_loss
from stylelib.backbones import FeatureExtractor
from stylelib.errors import StylelibError
from stylelib.profiles import seeded
from stylelib.training import TrainResult

HED = "vgg16-hed"


@pytest.fixture(scope="module")
def photos(mirror_dir: Path) -> list[Path]:
    """Four photographs of the training collection."""
    return sorted((mirror_dir / "training" / "photos").glob("*.jpg"))[:4]


@pytest.fixture(scope="module")
def paintings(mirror_dir: Path) -> list[Path]:
    """Four paintings of the training collection."""
    return sorted((mirror_dir / "training" / "paintings").glob("*.jpg"))[:4]


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


@pytest.mark.parametrize(("term", "weight", "untouched", "side"),
                         [("identity", 100.0, "content", 24), ("structure", 5.0, "style", 32),
                          ("gram", 5.0, "style", 32)])
def test_optional_term_is_off_by_default_and_joins_the_total_with_its_weight(
        photo: torch.Tensor, painting: torch.Tensor, term: str, weight: float, untouched: str,
        side: int) -> None:
    """The identity term rebuilds the photos from their own features, the structure term
    compares output and photo, the Gram term output and painting: each is 0 unless weighted,
    leaves the paper's terms as they are and adds its weighted value to the total."""
    model = AdaIN(seeded(Decoder, 0), FeatureExtractor(ENCODER_LAYERS, HED))
    batch = photo[..., :side, :side]
    plain = training_loss(model, batch, painting).as_floats()
    both = training_loss(model, batch, painting, **{f"{term}_weight": weight}).as_floats()
    assert plain[term] == 0 and both[term] > 0
    assert both[untouched] == pytest.approx(plain[untouched])
    assert both["total"] == pytest.approx(plain["total"] + weight * both[term])
    assert both.keys() == {"total", "content", "style", "tv", "identity", "structure", "gram"}


def test_bf16_training_follows_float32(photos: list[Path], paintings: list[Path]) -> None:
    """Autocast changes the numbers a little (it ran), not the loss the decoder learns from;
    the terms come out in float32 and the decoder's weights stay float32."""
    runs = [train_decoder(photos, paintings, steps=1, batch_size=2, size=32, backbone=HED,
                          progress=False, bf16=bf16) for bf16 in (False, True)]
    full, half = (run.history[0] for run in runs)
    assert full["total"] != half["total"]
    assert half["content"] == pytest.approx(full["content"], rel=0.05)
    assert half["style"] == pytest.approx(full["style"], rel=0.05)
    assert all(p.dtype == torch.float32 for p in runs[1].net.parameters())


def test_cooldown_lowers_the_last_steps_learning_rate(photos: list[Path], paintings: list[Path]
                                                      ) -> None:
    """With a cool-down the final step is far smaller, so the weights move far less."""
    moved = []
    for cooldown in (0, 3):
        start = seeded(Decoder, 0).state_dict()
        before: dict[str, torch.Tensor] = {}

        def keep(step: int, losses: dict[str, float], decoder: Decoder,
                 before: dict[str, torch.Tensor] = before) -> None:
            if step == 2:
                before.update({k: v.clone() for k, v in decoder.state_dict().items()})

        run = train_decoder(photos, paintings, steps=3, batch_size=1, size=24, backbone=HED,
                            progress=False, warmup=0, cooldown=cooldown, lr=1e-3, callback=keep)
        after = run.net.state_dict()
        assert any(not torch.equal(after[k], start[k]) for k in start)
        moved.append(sum(float((after[k] - before[k]).abs().sum()) for k in after))
    assert moved[1] < 0.5 * moved[0]


def test_paintings_must_be_there(photos: list[Path], tmp_path: Path) -> None:
    with pytest.raises(StylelibError, match="No paintings to use"):
        train_decoder(photos, tmp_path, steps=1)


# --------------------------------------------------------------------------- training command


ADAIN_CARD = {"model", "backbone", "data", "training", "hardware", "time", "losses", "licence"}


def test_training_command_writes_the_decoder_with_a_card(
        mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "decoder.safetensors"
    arguments = ["--steps", "2", "--batch-size", "1", "--size", "32", "--scale", "48",
                 "--out", str(out)]
    adain_training.main(arguments)
    decoder = load_decoder(out)
    assert decoder.card.keys() >= ADAIN_CARD
    assert decoder.card["backbone"] == "vgg19-caffe-normalised"  # the paper's, the default
    assert "2 Adam steps, batch 1 photo-painting pairs" in decoder.card["training"]
    assert "32 public-domain paintings" in decoder.card["data"]
    losses = json.loads(decoder.card["losses"].split(" (")[0])
    assert losses["content"] > 0 and losses["style"] > 0
    readme = out.with_suffix(".md").read_text(encoding="utf-8")
    assert all(value in readme for value in decoder.card.values())
    assert f"wrote {out}" in capsys.readouterr().out
    # The same command again resumes the finished checkpoint and trains nothing more.
    adain_training.main(arguments)
    assert "2 Adam steps" in load_decoder(out).card["training"]


def test_training_options_are_on_the_card_and_must_match_to_resume(mirror: Path,
                                                                   tmp_path: Path) -> None:
    """``--recolour``, ``--photo-styles`` and the optional terms' weights are named on the card and
    are part of the checkpoint's settings: resuming without them would mix two kinds of
    batches, so it is refused. ``--minutes 0`` stops after one of the three steps and publishes
    what it has."""
    out = tmp_path / "decoder.safetensors"
    arguments = ["--steps", "3", "--batch-size", "1", "--size", "32", "--scale", "48",
                 "--out", str(out)]
    adain_training.main([*arguments, "--recolour", "--photo-styles", "--minutes", "0",
                         "--cooldown", "2", "--bf16", "--structure-weight", "2",
                         "--gram-weight", "3"])
    card = load_decoder(out).card
    assert "1 Adam steps" in card["training"]
    assert "structure weight 2.0 at relu2_1+relu3_1" in card["training"]
    assert "Gram weight 3.0 at relu1_1-relu4_1" in card["training"]
    assert json.loads(card["losses"].split(" (")[0]).keys() == {"content", "style", "structure",
                                                                  "gram"}
    assert "linear cool-down to 0 over the last 2 steps), bfloat16 autocast" in card["training"]
    assert "painting hues turned at random, photos among the styles" in card["training"]
    assert f"each counted {adain_training.PAINTING_REPEATS} times) and the photos" in card["data"]
    with pytest.raises(StylelibError, match="bf16=True"):
        adain_training.main([*arguments, "--recolour", "--photo-styles", "--cooldown", "2",
                             "--structure-weight", "2", "--gram-weight", "3"])
    with pytest.raises(StylelibError, match=r"gram_weight=3\.0"):
        adain_training.main([*arguments, "--recolour", "--photo-styles", "--cooldown", "2",
                             "--bf16", "--structure-weight", "2"])
    with pytest.raises(StylelibError, match=r"structure_weight=2\.0"):
        adain_training.main([*arguments, "--recolour", "--photo-styles", "--cooldown", "2",
                             "--bf16", "--gram-weight", "3"])
    with pytest.raises(StylelibError, match="recolour=True"):
        adain_training.main([*arguments, "--cooldown", "2", "--bf16"])


def test_training_into_a_missing_folder_fails_before_training(mirror: Path, tmp_path: Path
                                                               ) -> None:
    out = tmp_path / "nowhere" / "decoder.safetensors"
    with pytest.raises(StylelibError, match=r"folder .*nowhere does not exist; create it first"):
        adain_training.main(["--steps", "2", "--size", "32", "--out", str(out)])
    assert not out.parent.exists()


def test_training_command_reports_bad_input_in_one_line(mirror: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stylelib", "train", "adain", "--steps", "1", "--size", "32",
         "--start-from", str(tmp_path / "gone.safetensors"),
         "--out", str(tmp_path / "decoder.safetensors")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: No weights file at {tmp_path / 'gone.safetensors'}: check the path."]
    assert not (tmp_path / "decoder.safetensors").exists()


def test_training_command_names_itself_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        adain_training.main(["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m stylelib train adain ")
