"""Tests for stylelib.diffusion: the SDEdit timestep rule, the forward process, the painting
prior (training, resuming, weight files, sampling, SDEdit) and the Stable Diffusion path.

The prior is a toy UNet trained for a few dozen steps on 16 px crops of three small paintings;
the Stable Diffusion path runs on a tiny random pipeline built offline. Each test takes well
under a second or two on one CPU thread.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from stylelib import diffusion
from stylelib.checkpoints import TrainResult
from stylelib.diffusion import (
    PaintingPrior,
    add_noise,
    check_strength,
    denoising_loss,
    img2img_timesteps,
    load_prior,
    load_sd_img2img,
    noise_schedule,
    prior_unet,
    sample,
    save_prior,
    sd_img2img,
    sdedit,
    sdedit_trace,
    tiny_sd_pipeline,
    train_prior,
)
from stylelib.errors import StylelibError
from stylelib.images import load_image, save_image

SIZE = 16
"""Crop side the toy prior trains on (a multiple of its 4x downscaling)."""


def toy_prior(seed: int = 0) -> PaintingPrior:
    """A 3-block UNet with 16-32 channels: the default architecture at toy width."""
    torch.manual_seed(seed)
    return PaintingPrior(prior_unet((16, 32, 32), layers_per_block=1, sample_size=SIZE,
                                    norm_num_groups=8))


@pytest.fixture(scope="module")
def paintings(mirror_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three paintings from the mirror, saved at 48 px so each crop decodes in microseconds."""
    folder = tmp_path_factory.mktemp("paintings")
    for name in ("starry_night", "great_wave", "the_scream"):
        image = load_image(mirror_dir / "style" / f"{name}.jpg", size=48)
        save_image(image, folder / f"{name}.png")
    return folder


