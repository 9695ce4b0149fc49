"""Run profiles: one place that decides image sizes, step counts, device and seed.

Notebooks never hard-code sizes; they ask the active profile, so the same chapter runs in
seconds under CI (``quick``), looks right in the CPU-built book (``book``) and reproduces
paper settings on a GPU (``full``).
"""

from __future__ import annotations

import os
import platform
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from stylelib.distributed import local_device

T = TypeVar("T")
PROFILE_ENV = "STYLELIB_PROFILE"
DEVICE_ENV = "STYLELIB_DEVICE"


@dataclass(frozen=True)
class Profile:
    """Sizes and step counts shared by every chapter."""

    name: str
    size: int
    """Long side, in pixels, of the images the methods work on."""
    steps: int
    """Optimiser iterations for one Gatys result (L-BFGS iterations or Adam steps)."""
    large_size: int
    """Long side of the multi-scale (coarse-to-fine) result."""
    texture_size: int
    """Side of the square textures synthesised from noise."""
    frames: int
    """Pre-rendered frames per slider in the static book."""
    train_steps: int
    """Steps of the live training demos (a network trained while the chapter runs)."""
    train_size: int
    """Crop side, in pixels, of those demos' training images."""
    train_batch: int
    """Crops (or photo-painting pairs) per step of those demos."""
    gan_steps: int
    """Training steps of chapter 1's small GAN (batches of 64 images of 32 x 32 pixels)."""
    gan_crops: int
    """Painting crops in that GAN's fixed training set."""
    denoise_steps: int
    """DDIM steps of a full denoising run (SDEdit at strength s runs ``int(steps * s)``)."""
    clip_frames: int
    """Frames of the made clips that chapter 8 puts in motion (played at 24 fps)."""
    print_sizes: tuple[int, ...]
    """Long sides of chapter 7's prints, smallest first: what a larger picture costs."""
    description: str


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", 64, 4, 96, 48, 5, 4, 32, 4, 20, 256, 10, 6, (512, 1024),
                     "CI and smoke tests: tiny images, a few steps"),
    "book": Profile("book", 256, 100, 512, 128, 5, 150, 128, 4, 2000, 2048, 25, 24,
                    (512, 1024, 2048, 4096),
                    "the CPU-built book: results that look right"),
    "full": Profile("full", 512, 500, 1024, 256, 7, 2000, 256, 4, 10000, 2048, 50, 32,
                    (512, 1024, 2048, 4096),
                    "paper-like settings, for a GPU"),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the named profile, else the one in ``$STYLELIB_PROFILE``, else ``book``."""
    chosen = name or os.environ.get(PROFILE_ENV) or "book"
    if chosen not in PROFILES:
        raise ValueError(
            f"Unknown profile {chosen!r}: choose one of {', '.join(PROFILES)} "
            f"(argument or ${PROFILE_ENV})."
        )
    return PROFILES[chosen]


def pick_device(name: str | None = None) -> torch.device:
    """Return the requested device, else ``$STYLELIB_DEVICE``, else CUDA, MPS or CPU (under
    ``torchrun``, CUDA is the GPU of the process's local rank)."""
    chosen = name or os.environ.get(DEVICE_ENV)
    if chosen:
        where = "--device/argument" if name else f"${DEVICE_ENV}"
        try:
            device = torch.device(chosen)
        except RuntimeError:
            raise ValueError(
                f"Unknown device {chosen!r} (from {where}): use cpu, cuda, cuda:N or mps."
            ) from None
        available = {"cpu": True, "cuda": torch.cuda.is_available(),
                     "mps": torch.backends.mps.is_available()}
        if not available.get(device.type, False):
            raise ValueError(
                f"Device {chosen!r} (from {where}) is not available on this machine: use cpu"
                + ", cuda" * torch.cuda.is_available() + ", mps" * available["mps"]
                + (".", f", or unset {DEVICE_ENV}.")[name is None])
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"Device {chosen!r} (from {where}) does not exist: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s).")
        return local_device(device)
    if torch.cuda.is_available():
        return local_device(torch.device("cuda"))
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """Where something ran, for tables and model cards: the GPU's name, or the CPU and the
    number of threads torch uses (timings on a CPU depend on both)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return (f"CPU ({platform.processor() or platform.machine()}, {threads} "
            f"thread{'s' if threads != 1 else ''})")


def seeded(build: Callable[[], T], seed: int) -> T:
    """``build()`` with the random generator seeded by ``seed`` and restored afterwards: a
    network's initial weights then depend on ``seed`` alone, whatever ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so a chapter's pictures are repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Session:
    """What a notebook's setup cell decided: profile, device and seed."""

    profile: Profile
    device: torch.device
    seed: int

    def __str__(self) -> str:
        return (
            f"profile={self.profile.name} ({self.profile.description}), "
            f"device={self.device}, seed={self.seed}, torch {torch.__version__}"
        )


def setup(profile: str | None = None, device: str | None = None, seed: int = 0) -> Session:
    """Pick profile and device, seed everything and print the choice (a notebook's setup cell).

    Without a profile argument or ``$STYLELIB_PROFILE``, a GPU (Colab's, say) gets ``full``,
    paper-like settings, and anything else ``book``.
    """
    chosen = pick_device(device)
    default = "full" if chosen.type == "cuda" else "book"
    session = Session(get_profile(profile or os.environ.get(PROFILE_ENV) or default), chosen, seed)
    seed_everything(seed)
    print(session)
    return session
