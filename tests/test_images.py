"""Tests for stylelib.images: loading any file or asset to [1, 3, H, W], checks, saving, grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from stylelib import images
from stylelib.errors import AssetError, ImageError
from stylelib.images import (
    check_image,
    check_size,
    image_grid,
    load_image,
    save_image,
    shuffle_tiles,
    to_pil,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)
ORIENTATION = 0x0112  # the EXIF orientation tag


def halves(mode: str, left: object, right: object, size: tuple[int, int] = (32, 32)) -> Image.Image:
    """An image whose left half is ``left`` and right half ``right`` (in ``mode``'s values)."""
    image = Image.new(mode, size, right)  # type: ignore[arg-type]
    image.paste(left, (0, 0, size[0] // 2, size[1]))  # type: ignore[arg-type]
    return image


def left_right(tensor: torch.Tensor) -> tuple[list[float], list[float]]:
    """The RGB values in the middle of the left and of the right half."""
    _, _, height, width = tensor.shape
    left = tensor[0, :, height // 2, width // 4].tolist()
    right = tensor[0, :, height // 2, 3 * width // 4].tolist()
    return left, right


def noise_image(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(array)


# --------------------------------------------------------------------------- loading


def test_load_asset_by_name_keeps_aspect(mirror: Path) -> None:
    width, height = Image.open(mirror / "content" / "tubingen.jpg").size  # 4:3 landscape
    image = load_image("tubingen", size=64)
    assert image.dtype == torch.float32
    assert image.shape == (1, 3, round(height * 64 / width), 64)
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert image.std() > 0.05, "a photo, not a flat image"


def test_load_by_path_equals_load_by_name(mirror: Path) -> None:
    by_name = load_image("style/starry_night.jpg", size=48)
    by_path = load_image(mirror / "style" / "starry_night.jpg", size=48)
    by_str = load_image(str(mirror / "style" / "starry_night.jpg"), size=48)
    assert torch.equal(by_name, by_path) and torch.equal(by_path, by_str)


def test_size_none_keeps_original_pixels(tmp_path: Path) -> None:
    picture = noise_image(40, 24)
    picture.save(tmp_path / "noise.png")
    image = load_image(tmp_path / "noise.png")
    assert image.shape == (1, 3, 24, 40)
    expected = torch.from_numpy(np.array(picture)).permute(2, 0, 1).float() / 255
    assert torch.allclose(image[0], expected)


def test_portrait_image_long_side_is_the_height(tmp_path: Path) -> None:
    noise_image(30, 60).save(tmp_path / "tall.png")
    assert load_image(tmp_path / "tall.png", size=32).shape == (1, 3, 32, 16)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """Orientation 6 means 'rotate 90° clockwise to display': the stored left edge is the top."""
    stored = halves("RGB", RED, BLUE, size=(64, 32))  # 64 wide, 32 high, red on the left
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    stored.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = load_image(tmp_path / "rotated.jpg")
    assert image.shape == (1, 3, 64, 32)  # displayed portrait
    top = image[0, :, 16, 16]
    bottom = image[0, :, 48, 16]
    assert top[0] > 0.9 and top[2] < 0.1, f"top should be red, got {top.tolist()}"
    assert bottom[2] > 0.9 and bottom[0] < 0.1, f"bottom should be blue, got {bottom.tolist()}"


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    picture = halves("RGBA", (255, 0, 0, 255), (0, 0, 0, 0))
    picture.putpixel((0, 0), (0, 0, 255, 128))  # half-transparent blue over white
    picture.save(tmp_path / "alpha.png")
    image = load_image(tmp_path / "alpha.png")
    left, right = left_right(image)
    assert left == pytest.approx([1.0, 0.0, 0.0])
    assert right == pytest.approx([1.0, 1.0, 1.0]), "a fully transparent pixel must be white"
    # 128/255 blue over white: R = G = 1 - 128/255, B = 1.
    assert image[0, :, 0, 0].tolist() == pytest.approx([127 / 255, 127 / 255, 1.0], abs=1.5 / 255)


def test_palette_image_with_transparent_index(tmp_path: Path) -> None:
    picture = halves("P", 0, 1)
    picture.putpalette([*RED, *BLUE] + [0] * (3 * 254))
    picture.save(tmp_path / "opaque.png")
    picture.save(tmp_path / "transparent.png", transparency=1)

    left, right = left_right(load_image(tmp_path / "opaque.png"))
    assert left == pytest.approx([1.0, 0.0, 0.0]) and right == pytest.approx([0.0, 0.0, 1.0])
    left, right = left_right(load_image(tmp_path / "transparent.png"))
    assert left == pytest.approx([1.0, 0.0, 0.0]) and right == pytest.approx([1.0, 1.0, 1.0])


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    halves("L", 51, 204).save(tmp_path / "gray.png")
    left, right = left_right(load_image(tmp_path / "gray.png"))
    assert left == pytest.approx([0.2] * 3) and right == pytest.approx([0.8] * 3)


def test_grayscale_with_alpha(tmp_path: Path) -> None:
    picture = halves("LA", (0, 255), (0, 0))
    picture.putpixel((0, 0), (0, 128))
    picture.save(tmp_path / "la.png")
    image = load_image(tmp_path / "la.png")
    left, right = left_right(image)
    assert left == pytest.approx([0.0] * 3) and right == pytest.approx([1.0] * 3)
    assert image[0, :, 0, 0].tolist() == pytest.approx([127 / 255] * 3, abs=1.5 / 255)


def test_cmyk_is_converted(tmp_path: Path) -> None:
    # CMYK (0, 255, 255, 0): no cyan, full magenta and yellow, no black = red.
    halves("CMYK", (0, 255, 255, 0), (255, 255, 0, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    left, right = left_right(load_image(tmp_path / "cmyk.jpg"))
    assert left == pytest.approx([1.0, 0.0, 0.0], abs=0.05)
    assert right == pytest.approx([0.0, 0.0, 1.0], abs=0.05)


def test_16_bit_grayscale_uses_the_full_range(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 32).round().astype(np.uint16)
    array = np.tile(ramp, (20, 1))
    Image.fromarray(array).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    image = load_image(tmp_path / "deep.png")
    assert image.shape == (1, 3, 20, 32)
    assert torch.equal(image[0, 0], image[0, 1]) and torch.equal(image[0, 1], image[0, 2])
    expected = torch.from_numpy(array.astype(np.float32) / 65535)
    assert torch.allclose(image[0, 0], expected, atol=1e-6)
    assert image[0, 0, 0, -1] == pytest.approx(1.0) and image[0, 0, 0, 0] == 0.0


def test_pil_image_and_tensor_sources(tmp_path: Path) -> None:
    picture = noise_image(48, 32)
    from_pil = load_image(picture)
    assert from_pil.shape == (1, 3, 32, 48)
    chw = from_pil[0].clone()
    assert torch.equal(load_image(chw), from_pil)  # [3, H, W] gains the batch dimension
    assert load_image(from_pil, size=24).shape == (1, 3, 16, 24)
    bright = load_image(from_pil * 2 - 0.5)
    assert bright.min() == 0.0 and bright.max() == 1.0  # clamped to [0, 1]


def test_uint8_tensor_is_not_silently_saturated() -> None:
    """torchvision.io.read_image gives uint8 [3, H, W] in 0..255: scale it or refuse it.

    Clamping 0..255 to [0, 1] turns every non-black pixel white without a word.
    """
    array = torch.arange(3 * 16 * 16, dtype=torch.int64).remainder(256).to(torch.uint8)
    pixels = array.reshape(3, 16, 16)
    try:
        image = load_image(pixels)
    except ImageError as error:
        assert "uint8" in str(error) or "dtype" in str(error)
    else:
        saturated = float((image == 1.0).float().mean())
        assert torch.allclose(image[0], pixels.float() / 255), (
            f"uint8 pixels were clamped instead of scaled: {saturated:.0%} of the values are 1.0"
        )


def test_device_argument_places_the_tensor() -> None:
    image = load_image(torch.rand(1, 3, 16, 16), device="cpu")
    assert image.device == torch.device("cpu")


# --------------------------------------------------------------------------- bad files


def test_missing_file_is_not_an_asset_either(mirror: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"No image file at .*missing\.png.*not an asset name"):
        load_image(tmp_path / "missing.png")


def test_known_asset_offline_without_mirror_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: None
) -> None:
    monkeypatch.delenv("STYLELIB_ASSETS_DIR", raising=False)
    monkeypatch.setenv("STYLELIB_CACHE_DIR", str(tmp_path))
    with pytest.raises(AssetError, match="STYLELIB_ASSETS_DIR"):
        load_image("udnie", size=32)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a directory, not an image file"):
        load_image(tmp_path)


def test_non_image_bytes(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_bytes(b"these are not the pixels you are looking for\n" * 10)
    with pytest.raises(ImageError, match="not an image PIL can read"):
        load_image(path)


def test_truncated_jpeg(tmp_path: Path) -> None:
    whole = tmp_path / "whole.jpg"
    noise_image(64, 64).save(whole, quality=95)
    data = whole.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    assert load_image(whole).shape == (1, 3, 64, 64)
    with pytest.raises(ImageError, match=r"could not be decoded .*truncated or corrupt"):
        load_image(cut)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (15, 64), (64, 8)])
def test_too_small_images(tmp_path: Path, width: int, height: int) -> None:
    Image.new("RGB", (width, height), RED).save(tmp_path / "small.png")
    with pytest.raises(ImageError, match=rf"{width}x{height} px; each side must be at least 16"):
        load_image(tmp_path / "small.png")


def test_image_above_the_pixel_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (40, 30), RED).save(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png").shape == (1, 3, 30, 40)
    monkeypatch.setattr(images, "MAX_PIXELS", 1_000)
    with pytest.raises(ImageError, match=r"40x30 = 1,200 pixels, above the cap of 1,000"):
        load_image(tmp_path / "big.png")


@pytest.mark.parametrize("size", [0, -64, 15, True, 64.0, "64"])
def test_bad_size(size: object) -> None:
    with pytest.raises(ImageError, match=r"size \(pixels\) must be an integer >= 16, got"):
        load_image(torch.rand(1, 3, 32, 32), size=size)  # type: ignore[arg-type]


def test_size_above_the_cap() -> None:
    limit = math.isqrt(images.MAX_PIXELS)  # the largest square within the cap
    check_size(limit)
    with pytest.raises(ImageError, match=rf"size={limit + 1} would exceed .* use size <= {limit}"):
        check_size(limit + 1)
    with pytest.raises(ImageError, match="would exceed the cap"):
        load_image(torch.rand(1, 3, 32, 32), size=100_000)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_tensor(bad: float) -> None:
    tensor = torch.rand(1, 3, 32, 32)
    tensor[0, 1, 5, 7] = bad
    with pytest.raises(ImageError, match="NaN or infinite"):
        load_image(tensor)


@pytest.mark.parametrize(
    "shape", [(1, 1, 32, 32), (2, 3, 32, 32), (32, 32), (1, 3, 32, 32, 1), (1, 4, 32, 32)]
)
def test_wrong_tensor_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageError, match=r"must have shape \[1, 3, H, W\]"):
        check_image(torch.rand(shape))


def test_tensor_too_small_and_not_a_tensor() -> None:
    with pytest.raises(ImageError, match="32x8 px; each side must be at least 16"):
        check_image(torch.rand(1, 3, 8, 32))
    with pytest.raises(ImageError, match=r"must be a torch\.Tensor, got ndarray"):
        check_image(np.zeros((1, 3, 32, 32)))  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="Cannot load an image from a int"):
        load_image(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- back to PIL, saving


def test_to_pil_values_and_size() -> None:
    tensor = torch.zeros(1, 3, 20, 30)
    tensor[0, :, 2, 3] = torch.tensor([1.0, 0.5, 0.2])
    tensor[0, :, 4, 5] = torch.tensor([1.7, -0.3, 0.0])  # out of range: clamped
    picture = to_pil(tensor)
    assert picture.mode == "RGB" and picture.size == (30, 20)
    assert picture.getpixel((3, 2)) == (255, 128, 51)
    assert picture.getpixel((5, 4)) == (255, 0, 0)
    assert to_pil(tensor[0]).size == (30, 20)


def test_to_pil_round_trip(mirror: Path) -> None:
    image = load_image("starry_night", size=40)
    again = load_image(to_pil(image))
    assert again.shape == image.shape
    assert (again - image).abs().max() <= 0.5 / 255 + 1e-6  # only the rounding to 8 bits


def test_save_png_loads_back(tmp_path: Path) -> None:
    image = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    path = save_image(image, tmp_path / "out.png")
    assert path == tmp_path / "out.png"
    assert Image.open(path).format == "PNG"
    assert (load_image(path) - image).abs().max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize(
    ("name", "fmt"), [("a.jpg", "JPEG"), ("b.JPEG", "JPEG"), ("c.webp", "WEBP")]
)
def test_save_other_formats(tmp_path: Path, name: str, fmt: str) -> None:
    path = save_image(torch.full((1, 3, 16, 16), 0.5), str(tmp_path / name))
    assert Image.open(path).format == fmt


@pytest.mark.parametrize(("name", "shown"), [("out.gif", "'.gif'"), ("out", "'no extension'")])
def test_save_unknown_extension(tmp_path: Path, name: str, shown: str) -> None:
    with pytest.raises(ImageError, match=f"Cannot save as {shown}: use .png, .jpg or .webp"):
        save_image(torch.rand(1, 3, 16, 16), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_save_into_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"Folder .*nowhere does not exist"):
        save_image(torch.rand(1, 3, 16, 16), tmp_path / "nowhere" / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_save_below_a_regular_file(tmp_path: Path) -> None:
    """Root ignores permissions, so an unwritable path is one whose parent is a file."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    with pytest.raises(ImageError, match=r"notes\.txt"):
        save_image(torch.rand(1, 3, 16, 16), blocker / "out.png")
    assert blocker.read_text() == "keep me"
    assert list(tmp_path.iterdir()) == [blocker]


def test_save_onto_a_directory(tmp_path: Path) -> None:
    """The target exists but is a folder: writing fails with an OSError that must be reported."""
    folder = tmp_path / "out.png"
    folder.mkdir()
    with pytest.raises(ImageError, match=r"out\.png is a directory"):
        save_image(torch.rand(1, 3, 16, 16), folder)
    assert folder.is_dir()
    assert list(tmp_path.iterdir()) == [folder]


def test_save_invalid_tensor_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="NaN"):
        save_image(torch.full((1, 3, 16, 16), float("nan")), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- grids


def test_image_grid_layout_and_titles() -> None:
    pictures: list[torch.Tensor | Image.Image] = [torch.rand(1, 3, 16, 24) for _ in range(4)]
    pictures.append(noise_image(24, 16))
    titles = ["a", "b", "c", "d", "e"]
    figure = image_grid(pictures, titles, ncols=3, caption="credit line")
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 6  # 2 rows x 3 columns
    shown = [axis for axis in figure.axes if axis.images]
    assert len(shown) == 5
    assert [axis.get_title() for axis in shown] == titles
    assert figure.axes[5].get_title() == "" and not figure.axes[5].images
    assert any(text.get_text() == "credit line" for text in figure.texts)


def test_image_grid_default_is_one_row() -> None:
    figure = image_grid([torch.rand(1, 3, 16, 16)] * 3)
    assert len(figure.axes) == 3
    assert all(len(axis.images) == 1 and axis.get_title() == "" for axis in figure.axes)
    width, height = figure.get_size_inches()
    assert width > 2 * height


def test_image_grid_title_count_mismatch() -> None:
    with pytest.raises(ValueError, match="Got 3 images but 2 titles"):
        image_grid([torch.rand(1, 3, 16, 16)] * 3, ["one", "two"])


def test_image_grid_without_images() -> None:
    with pytest.raises(ValueError, match="image"):
        image_grid([])


def test_shuffle_tiles_keeps_every_tile_and_moves_them() -> None:
    image = torch.rand(1, 3, 35, 50)
    shuffled = shuffle_tiles(image, 2, torch.Generator().manual_seed(0))
    assert shuffled.shape == (1, 3, 34, 50)  # cropped to a multiple of the 17 x 25 tile
    spots = [(i * 17, j * 25) for i in range(2) for j in range(2)]
    before = [image[..., y : y + 17, x : x + 25] for y, x in spots]
    after = [shuffled[..., y : y + 17, x : x + 25] for y, x in spots]
    for tile in after:
        assert any(torch.equal(tile, original) for original in before)
    assert not torch.equal(shuffled, image[..., :34, :])


@pytest.mark.parametrize(("tiles", "message"), [
    (0, "tiles_per_side must be a positive integer, got 0"),
    (True, "tiles_per_side must be a positive integer, got True"),
    (40, r"cannot hold 40² tiles"),
])
def test_shuffle_tiles_bad_count(tiles: object, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        shuffle_tiles(torch.rand(1, 3, 20, 20), tiles)  # type: ignore[arg-type]


def test_a_32_bit_float_tiff_in_0_1_keeps_its_brightness(tmp_path: Path) -> None:
    """Mode F files (float TIFFs) hold [0, 1] values; reading them as 0-255 gave black."""
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (48, 1))
    path = tmp_path / "ramp.tif"
    Image.fromarray(ramp, mode="F").save(path)
    image = load_image(path)
    assert image.shape == (1, 3, 48, 64)
    assert float(image.max()) == pytest.approx(1.0) and float(image.mean()) == pytest.approx(0.5)


@pytest.mark.parametrize(("width", "height", "size"), [(2000, 20, 512), (30, 3000, 256)])
def test_an_extreme_aspect_ratio_is_refused_not_stretched(
    tmp_path: Path, width: int, height: int, size: int
) -> None:
    path = tmp_path / "strip.png"
    Image.new("RGB", (width, height), (200, 100, 50)).save(path)
    with pytest.raises(ImageError, match=r"would be \d+ px on its short side, below 16 px "
                                         r"\(stretching it would distort it\): crop it, or ask "
                                         r"for a long side of at least \d+ px") as refused:
        load_image(path, size)
    needed = int(str(refused.value).split()[-2])
    assert min(load_image(path, needed).shape[-2:]) >= 16
