"""Tests for stylelib.training_commands: what the three training commands share (the check of
``--out`` before any training, the model-card fields of a run and the Markdown card)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
from torch import nn

from stylelib import bundled
from stylelib.profiles import device_name, pick_device
from stylelib.training import TrainResult
from stylelib.training_commands import final_losses, publish, run_fields


@pytest.mark.parametrize("command", ["bundled", "adain_training", "prior_training"])
@pytest.mark.parametrize(("name", "message"), [
    ("net.png", "would hold weights under a '.png' extension: name it net.safetensors"),
    ("net", "under a 'missing' extension"),
    ("missing/net.safetensors", "does not exist; create it first"),
])
def test_training_commands_refuse_an_out_that_is_not_a_weights_file(
        mirror: Path, tmp_path: Path, command: str, name: str, message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Checked before any training: nothing is written, nothing is trained."""
    from stylelib import adain_training, prior_training
    from stylelib.errors import command as run_command

    mains = {"bundled": (bundled.main, "great_wave"), "adain_training": (adain_training.main, None),
             "prior_training": (prior_training.main, "starry_night")}
    main, painting = mains[command]
    argv = [*([painting] if painting else []), "--steps", "1", "--out", str(tmp_path / name)]
    assert run_command(lambda: main(argv)) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_run_fields_go_on_from_the_card_of_the_weights_a_run_started_from() -> None:
    """Steps and time are appended; the hardware only when it changed."""
    result = TrainResult(nn.Linear(1, 1), seconds=90.0, steps_done=3)
    cpu = device_name(pick_device("cpu"))
    first = run_fields(result, "batch 4", {}, "cpu")
    assert first == {"training": "3 Adam steps, batch 4", "hardware": cpu, "time": "1.5 min"}
    again = run_fields(result, "batch 2", first, "cpu")
    assert again == {"training": "3 Adam steps, batch 4; then 3 Adam steps, batch 2",
                     "hardware": cpu, "time": "1.5 min + 1.5 min"}
    moved = run_fields(result, "batch 2", {**first, "hardware": "a GPU"}, "cpu")
    assert moved["hardware"] == f"a GPU; then {cpu}"


def test_final_losses_average_the_last_steps() -> None:
    history = [{"content": float(step), "style": 1.0} for step in range(10)]
    assert final_losses(history, ["content"], last=4) == {"content": 7.5}
    assert final_losses(history, ("content", "style")) == {"content": 4.5, "style": 1.0}


def test_publish_writes_the_card_beside_the_weights_and_prints_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "net.safetensors"
    written: list[Mapping[str, str]] = []

    def write(card: Mapping[str, str]) -> Path:
        written.append(card)
        weights.write_bytes(bytes(2_000_000))
        return weights

    publish(write, {"model": "toy", "time": "1 min"})
    assert written == [{"model": "toy", "time": "1 min"}]
    bullets = "- **model**: toy\n- **time**: 1 min\n"
    assert weights.with_suffix(".md").read_text(encoding="utf-8") == (
        "# Model card: net.safetensors\n\nThe same fields are stored in the file's metadata."
        f"\n\n{bullets}")
    assert capsys.readouterr().out == f"wrote {weights} (2.0 MB) and its model card\n{bullets}"


def test_publish_writes_nothing_on_a_rank_other_than_0(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    publish(lambda card: pytest.fail("rank 1 wrote weights"), {"model": "toy"})
    assert capsys.readouterr().out == ""


def test_the_decoder_and_prior_commands_read_a_readers_folders(
        mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--photos`` and ``--paintings`` replace the course's collection, and the cards say so."""
    from stylelib import adain_training, diffusion, prior_training
    from stylelib.adain import load_decoder

    folders = {"holiday": ("content", ["tubingen", "golden_gate"]),
               "gallery": ("style", ["candy", "mosaic", "great_wave"])}
    for name, (source, images) in folders.items():
        for k, image in enumerate(images):
            where = tmp_path / name / ("deeper" if k else "") / f"{image}.jpg"
            where.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(mirror / source / f"{image}.jpg", where)
    monkeypatch.chdir(tmp_path)
    adain_training.main(["--steps", "1", "--batch-size", "1", "--size", "32", "--scale", "48",
                         "--photos", "holiday", "--paintings", "gallery",
                         "--out", "decoder.safetensors"])
    data = load_decoder("decoder.safetensors").card["data"]
    assert data.startswith("2 photos of the folder holiday, and 3 paintings of the folder gallery")
    prior_training.main(["--paintings", "gallery", "--steps", "1", "--size", "16", "--scale",
                         "24", "--batch-size", "2", "--channels", "8,8,8"])
    card = diffusion.load_prior("prior_gallery.safetensors", "cpu").card
    assert card["painting"] == "3 paintings of the folder gallery: the reader's own"
    assert card["data"].startswith("random 16 px crops of these paintings, each resized")
