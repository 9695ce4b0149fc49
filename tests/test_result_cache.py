"""The shared result cache: where it lives, and that a result is reused only when every part
of its key is equal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylelib import gatys, result_cache
from stylelib.result_cache import FOLDER_ENV, FOLDER_NAME, remembered

HED = "vgg16-hed"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty result cache in a temporary folder."""
    folder = tmp_path / "results"
    monkeypatch.setenv(FOLDER_ENV, str(folder))
    return folder


class Counter:
    """A computation that counts its runs and returns a fresh tensor each time."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self) -> torch.Tensor:
        self.runs += 1
        return torch.full((2,), float(self.runs))


# --------------------------------------------------------------------------- where it lives


def test_the_store_is_in_the_books_build_folder_only_when_that_exists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FOLDER_ENV)
    (tmp_path / "_config.yml").write_text("title: t\n")
    chapter = tmp_path / "notebooks"
    chapter.mkdir()
    monkeypatch.chdir(chapter)
    assert result_cache.folder() is None  # a fresh clone: nothing built, nothing kept
    (tmp_path / "_build").mkdir()
    assert result_cache.folder() == tmp_path / "_build" / FOLDER_NAME
    monkeypatch.setenv(FOLDER_ENV, "")
    assert result_cache.folder() is None
    monkeypatch.setenv(FOLDER_ENV, str(tmp_path / "elsewhere"))
    assert result_cache.folder() == tmp_path / "elsewhere"


def test_outside_a_book_nothing_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FOLDER_ENV)
    monkeypatch.chdir(tmp_path)  # no _config.yml here or above (tmp folders are not books)
    counter = Counter()
    remembered("count", counter, 1)
    remembered("count", counter, 1)
    assert counter.runs == 2 and not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- the key


def test_a_result_is_reused_only_when_every_key_part_is_equal(store: Path) -> None:
    image = torch.rand(1, 3, 4, 5)
    counter = Counter()
    first = remembered("count", counter, image, {"weight": 10.0}, "cpu")
    again = remembered("count", counter, image.clone(), {"weight": 10.0}, "cpu")
    assert counter.runs == 1 and torch.equal(first, again)
    changed = image.clone()
    changed.view(-1)[7] = torch.nextafter(changed.view(-1)[7], torch.tensor(2.0))  # one bit
    remembered("count", counter, changed, {"weight": 10.0}, "cpu")
    assert counter.runs == 2
    remembered("count", counter, image, {"weight": 10.5}, "cpu")
    remembered("count", counter, image, {"weight": 10.0}, "cuda:0")
    remembered("other", counter, image, {"weight": 10.0}, "cpu")
    remembered("count", counter, image.double(), {"weight": 10.0}, "cpu")
    assert counter.runs == 6
    remembered("count", counter, image, {"weight": 10.0}, "cpu")
    assert counter.runs == 6 and store.is_dir()


def test_a_change_to_stylelib_itself_changes_every_key(
        store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counter()
    remembered("count", counter, 1)
    monkeypatch.setattr(result_cache, "package_digest", lambda: "edited")
    remembered("count", counter, 1)
    assert counter.runs == 2


def test_bypassed_computes_and_an_interrupted_computation_keeps_nothing(store: Path) -> None:
    counter = Counter()
    with result_cache.bypassed():
        remembered("count", counter, 1)
        remembered("count", counter, 1)
    assert counter.runs == 2 and not store.exists()

    def interrupted() -> torch.Tensor:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        remembered("count", interrupted, 2)
    assert torch.equal(remembered("count", counter, 2), torch.full((2,), 3.0))


# --------------------------------------------------------------------------- Gatys through it


def test_gatys_reuses_an_optimisation_only_for_the_same_pair_and_settings(
        store: Path, photo: torch.Tensor, painting: torch.Tensor,
        optimize_runs: list[int]) -> None:
    runs = optimize_runs
    first = gatys.stylize(photo, painting, steps=2, backbone=HED, progress=False)
    again = gatys.stylize(photo.clone(), painting, steps=2, backbone=HED, progress=False)
    assert len(runs) == 1
    assert torch.equal(first.image, again.image) and again.seconds == first.seconds
    assert again.history == first.history
    nudged = photo.clone()
    nudged[0, 0, 0, 0] = 1 - nudged[0, 0, 0, 0]
    gatys.stylize(nudged, painting, steps=2, backbone=HED, progress=False)
    gatys.stylize(photo, painting, steps=2, style_weight=11.0, backbone=HED, progress=False)
    gatys.stylize(photo, painting, steps=3, backbone=HED, progress=False)
    assert len(runs) == 4
    gatys.stylize(photo, painting, steps=2, backbone=HED, progress=False,
                  callback=lambda step, image: None)
    assert len(runs) == 5  # a callback watches the steps, so they run