def train_toy(paintings: Path, steps: int, **kwargs: object) -> TrainResult[PaintingPrior]:
    """Train the toy prior with the settings every training test shares."""
    return train_prior(paintings, steps=steps, prior=toy_prior(), size=SIZE, scale=48,
                       batch_size=8, lr=2e-3, warmup=5, device="cpu", progress=False,
                       **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(paintings: Path) -> TrainResult[PaintingPrior]:
    """The toy prior after 40 steps."""
    return train_toy(paintings, 40)


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


def test_training_lowers_the_denoising_loss(trained: TrainResult[PaintingPrior],
                                            paintings: Path) -> None:
    crops = torch.cat([load_image(p, size=2 * SIZE)[..., :SIZE, :SIZE]
                       for p in sorted(paintings.iterdir())] * 4)
    before = torch.stack([denoising_loss(toy_prior(), crops, seed) for seed in range(8)]).mean()
    with torch.no_grad():
        after = torch.stack([denoising_loss(trained.net, crops, s) for s in range(8)]).mean()
    assert after < 0.8 * before
    assert len(trained.history) == trained.steps_done == 40


def test_resumed_training_equals_an_uninterrupted_run(paintings: Path, tmp_path: Path) -> None:
    whole = train_toy(paintings, 4)
    path = tmp_path / "prior.ckpt.safetensors"
    train_toy(paintings, 2, checkpoint=path, checkpoint_every=1)
    resumed = train_toy(paintings, 4, checkpoint=path, checkpoint_every=1)
    assert resumed.history == whole.history
    for mine, theirs in zip(resumed.net.parameters(), whole.net.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    with pytest.raises(StylelibError, match=r"trained with .*lr=0\.002"):
        train_prior(paintings, steps=6, prior=toy_prior(), size=SIZE, scale=48, batch_size=8,
                    lr=1e-3, warmup=5, device="cpu", progress=False, checkpoint=path)


def test_saved_prior_is_fp16_safetensors_and_loads_back(trained: TrainResult[PaintingPrior],
                                                        tmp_path: Path) -> None:
    path = save_prior(trained.net, tmp_path / "prior.safetensors", {"trained_on": "3 paintings"})
    with safe_open(str(path), framework="pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}  # noqa: SIM118
    loaded = load_prior(path, device="cpu")
    assert loaded.card == {"trained_on": "3 paintings"}
    assert list(loaded.unet.config["block_out_channels"]) == [16, 32, 32]
    for mine, theirs in zip(loaded.parameters(), trained.net.parameters(), strict=True):
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


def test_samples_have_the_crop_size_and_pixel_range(trained: TrainResult[PaintingPrior]) -> None:
    images = sample(trained.net, n=2, steps=5, seed=0)
    assert images.shape == (2, 3, SIZE, SIZE)
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, sample(trained.net, n=2, steps=5, seed=0))
    with pytest.raises(StylelibError, match="not a multiple of 4"):
        sample(trained.net, n=1, steps=5, size=18)


def test_sdedit_moves_further_from_the_photo_as_strength_rises(trained: TrainResult[PaintingPrior],
                                                               photo: torch.Tensor) -> None:
    low, middle, high = [
        (sdedit(trained.net, photo, strength, steps=10, seed=0) - photo).abs().mean()
        for strength in (0.2, 0.5, 0.8)
    ]
    # Beyond about 0.5 the toy prior's painting replaces the photo, so the distance levels off.
    assert low < 0.7 * middle and low < 0.7 * high


def test_sdedit_keeps_any_size_and_shows_its_start(trained: TrainResult[PaintingPrior],
                                                   photo: torch.Tensor) -> None:
    assert photo.shape[-2:] == (24, 32)
    odd = photo[..., :, :30]
    trace = sdedit_trace(trained.net, odd, 0.5, steps=6, seed=1)
    assert trace.result.shape == trace.noised.shape == odd.shape
    assert trace.timesteps.tolist() == [499, 332, 166]
    assert len(trace.predictions) == 3
    assert torch.equal(trace.result, sdedit(trained.net, odd, 0.5, steps=6, seed=1))
    assert torch.equal(sdedit(trained.net, odd, 0.0), odd)


# --------------------------------------------------------------------------- Stable Diffusion


def count_calls(module: nn.Module) -> list[int]:
    """A list that grows by one each time ``module`` runs forward."""
    calls: list[int] = []
    module.register_forward_hook(lambda *args: calls.append(1))
    return calls


@pytest.mark.parametrize(("steps", "strength", "guidance"), [(4, 0.5, 0.0), (5, 0.6, 3.0)])
def test_tiny_pipeline_runs_int_steps_times_strength_unet_calls(
    steps: int, strength: float, guidance: float, photo: torch.Tensor
) -> None:
    pipe = tiny_sd_pipeline()
    calls = count_calls(pipe.unet)
    result = sd_img2img(pipe, photo[..., :, :30], "a painting", strength, steps, guidance, seed=0)
    assert len(calls) == int(steps * strength)
    assert result.shape == photo[..., :, :30].shape
    assert result.min() >= 0 and result.max() <= 1
    again = sd_img2img(pipe, photo[..., :, :30], "a painting", strength, steps, guidance, seed=0)
    assert torch.equal(result, again)


def test_tiny_pipeline_at_strength_zero_returns_the_input(photo: torch.Tensor) -> None:
    pipe = tiny_sd_pipeline()
    calls = count_calls(pipe.unet)
    assert torch.equal(sd_img2img(pipe, photo, strength=0.0), photo)
    assert not calls


def test_flagged_output_is_an_error_not_a_black_image(photo: torch.Tensor) -> None:
    from transformers import CLIPImageProcessor

    class FlagEverything(nn.Module):
        """Stands in for StableDiffusionSafetyChecker: blacks out and flags every image."""

        device, dtype = torch.device("cpu"), torch.float32

        def forward(self, images: torch.Tensor, clip_input: torch.Tensor
                    ) -> tuple[torch.Tensor, list[bool]]:
            return torch.zeros_like(images), [True] * len(images)

    pipe = tiny_sd_pipeline()
    pipe.safety_checker = FlagEverything()
    pipe.feature_extractor = CLIPImageProcessor()
    with pytest.raises(StylelibError, match="safety checker flagged"):
        sd_img2img(pipe, photo, strength=0.5, steps=2)


@pytest.mark.usefixtures("no_network")
@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
def test_loading_stable_diffusion_offline_fails_fast_and_clearly(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(StylelibError) as caught:
        load_sd_img2img(cache_dir=tmp_path, device="cpu")
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "could not load the stable diffusion weights" in message.lower()
    assert "internet" in message and "GPU" in message and "Colab" in message


# --------------------------------------------------------------------------- the bundled prior


def test_missing_bundled_prior_names_the_training_command(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setattr(diffusion, "WEIGHTS_DIR", tmp_path)
    assert diffusion.prior_path() == tmp_path / "prior_starry_night.safetensors"
    with pytest.raises(StylelibError) as caught:
        diffusion.pretrained()
    message = str(caught.value)
    assert "bundled painting prior is missing" in message
    assert f"python -m stylelib.diffusion {diffusion.PRIOR_PAINTING} --steps" in message


PRIOR_CARD = {"model", "painting", "data", "training", "hardware", "time", "loss", "licence"}


def test_bundled_prior_is_the_documented_network_with_a_card(photo: torch.Tensor) -> None:
    prior = diffusion.pretrained(device="cpu")
    assert tuple(prior.unet.config["block_out_channels"]) == diffusion.PRIOR_CHANNELS
    assert prior.card.keys() >= PRIOR_CARD
    assert "The Starry Night" in prior.card["painting"]
    assert 0 < float(prior.card["loss"].split()[0]) < 0.2
    assert diffusion.prior_path().with_suffix(".md").is_file()
    small = photo[..., :32, :32]
    assert (sdedit(prior, small, 0.5, steps=4) - small).abs().mean() > 0.02


def test_training_command_writes_weights_with_a_card(mirror: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny_prior.safetensors"
    arguments = ["starry_night", "--steps", "2", "--batch-size", "2", "--size", "16",
                 "--scale", "24", "--channels", "8,8,8", "--out", str(out)]
    diffusion.main(arguments)
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
    diffusion.main(arguments)
    assert "2 Adam steps" in load_prior(out).card["training"]
