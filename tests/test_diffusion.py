"""Tests for stylelib.diffusion: the SDEdit timestep rule, the forward process, the painting
prior (weight files, sampling, SDEdit) and the bundled prior.

The prior is a toy UNet trained for a few dozen steps on 16 px crops of three small paintings
(tests/priors.py); the timestep rule is checked against a tiny random Stable Diffusion pipeline
built offline. Each test takes well under a second or two on one CPU thread.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from priors import PRIOR_CARD, SIZE
from safetensors import safe_open

from stylelib import diffusion
from stylelib.diffusion import (
    PaintingPrior,
    add_noise,
    check_strength,
    img2img_timesteps,
    load_prior,
    noise_schedule,
    sample,
    save_prior,
    sdedit,
    sdedit_trace,
)
from stylelib.errors import StylelibError
from stylelib.stable_diffusion import tiny_sd_pipeline
from stylelib.training import TrainResult


@pytest.fixture(scope="module")
def pipe() -> object:
    """One tiny random Stable Diffusion img2img pipeline for the module."""
    return tiny_sd_pipeline(seed=0)


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan")])
def test_strength_outside_unit_interval_is_refused(strength: float) -> None:
    with pytest.raises(StylelibError, match=r"strength must be a number in \[0, 1\]"):
        check_strength(10, strength)


def test_strength_too_small_for_the_steps_says_what_to_raise() -> None:
    with pytest.raises(StylelibError) as caught:
        check_strength(3, 0.2)
    message = str(caught.value)
    assert "no denoising step would run" in message
    assert "raise steps to at least 5" in message
    assert "strength to at least 0.333333" in message


@pytest.mark.parametrize("scheduler_class", ["DDIMScheduler", "DDPMScheduler"])
def test_timesteps_follow_the_diffusers_img2img_pipeline(pipe: object,
                                                         scheduler_class: str) -> None:
    import diffusers

    scheduler = getattr(diffusers, scheduler_class).from_config(pipe.scheduler.config)  # type: ignore[attr-defined]
    pipe.scheduler = scheduler  # type: ignore[attr-defined]
    for steps, strength in [(10, 0.5), (50, 0.75), (4, 1.0), (7, 0.3), (25, 0.04), (3, 0.99)]:
        ours = img2img_timesteps(scheduler, steps, strength)
        scheduler.set_timesteps(steps)
        theirs, count = pipe.get_timesteps(steps, strength, "cpu")  # type: ignore[attr-defined]
        assert torch.equal(ours, theirs), (steps, strength)
        assert count == int(steps * strength)


def test_forward_process_runs_from_image_to_noise(painting: torch.Tensor) -> None:
    schedule = noise_schedule()
    assert schedule.alphas_cumprod.shape == schedule.snr.shape == (1000,)
    assert (schedule.snr.diff() < 0).all() and schedule.alphas_cumprod[-1] < 1e-4
    near = (add_noise(painting, 0, seed=1) - painting).abs().mean()
    far = (add_noise(painting, 999, seed=1) - painting).abs().mean()
    assert near < 0.02 < 0.2 < far
    assert torch.equal(add_noise(painting, 500, seed=3), add_noise(painting, 500, seed=3))
    with pytest.raises(StylelibError, match=r"t must be a training timestep in \[0, 999\]"):
        add_noise(painting, 1000)


# --------------------------------------------------------------------------- the prior


def test_saved_prior_is_fp16_safetensors_and_loads_back(
        trained_prior: TrainResult[PaintingPrior], tmp_path: Path) -> None:
    path = save_prior(trained_prior.net, tmp_path / "prior.safetensors",
                      {"trained_on": "3 paintings"})
    with safe_open(str(path), framework="pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}  # noqa: SIM118
    loaded = load_prior(path, device="cpu")
    assert loaded.card == {"trained_on": "3 paintings"}
    assert list(loaded.unet.config["block_out_channels"]) == [16, 32, 32]
    for mine, theirs in zip(loaded.parameters(), trained_prior.net.parameters(), strict=True):
        assert torch.equal(mine, theirs.half().float())


def test_pickles_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    for name in ("prior.pt", "prior.safetensors"):
        (tmp_path / name).write_bytes(pickle.dumps(Payload()))
        with pytest.raises(StylelibError, match="never unpickles"):
            load_prior(tmp_path / name)
    assert not marker.exists()


def test_samples_have_the_crop_size_and_pixel_range(
        trained_prior: TrainResult[PaintingPrior]) -> None:
    images = sample(trained_prior.net, n=2, steps=5, seed=0)
    assert images.shape == (2, 3, SIZE, SIZE)
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, sample(trained_prior.net, n=2, steps=5, seed=0))
    with pytest.raises(StylelibError, match="not a multiple of 4"):
        sample(trained_prior.net, n=1, steps=5, size=18)


def test_sdedit_moves_further_from_the_photo_as_strength_rises(
        trained_prior: TrainResult[PaintingPrior], photo: torch.Tensor) -> None:
    low, middle, high = [
        (sdedit(trained_prior.net, photo, strength, steps=10, seed=0) - photo).abs().mean()
        for strength in (0.2, 0.5, 0.8)
    ]
    # Beyond about 0.5 the toy prior's painting replaces the photo, so the distance levels off.
    assert low < 0.7 * middle and low < 0.7 * high


def test_sdedit_in_bfloat16_follows_float32(
        trained_prior: TrainResult[PaintingPrior], photo: torch.Tensor,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The UNet runs in bfloat16 where the hardware has it, the scheduler in float32: the
    picture moves by rounding only (measured with the bundled prior at 256 px: 0.3/255)."""
    pictures = []
    for setting in ("0", "1"):
        monkeypatch.setenv("STYLELIB_BF16", setting)
        pictures.append(sdedit(trained_prior.net, photo, 0.5, steps=10, seed=0))
    assert pictures[1].dtype == torch.float32
    assert 0 < float((pictures[1] - pictures[0]).abs().mean()) < 2 / 255


