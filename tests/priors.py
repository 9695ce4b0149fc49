"""The toy painting prior that tests/test_diffusion.py and tests/test_prior_training.py share
(the fixtures that train it are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from stylelib.diffusion import PaintingPrior, prior_unet
from stylelib.prior_training import train_prior
from stylelib.training import TrainResult

SIZE = 16
"""Crop side the toy prior trains on (a multiple of its 4x downscaling)."""
PRIOR_CARD = {"model", "painting", "data", "training", "hardware", "time", "loss", "licence"}
"""The fields every prior's model card has."""


def toy_prior(seed: int = 0) -> PaintingPrior:
    """A 3-block UNet with 16-32 channels: the default architecture at toy width."""
    torch.manual_seed(seed)
    return PaintingPrior(prior_unet((16, 32, 32), layers_per_block=1, sample_size=SIZE,
                                    norm_num_groups=8))


def train_toy(paintings: Path, steps: int, **kwargs: object) -> TrainResult[PaintingPrior]:
    """Train the toy prior with the settings every training test shares."""
    return train_prior(paintings, steps=steps, prior=toy_prior(), size=SIZE, scale=48,
                       batch_size=8, lr=2e-3, warmup=5, device="cpu", progress=False,
                       **kwargs)  # type: ignore[arg-type]
