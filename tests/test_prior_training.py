"""Tests for stylelib.prior_training: the denoising loss falls, a resumed run equals an
uninterrupted one, and the training command writes weights with a model card.

The prior is the toy UNet of tests/priors.py on 16 px crops of three small paintings.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from priors import PRIOR_CARD, SIZE, toy_prior, train_toy

from stylelib.diffusion import PaintingPrior, load_prior
from stylelib.errors import StylelibError
from stylelib.images import load_image
from stylelib.prior_training import denoising_loss, main, train_prior
from stylelib.training import TrainResult


def test_training_lowers_the_denoising_loss(trained_prior: TrainResult[PaintingPrior],
                                            prior_paintings: Path) -> None:
    crops = torch.cat([load_image(p, size=2 * SIZE)[..., :SIZE, :SIZE]
                       for p in sorted(prior_paintings.iterdir())] * 4)
    before = torch.stack([denoising_loss(toy_prior(), crops, seed) for seed in range(8)]).mean()
    with torch.no_grad():
        after = torch.stack([denoising_loss(trained_prior.net, crops, s) for s in range(8)]).mean()
    assert after < 0.8 * before
    assert len(trained_prior.history) == trained_prior.steps_done == 40


def test_resumed_training_equals_an_uninterrupted_run(prior_paintings: Path,
                                                      tmp_path: Path) -> None:
    whole = train_toy(prior_paintings, 4)
    path = tmp_path / "prior.ckpt.safetensors"
    train_toy(prior_paintings, 2, checkpoint=path, checkpoint_every=1)
    resumed = train_toy(prior_paintings, 4, checkpoint=path, checkpoint_every=1)
    assert resumed.history == whole.history
    for mine, theirs in zip(resumed.net.parameters(), whole.net.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    with pytest.raises(StylelibError, match=r"trained with .*lr=0\.002"):
        train_prior(prior_paintings, steps=6, prior=toy_prior(), size=SIZE, scale=48, batch_size=8,
                    lr=1e-3, warmup=5, device="cpu", progress=False, checkpoint=path)


def test_training_command_writes_weights_with_a_card(mirror: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny_prior.safetensors"
    arguments = ["starry_night", "--steps", "2", "--batch-size", "2", "--size", "16",
                 "--scale", "24", "--channels", "8,8,8", "--out", str(out)]
    main(arguments)
    prior = load_prior(out)
    assert list(prior.unet.config["block_out_channels"]) == [8, 8, 8]
    card = prior.card
    assert card.keys() >= PRIOR_CARD
    assert "Vincent van Gogh" in card["painting"] and "public domain" in card["painting"]
    assert "2 Adam steps, batch 2" in card["training"]
    assert 0 < float(card["loss"].split()[0]) < 10
    assert out.with_name("tiny_prior.checkpoint.safetensors").is_file()
    readme = out.with_suffix(".md").read_text(encoding="utf-8")
    assert readme.startswith("# Model card: tiny_prior.safetensors")
    assert all(value in readme for value in card.values())
    assert f"wrote {out}" in capsys.readouterr().out
    # Run again with the same steps: it resumes the finished checkpoint and trains nothing.
    main(arguments)
    assert "2 Adam steps" in load_prior(out).card["training"]


def test_the_training_command_runs_where_the_book_cites_it() -> None:
    done = subprocess.run([sys.executable, "-m", "stylelib", "train", "prior", "--help"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m stylelib train prior" in done.stdout
