"""Tests for stylelib.data: photo files, resumable random crops and the training collection."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylelib import assets, data
from stylelib.data import MultiScaleCrops, PhotoCrops, photo_files
from stylelib.errors import StylelibError


@pytest.fixture(scope="module")
def photos(mirror_dir: Path) -> list[Path]:
    """Four photographs of the training collection."""
    return sorted((mirror_dir / "training" / "photos").glob("*.jpg"))[:4]


def test_photo_files_lists_a_folder_and_refuses_an_empty_one(tmp_path: Path, photos: list[Path]
                                                            ) -> None:
    for source in photos[:2]:
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / "notes.txt").write_text("not a photo")
    assert photo_files(tmp_path) == sorted(tmp_path / p.name for p in photos[:2])
    with pytest.raises(StylelibError, match="No photos"):
        photo_files([tmp_path / "missing.jpg"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StylelibError, match="No photos"):
        photo_files(empty)


def test_photo_crops_depend_only_on_seed_and_index(photos: list[Path]) -> None:
    """A resumed run must see the crops an uninterrupted one would: item k is fixed by (seed, k)."""
    crops = PhotoCrops(photos, 32, seed=0)
    assert crops[5].shape == (3, 32, 32)
    assert torch.equal(crops[5], PhotoCrops(photos, 32, seed=0)[5])
    assert not torch.equal(crops[5], PhotoCrops(photos, 32, seed=1)[5])


def test_photo_crops_scale_sets_the_size_photos_are_cropped_from(tmp_path: Path) -> None:
    """With ``scale`` the photo is first resized to that long side: a left-to-right ramp of
    the whole photo then rises by 1/scale per pixel of the crop, not by 1/(its fitted width)."""
    ramp = np.tile(np.linspace(0, 255, 200, dtype=np.float32), (100, 1))
    path = tmp_path / "ramp.png"
    Image.fromarray(np.repeat(ramp[..., None], 3, axis=2).astype(np.uint8)).save(path)
    for scale, width in ((None, 2 * 24), (120, 120)):
        crop = PhotoCrops([path], 24, seed=0, scale=scale)[0]
        slope = float((crop[0, :, 1:] - crop[0, :, :-1]).mean())
        assert slope == pytest.approx(1 / (width - 1), rel=0.05), scale


def test_photo_crops_recolour_turns_hues_per_crop(photos: list[Path]) -> None:
    """Recoloured crops are the same crops with their hue turned: same brightness per pixel
    (up to clamping), other colours, and still fixed by (seed, k) so resuming sees them again."""
    plain, turned = PhotoCrops(photos, 32, seed=0), PhotoCrops(photos, 32, seed=0, recolour=True)
    assert torch.equal(turned[3], PhotoCrops(photos, 32, seed=0, recolour=True)[3])
    assert not torch.allclose(turned[3], plain[3], atol=0.02)
    assert (turned[3].mean(0) - plain[3].mean(0)).abs().mean() < 0.02


def test_training_photos_hold_out_the_book_photos(mirror: Path) -> None:
    photos = data.training_photos()
    everything = photo_files(mirror / data.TRAINING_DIR)
    book = {Path(name).stem for name in assets.names("content/")}
    assert not {p.stem.split("__")[-1] for p in photos} & book
    assert set(data.HELD_OUT) <= book
    assert 1000 < len(photos) < len(everything)


def test_training_photos_without_a_mirror_say_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STYLELIB_ASSETS_DIR", str(tmp_path))
    with pytest.raises(StylelibError, match=r"set \$STYLELIB_ASSETS_DIR"):
        data.training_photos()


def test_readers_without_the_collection_train_on_the_book_photos(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert len(data.photos_for_training()) == len(data.training_photos())
    partial = tmp_path / "mirror"
    shutil.copytree(mirror / "content", partial / "content")
    monkeypatch.setenv("STYLELIB_ASSETS_DIR", str(partial))
    photos = data.photos_for_training()
    assert sorted(p.name for p in photos) == sorted(Path(n).name for n in assets.names("content/"))
    assert "training on the book's 10 content photos" in capsys.readouterr().out


def test_readers_without_the_collection_train_on_the_book_paintings_minus_held_out(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert len(data.paintings_for_training()) == 32
    partial = tmp_path / "mirror"
    shutil.copytree(mirror / "style", partial / "style")
    monkeypatch.setenv("STYLELIB_ASSETS_DIR", str(partial))
    names = {p.stem for p in data.paintings_for_training()}
    assert names == {Path(n).stem for n in assets.names("style/")} - set(data.HELD_OUT_STYLES)
    assert "training on the book's 13 style images" in capsys.readouterr().out


def test_multi_scale_crops_change_size_batch_by_batch(photos: list[Path]) -> None:
    crops = MultiScaleCrops(photos, 16, seed=3, scales=[24, 64], batch_size=2)
    assert [crops[k][1] for k in range(6)] == [24, 24, 64, 64, 24, 24]
    assert torch.equal(crops[2][0], PhotoCrops(photos, 16, seed=3, scale=64)[2])
    assert torch.equal(crops[5][0], PhotoCrops(photos, 16, seed=3, scale=24)[5])
    with pytest.raises(ValueError, match="scales is empty"):
        MultiScaleCrops(photos, 16, seed=3, scales=[], batch_size=2)
