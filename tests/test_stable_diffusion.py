"""Tests for stylelib.stable_diffusion on a tiny random pipeline built offline: img2img runs
``int(steps * strength)`` UNet calls, strength 0 returns the input, a flagged result is an
error, and loading without internet fails fast with advice.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn

from stylelib.errors import StylelibError
from stylelib.stable_diffusion import load_sd_img2img, sd_img2img, tiny_sd_pipeline


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
