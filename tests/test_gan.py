"""Tests for stylelib.gan: the networks' shapes, the training data, one training step, the
discriminator learning, determinism, the collapse indicators and argument checks.

The networks are built narrow (width 8) and train for a few steps on small batches: the
behaviour is the chapter's, the cost a fraction of a second per test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from stylelib import assets, data, gan
from stylelib.errors import StylelibError
from stylelib.gan import Discriminator, Generator

SMALL = {"width": 8, "latent": 16, "batch_size": 8, "samples": 8, "progress": False}
"""Settings that make a training run take milliseconds."""


@pytest.fixture(scope="module")
def crops(mirror_dir: Path) -> torch.Tensor:
    """Sixteen real 32x32 crops of four paintings of the training collection."""
    paintings = sorted((mirror_dir / "training" / "paintings").glob("*.jpg"))[:4]
    return gan.real_crops(paintings, 16, seed=0)


# --------------------------------------------------------------------------- networks and data


def test_generator_makes_images_and_the_discriminator_scores_them() -> None:
    torch.manual_seed(0)
    generator, discriminator = Generator(latent=16, width=8), Discriminator(width=8)
    images = generator(torch.randn(5, 16))
    assert images.shape == (5, 3, gan.SIDE, gan.SIDE)
    assert images.min() >= 0 and images.max() <= 1
    assert discriminator(images).shape == (5,)
    assert discriminator(torch.rand(2, 3, 32, 32)).shape == (2,)


def test_real_crops_are_repeatable_images_of_the_paintings(
    mirror_dir: Path, crops: torch.Tensor
) -> None:
    paintings = sorted((mirror_dir / "training" / "paintings").glob("*.jpg"))[:4]
    assert crops.shape == (16, 3, 32, 32)
    assert crops.min() >= 0 and crops.max() <= 1
    assert torch.equal(gan.real_crops(paintings, 16, seed=0), crops)
    assert not torch.equal(gan.real_crops(paintings, 16, seed=1), crops)


def test_credit_line_names_the_artists_or_the_book_images(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = gan.credit_line(data.training_paintings())
    assert collection.startswith("Real images: random crops of 32 public-domain paintings")
    assert "Vincent van Gogh (9)" in collection and "SOURCES.csv" in collection
    partial = tmp_path / "mirror"
    shutil.copytree(mirror / "style", partial / "style")
    monkeypatch.setenv("STYLELIB_ASSETS_DIR", str(partial))
    fallback = gan.credit_line(data.paintings_for_training())
    assert assets.resolve("starry_night").credit_line in fallback
    assert "no credit on record" in gan.credit_line([tmp_path / "mystery.jpg"])


def test_grid_tiles_and_enlarges() -> None:
    tiled = gan.grid(torch.rand(10, 3, 32, 32), ncols=4, pad=2, zoom=2)
    assert tiled.shape == (1, 3, 3 * 66 + 2, 4 * 66 + 2)
    assert tiled[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0]  # white padding


# --------------------------------------------------------------------------- training


def test_one_training_step_changes_both_networks(crops: torch.Tensor) -> None:
    result = gan.train(crops, steps=1, seed=2, **SMALL)
    torch.manual_seed(2)  # what train builds before its first step
    untrained = (Generator(latent=16, width=8), Discriminator(width=8))
    for before, after in zip(untrained, (result.generator, result.discriminator), strict=True):
        changed = [not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(),
                                                         strict=True)]
        assert all(changed)
    (step,) = result.history
    assert step.keys() == set(gan.KEYS)
    assert 0 < step["d_real"] < 1 and 0 < step["d_fake"] < 1
    assert sorted(result.samples) == [0, 1]
    assert result.samples[0].shape == (8, 3, 32, 32)


def test_discriminator_steps_lower_its_loss_on_a_fixed_batch(crops: torch.Tensor) -> None:
    torch.manual_seed(0)
    generator, discriminator = Generator(latent=16, width=8), Discriminator(width=8)
    fake = gan.generate(generator, torch.randn(16, 16))
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss, means = gan.discriminator_loss(discriminator, crops, fake)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert means["d_real"] > means["d_fake"]


def test_generator_loss_is_non_saturating() -> None:
    """The generator minimises -log D(G(z)) (labels 1), not log(1 - D(G(z)))."""
    discriminator = Discriminator(width=8)
    fake = torch.full((4, 3, 32, 32), 0.5, requires_grad=True)
    loss = gan.generator_loss(discriminator, fake)
    logits = discriminator(fake)
    expected = -torch.log(torch.sigmoid(logits)).mean()
    assert torch.allclose(loss, expected, atol=1e-6)


def test_training_is_deterministic_for_a_seed(crops: torch.Tensor) -> None:
    first = gan.train(crops, steps=3, sample_every=2, seed=5, **SMALL)
    again = gan.train(crops, steps=3, sample_every=2, seed=5, **SMALL)
    other = gan.train(crops, steps=3, sample_every=2, seed=6, **SMALL)
    assert first.history == again.history
    assert sorted(first.samples) == [0, 2, 3]
    for step, images in first.samples.items():
        assert torch.equal(images, again.samples[step])
    assert torch.equal(first.noise, again.noise)
    for a, b in zip(first.generator.state_dict().values(), again.generator.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert first.history != other.history


# --------------------------------------------------------------------------- diversity


def test_diversity_is_zero_for_copies_and_high_for_real_crops(crops: torch.Tensor) -> None:
    collapsed = crops[:1].repeat(16, 1, 1, 1)
    assert gan.diversity(collapsed) == 0.0
    nearly = (collapsed + 0.02 * torch.randn_like(collapsed)).clamp(0, 1)
    real = gan.diversity(crops)
    assert real > 0.1
    assert gan.diversity(nearly) < 0.1 * real
    # Two distinct images, copied eight times each: half the pairs differ.
    two = crops[:2].repeat(8, 1, 1, 1)
    assert 0 < gan.diversity(two) < real


def test_nearest_finds_duplicates_that_diversity_misses(crops: torch.Tensor) -> None:
    """Four noisy copies of each of four crops: spread like real crops, but all duplicates."""
    generator = torch.Generator().manual_seed(0)
    copies = crops[:4].repeat(4, 1, 1, 1)
    copies = (copies + 0.02 * torch.randn(copies.shape, generator=generator)).clamp(0, 1)
    assert gan.diversity(copies) > 0.5 * gan.diversity(crops)
    within, _ = gan.nearest(copies)
    real, _ = gan.nearest(crops)
    assert within.shape == (16,) and float(within.mean()) < 0.2 * float(real.mean())
    # Against a reference: each copy's closest crop is the one it was copied from.
    distances, index = gan.nearest(copies, crops)
    assert index.tolist() == [0, 1, 2, 3] * 4
    assert float(distances.max()) < 0.02


def test_untrained_generator_has_collapsed() -> None:
    """DCGAN's small initial weights make every noise vector give almost the same grey image."""
    result = gan.train(torch.rand(4, 3, 32, 32), steps=1, **SMALL)
    assert gan.diversity(result.samples[0]) < 0.01


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 0}, "steps must be a positive integer"),
        ({"batch_size": -1}, "batch_size must be a positive integer"),
        ({"sample_every": 1.5}, "sample_every must be a positive integer"),
        ({"seed": -1}, r"seed must be an integer >= 0"),
        ({"lr": 0.0}, r"lr must be a finite number > 0"),
        ({"lr": float("nan")}, r"lr must be a finite number"),
        ({"betas": (0.5, 1.0)}, r"betas must be two numbers in \[0, 1\)"),
        ({"betas": (-0.1, 0.9)}, r"betas must be a finite number >= 0"),
    ],
)
def test_bad_training_arguments_are_named(changes: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"steps": 2, **SMALL, **changes}
    with pytest.raises(StylelibError, match=message):
        gan.train(torch.rand(4, 3, 32, 32), **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("real", "message"),
    [
        (torch.rand(4, 3, 64, 64), r"real must hold 32x32 images"),
        (torch.rand(4, 32, 32), r"real must be a batch \[B, 3, H, W\] of at least 2"),
        (torch.rand(1, 3, 32, 32), r"at least 2 RGB images"),
        (torch.rand(4, 3, 32, 32) * 255, r"values in \[0, 1\]"),
        (torch.full((4, 3, 32, 32), float("nan")), "finite"),
        ([[0.5]], "must be a torch.Tensor"),
    ],
)
def test_bad_training_images_are_refused(real: object, message: str) -> None:
    with pytest.raises(StylelibError, match=message):
        gan.train(real, steps=1, **SMALL)  # type: ignore[arg-type]


def test_other_bad_arguments(mirror_dir: Path) -> None:
    with pytest.raises(StylelibError, match=r"images must be a batch .* of at least 2"):
        gan.diversity(torch.rand(1, 3, 32, 32))
    with pytest.raises(StylelibError, match="reference must be a batch"):
        gan.nearest(torch.rand(2, 3, 32, 32), torch.rand(3, 32, 32))
    with pytest.raises(StylelibError, match="side must be a positive integer"):
        gan.diversity(torch.rand(2, 3, 32, 32), side=0)
    with pytest.raises(StylelibError, match="n must be a positive integer"):
        gan.real_crops(mirror_dir / "training" / "paintings", 0)
    with pytest.raises(StylelibError, match="scale must be an integer >= 32"):
        gan.real_crops(mirror_dir / "training" / "paintings", 4, scale=16)
    with pytest.raises(StylelibError,
                       match=r"no such folder is not a folder: pass a folder of paintings"):
        gan.real_crops(mirror_dir / "no such folder", 4)
    with pytest.raises(StylelibError, match="width must be a positive integer"):
        Generator(width=0)
    with pytest.raises(StylelibError, match="zoom must be a positive integer"):
        gan.grid(torch.rand(2, 3, 32, 32), zoom=0)
