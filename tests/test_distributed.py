"""Training at reader scale: a reader's own folders, and the same command under ``torchrun``
on two CPU processes (gloo) giving the weights of one process with the same global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from stylelib.data import PhotoCrops, batches_from, photo_files
from stylelib.diffusion import PaintingPrior, prior_unet
from stylelib.errors import StylelibError
from stylelib.fast import TransformerNet, load_weights
from stylelib.prior_training import denoising_loss
from stylelib.profiles import seeded

FAST_RUN = ["-m", "stylelib", "train", "fast", "great_wave", "--size", "16", "--scale", "24",
            "--style-size", "32", "--batch-size", "4", "--backbone", "vgg16-hed", "--steps", "3",
            "--lr", "0.01"]
"""Three steps of a fast net on 16 px crops, global batch 4: seconds on two CPU processes."""


def _images(folder: Path, count: int, side: int = 32, seed: int = 0) -> Path:
    """``count`` random-noise PNG files in ``folder`` (half of them in a subfolder)."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        where = folder / ("nested" if k % 2 else "") / f"{k:05d}.png"
        where.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(where)
    return folder


def _run(arguments: list[str], mirror: Path, ranks: int | None = None
         ) -> subprocess.CompletedProcess[str]:
    """The training command in a fresh process: plain, or under ``torchrun`` with ``ranks``
    CPU processes. One thread each, so two ranks fit the two cores the tests run on."""
    launcher = ([] if ranks is None else
                ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"])
    environment = {**os.environ, "STYLELIB_ASSETS_DIR": str(mirror), "OMP_NUM_THREADS": "1",
                   "STYLELIB_DEVICE": "cpu"}
    done = subprocess.run([sys.executable, *launcher, *arguments], capture_output=True,
                          text=True, check=False, timeout=600, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _painted(out: Path, photo: torch.Tensor) -> torch.Tensor:
    """``photo`` through the float32 network of the checkpoint beside the weights file ``out``.

    The pictures are compared, not each weight: Adam divides every gradient by its own running
    size, so a weight whose gradient is almost nothing (the residual blocks' last shifts, which
    the next block's normalisation nearly cancels) moves by a full step either way on rounding
    noise that differs with the order the ranks sum in, and changes no picture."""
    net = TransformerNet()
    net.load_state_dict(load_file(str(out.with_name(f"{out.stem}.checkpoint.safetensors"))))
    with torch.no_grad():
        painted: torch.Tensor = net.eval()(photo)
    return painted


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reader's folder of 12 photos, half in a subfolder, with a text file and an image too
    small to train on."""
    folder = _images(tmp_path_factory.mktemp("photos"), 12)
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")
    Image.new("RGB", (8, 8)).save(folder / "tiny.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


# --------------------------------------------------------------------------- a reader's folders


def test_a_folder_is_read_with_its_subfolders_and_bad_files_are_skipped_with_a_count(
        photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = photo_files(photos)
    assert len(files) == 12
    assert any(p.parent.name == "nested" for p in files)
    said = capsys.readouterr().out
    assert "Skipped 2 of 14 photos" in said and "using 12" in said
    broken_only = tmp_path / "broken"
    broken_only.mkdir()
    shutil.copy(photos / "tiny.png", broken_only)
    shutil.copy(photos / "broken.jpg", broken_only)
    with pytest.raises(StylelibError, match="No photos to use: none of the 2 files opens as an "
                                            "image at least 16 px a side"):
        photo_files(broken_only)


def test_a_file_that_cannot_be_decoded_mid_run_costs_a_warning_not_the_run(
        photos: Path, tmp_path: Path) -> None:
    """A file whose header reads but whose pixels do not (a truncated download)."""
    good = photo_files(photos)[:2]
    truncated = tmp_path / "truncated.png"
    whole = (good[0]).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    crops = PhotoCrops([truncated, *good], 16, 0)
    with pytest.warns(UserWarning, match="skipping .*truncated.png"):
        taken = [crops[k] for k in range(3)]
    assert all(c.shape == (3, 16, 16) for c in taken)


def test_each_rank_loads_its_share_and_together_they_hold_the_global_batch(
        photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crops = PhotoCrops(photo_files(photos), 16, 0)
    whole = [batch for batch in batches_from(crops, 4, done=1, steps=3)]
    monkeypatch.setenv("WORLD_SIZE", "2")
    shares = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        shares.append(list(batches_from(crops, 4, done=1, steps=3)))
    assert [b.shape[0] for b in shares[0]] == [2, 2]
    for step, batch in enumerate(whole):  # rows rank, rank + 2, …: what rank_part takes
        for rank in (0, 1):
            assert torch.equal(shares[rank][step], batch[rank::2])
    with pytest.raises(ValueError, match="batch size 3 does not split evenly over 2 processes"):
        batches_from(crops, 3, done=0, steps=1)


def test_the_priors_noise_is_drawn_for_the_global_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks' losses on their halves average to one process's loss on the whole batch: the
    timesteps and noise each rank uses are its rows of the ones drawn for the whole batch."""
    prior = seeded(lambda: PaintingPrior(prior_unet((8, 16), 1, 16, 8)), 0)
    images = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        whole = denoising_loss(prior, images, seed=7)
        monkeypatch.setenv("WORLD_SIZE", "2")
        halves = []
        for rank in (0, 1):
            monkeypatch.setenv("RANK", str(rank))
            halves.append(denoising_loss(prior, images[rank::2], seed=7))
    assert float(sum(halves)) / 2 == pytest.approx(float(whole), rel=1e-5)


# --------------------------------------------------------------------------- torchrun


@pytest.fixture(scope="module")
def single(photos: Path, mirror_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The weights file of the three-step run in one process (its checkpoint beside it)."""
    out = tmp_path_factory.mktemp("single") / "net.safetensors"
    _run([*FAST_RUN, "--photos", str(photos), "--out", str(out)], mirror_dir)
    return out


def test_two_ranks_train_the_network_of_one_process_and_write_once(
        single: Path, photos: Path, mirror_dir: Path, tmp_path: Path, photo: torch.Tensor) -> None:
    out = tmp_path / "net.safetensors"
    done = _run([*FAST_RUN, "--photos", str(photos), "--out", str(out)], mirror_dir, ranks=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "net.checkpoint.optim-3.pt", "net.checkpoint.safetensors", "net.md", "net.safetensors"]
    assert done.stdout.count("wrote ") == 1
    alone, untrained = _painted(single, photo), seeded(TransformerNet, 0).eval()(photo)
    assert (alone - untrained).abs().max() > 0.01  # it trained
    torch.testing.assert_close(_painted(out, photo), alone, rtol=0, atol=2e-4)
    card = load_weights(out).card
    assert card["losses"] == load_weights(single).card["losses"]
    assert "x 2 processes (torchrun), each with 1/2 of every batch" in card["hardware"]
    assert "batch 4 of 16 px crops" in card["training"]
    assert "12 photos of the folder" in card["data"]


def test_a_run_stopped_on_two_ranks_resumes_on_one(
        single: Path, photos: Path, mirror_dir: Path, tmp_path: Path, photo: torch.Tensor) -> None:
    out = tmp_path / "net.safetensors"
    arguments = [*FAST_RUN, "--photos", str(photos), "--out", str(out)]
    _run([*arguments, "--minutes", "0"], mirror_dir, ranks=2)
    assert "1 Adam steps" in load_weights(out).card["training"]
    _run(arguments, mirror_dir)
    torch.testing.assert_close(_painted(out, photo), _painted(single, photo), rtol=0, atol=2e-4)


def test_ten_thousand_images_train_in_the_memory_of_a_thousand(
        tmp_path: Path, mirror_dir: Path) -> None:
    """The images are streamed, never all loaded: peak memory does not grow with the folder."""
    peaks = []
    for count in (1_000, 10_000):
        folder = _images(tmp_path / str(count), count, side=64, seed=count)
        script = ("import resource, sys; from stylelib import bundled; "
                  "bundled.main(sys.argv[1:]); "
                  "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        done = _run(["-c", script, *FAST_RUN[4:], "--photos", str(folder), "--out",
                     str(tmp_path / f"net{count}.safetensors")], mirror_dir)
        peaks.append(int(done.stdout.rsplit("peak ", 1)[1]))
    print(f"peak RSS: {peaks[0] / 1e3:.0f} MB with 1,000 images, {peaks[1] / 1e3:.0f} MB with "
          "10,000")
    assert peaks[1] < peaks[0] * 1.05 + 20_000  # kB: within 5 % and 20 MB