def test_sdedit_keeps_any_size_and_shows_its_start(
        trained_prior: TrainResult[PaintingPrior], photo: torch.Tensor) -> None:
    assert photo.shape[-2:] == (24, 32)
    odd = photo[..., :, :30]
    trace = sdedit_trace(trained_prior.net, odd, 0.5, steps=6, seed=1)
    assert trace.result.shape == trace.noised.shape == odd.shape
    assert trace.timesteps.tolist() == [499, 332, 166]
    assert len(trace.predictions) == 3
    assert torch.equal(trace.result, sdedit(trained_prior.net, odd, 0.5, steps=6, seed=1))
    assert torch.equal(sdedit(trained_prior.net, odd, 0.0), odd)


# --------------------------------------------------------------------------- the bundled prior


def test_missing_bundled_prior_names_the_training_command(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setattr(diffusion, "WEIGHTS_DIR", tmp_path)
    assert diffusion.prior_path() == tmp_path / "prior_starry_night.safetensors"
    with pytest.raises(StylelibError) as caught:
        diffusion.pretrained()
    message = str(caught.value)
    assert "bundled painting prior is missing" in message
    assert f"python -m stylelib train prior {diffusion.PRIOR_PAINTING} --steps" in message


def test_bundled_prior_is_the_documented_network_with_a_card(photo: torch.Tensor) -> None:
    prior = diffusion.pretrained(device="cpu")
    assert tuple(prior.unet.config["block_out_channels"]) == diffusion.PRIOR_CHANNELS
    assert prior.card.keys() >= PRIOR_CARD
    assert "The Starry Night" in prior.card["painting"]
    assert 0 < float(prior.card["loss"].split()[0]) < 0.2
    assert diffusion.prior_path().with_suffix(".md").is_file()
    small = photo[..., :32, :32]
    assert (sdedit(prior, small, 0.5, steps=4) - small).abs().mean() > 0.02
