"""Images in and out: any file or asset name to a ``[1, 3, H, W]`` tensor in [0, 1], and back.

Loading fixes EXIF orientation, converts every PIL mode to RGB (transparency onto white,
16-bit scaled, CMYK converted), resizes by the long side and refuses images that are too
large to decode safely or too small for the backbone.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image, ImageOps, UnidentifiedImageError

from stylelib import assets
from stylelib.errors import AssetError, ImageError, check_int
from stylelib.files import write_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_PIXELS = 50_000_000
"""Hard cap on decoded or requested pixels (about 8660 x 5770): beyond it we refuse, not swap."""
MIN_SIDE = 16
"""Smallest side the VGG backbones can use: relu5_1 sits behind four 2x poolings."""

ImageSource = str | Path | Image.Image | torch.Tensor


def _open(source: str | Path) -> Image.Image:
    """Open a path, or fetch a registry asset when no such file exists."""
    path = Path(source).expanduser()
    if path.is_dir():
        raise ImageError(f"{path} is a directory, not an image file: pass the path of one image.")
    if not path.exists():
        try:
            path = assets.fetch(str(source))
        except AssetError as error:
            if "Unknown asset" not in str(error):
                raise
            raise ImageError(
                f"No image file at {source!r}, and it is not an asset name either."
                f"{assets.did_you_mean(str(source))} Check the path, or list asset names with "
                "stylelib.assets.names()."
            ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{path} is {width}x{height} = {width * height:,} pixels, above the cap of "
                    f"{MAX_PIXELS:,}: shrink it first (e.g. with an image editor)."
                )
            image.load()
        except UnidentifiedImageError:
            raise ImageError(
                f"{path} is not an image PIL can read: use a JPEG, PNG or WebP file."
            ) from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise ImageError(f"{path} is too large to decode safely: shrink it first.") from None
        except OSError as error:
            raise ImageError(
                f"{path} could not be decoded ({error}); the file is probably truncated or "
                "corrupt: download or export it again."
            ) from None
    return image


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any PIL mode to float32 RGB in [0, 1]; transparency is composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise ImageError("The image holds NaN or infinite pixel values: export it again.")
        if image.mode == "F" and values.max() <= 1.0:
            top = 1.0  # floating-point images (32-bit TIFF) are usually already in [0, 1]
        else:
            top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(values / top, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def check_size(size: int | None, name: str = "size") -> None:
    """Reject a requested long side that is not a positive integer within the pixel cap."""
    if size is None:
        return
    check_int(size, f"{name} (pixels)", MIN_SIDE, ImageError)
    if size * size > MAX_PIXELS:
        raise ImageError(
            f"{name}={size} would exceed the cap of {MAX_PIXELS:,} pixels: use {name} <= "
            f"{math.isqrt(MAX_PIXELS)}."
        )


def check_image(tensor: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Validate an image tensor: shape ``[1, 3, H, W]`` (or ``[3, H, W]``), finite values."""
    if not isinstance(tensor, torch.Tensor):
        raise ImageError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 4 or tensor.shape[0] != 1 or tensor.shape[1] != 3:
        raise ImageError(
            f"{name} must have shape [1, 3, H, W] (one RGB image), got {list(tensor.shape)}: "
            "load images with stylelib.load_image."
        )
    if min(tensor.shape[-2:]) < MIN_SIDE:
        raise ImageError(
            f"{name} is {tensor.shape[-1]}x{tensor.shape[-2]} px; each side must be at least "
            f"{MIN_SIDE} px."
        )
    if not torch.isfinite(tensor).all():
        raise ImageError(f"{name} contains NaN or infinite values: check what produced it.")
    return tensor


def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the long side is ``size`` pixels, keeping the aspect ratio (antialiased); a
    short side is never made smaller than the backbone's minimum (:func:`load_image` refuses
    images that would need more than that)."""
    check_size(size)
    height, width = image.shape[-2:]
    scale = size / max(height, width)
    new = (max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale)))
    if new == (height, width):
        return image
    return F.interpolate(image, size=new, mode="bilinear", antialias=True, align_corners=False)


def resize_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize to exactly ``size`` (height, width), antialiased: e.g. a start image to the
    photo's shape, whatever its own."""
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflection-pad the bottom and right so both sides are multiples of ``multiple``.

    Networks that halve the size k times need sides divisible by 2**k to give back the
    input's size; the caller crops the result to the original size.
    """
    height, width = image.shape[-2:]
    return F.pad(image, (0, -width % multiple, 0, -height % multiple), mode="reflect")


def _check_aspect(height: int, width: int, size: int) -> None:
    """Refuse an image so narrow that at long side ``size`` its short side falls below the
    backbone's minimum: resizing would have to stretch it."""
    scale = size / max(height, width)
    if round(min(height, width) * scale) < MIN_SIDE:
        needed = math.ceil(MIN_SIDE * max(height, width) / min(height, width))
        raise ImageError(
            f"A {width}x{height} px image resized to a long side of {size} px would be "
            f"{round(min(height, width) * scale)} px on its short side, below {MIN_SIDE} px "
            f"(stretching it would distort it): crop it, or ask for a long side of at least "
            f"{needed} px."
        )


def load_image(
    source: ImageSource, size: int | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Load a path, asset name, PIL image or tensor as a ``[1, 3, H, W]`` float tensor in [0, 1].

    ``size`` is the long side in pixels (aspect ratio kept); ``None`` keeps the original size.
    """
    check_size(size)
    if isinstance(source, torch.Tensor):
        if source.dtype == torch.uint8:
            source = source.float() / 255
        elif not source.is_floating_point():
            raise ImageError(
                f"Cannot load an image from a {source.dtype} tensor: pass floats in [0, 1] "
                "or uint8 in [0, 255]."
            )
        tensor = check_image(source.float(), "source").clamp(0, 1)
    else:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, str | Path):
            image = _open(source)
        else:
            raise ImageError(
                f"Cannot load an image from a {type(source).__name__}: pass a path, an asset "
                "name, a PIL image or a tensor."
            )
        image = ImageOps.exif_transpose(image)
        if min(image.size) < MIN_SIDE:
            raise ImageError(
                f"The image is {image.width}x{image.height} px; each side must be at least "
                f"{MIN_SIDE} px for the backbone: use a larger image."
            )
        array = _to_rgb_array(image)
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0)
    if size is not None:
        _check_aspect(tensor.shape[-2], tensor.shape[-1], size)
        tensor = resize(tensor, size).clamp(0, 1)
    if min(tensor.shape[-2:]) < MIN_SIDE:
        raise ImageError(
            f"The image is {tensor.shape[-1]}x{tensor.shape[-2]} px; each side must be at least "
            f"{MIN_SIDE} px for the backbone: use a larger image."
        )
    return tensor.to(device) if device is not None else tensor


def shuffle_tiles(
    image: torch.Tensor, tiles_per_side: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cut an image into a grid of equal tiles and reassemble them in random order.

    The image is first cropped to a multiple of the tile size. Local texture survives inside
    each tile while the large-scale layout is destroyed: a test of what a statistic ignores.
    """
    image = check_image(image)
    check_int(tiles_per_side, "tiles_per_side", error=ImageError)
    tile_h, tile_w = image.shape[-2] // tiles_per_side, image.shape[-1] // tiles_per_side
    if min(tile_h, tile_w) < 1:
        raise ImageError(f"A {list(image.shape[-2:])} image cannot hold {tiles_per_side}² tiles.")
    n = tiles_per_side
    grid = image[..., : tile_h * n, : tile_w * n].reshape(3, n, tile_h, n, tile_w)
    tiles = grid.permute(1, 3, 0, 2, 4).reshape(n * n, 3, tile_h, tile_w)
    order = torch.randperm(n * n, generator=generator).to(image.device)
    shuffled = tiles[order].reshape(n, n, 3, tile_h, tile_w).permute(2, 0, 3, 1, 4)
    return shuffled.reshape(1, 3, tile_h * n, tile_w * n)


def to_array(tensor: torch.Tensor, name: str = "image") -> np.ndarray:
    """A ``[1, 3, H, W]`` or ``[3, H, W]`` tensor in [0, 1] as the ``H x W x 3`` 8-bit array
    an image file, a video frame or OpenCV holds (rounded, not truncated)."""
    tensor = check_image(tensor.detach(), name)
    array = tensor[0].clamp(0, 1).permute(1, 2, 0).mul(255).round().byte().cpu().numpy()
    return np.ascontiguousarray(array)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """Convert a ``[1, 3, H, W]`` or ``[3, H, W]`` tensor in [0, 1] to an RGB PIL image."""
    return Image.fromarray(to_array(tensor), mode="RGB")


SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def check_output(path: str | Path) -> Path:
    """Check that an image can be saved at ``path`` (format, folder, permissions) before any
    work is done for it, so a long computation never ends in an unwritable path."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ImageError(f"{target} is a directory: pass a file name such as {target / 'out.png'}.")
    suffix = target.suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise ImageError(f"Cannot save as {suffix or 'no extension'!r}: use .png, .jpg or .webp.")
    if not target.parent.is_dir():
        raise ImageError(f"Folder {target.parent} does not exist: create it or pick another path.")
    writable = os.access(target, os.W_OK) if target.exists() else os.access(target.parent, os.W_OK)
    if not writable:
        raise ImageError(f"Cannot write {target}: permission denied. Choose a writable path.")
    return target


def save_image(tensor: torch.Tensor, path: str | Path) -> Path:
    """Write an image atomically: encode it, then write it through a unique temporary file
    renamed into place, so a failure leaves neither a partial file nor a damaged earlier one."""
    target = check_output(path)
    buffer = io.BytesIO()
    to_pil(tensor).save(buffer, format=SAVE_FORMATS[target.suffix.lower()])
    try:
        write_atomically(target, lambda temporary: temporary.write_bytes(buffer.getvalue()))
    except OSError as error:
        message = f"Cannot write {target}: {error.strerror}. Choose a writable path."
        raise ImageError(message) from None
    return target


def image_grid(
    images: Sequence[torch.Tensor | Image.Image],
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    width: float = 3.2,
    caption: str | None = None,
) -> Figure:
    """Lay images out side by side (a grid when ``ncols`` is given) with titles and a caption."""
    import matplotlib.pyplot as plt

    if titles is not None and len(titles) != len(images):
        raise ValueError(f"Got {len(images)} images but {len(titles)} titles: pass one per image.")
    count = len(images)
    if count == 0:
        raise ValueError("image_grid needs at least one image.")
    cols = min(ncols or count, count)
    rows = math.ceil(count / cols)
    pictures = [im if isinstance(im, Image.Image) else to_pil(im) for im in images]
    aspect = max(p.height / p.width for p in pictures)
    figure, axes = plt.subplots(
        rows, cols, figsize=(width * cols, width * aspect * rows + 0.4), squeeze=False
    )
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < count:
            axis.imshow(pictures[index])
            if titles is not None:
                axis.set_title(titles[index], fontsize=10)
    if caption:
        figure.text(0.5, 0.0, caption, ha="center", va="top", fontsize=8, wrap=True)
    figure.tight_layout()
    plt.close(figure)
    return figure


def show(
    images: Sequence[torch.Tensor | Image.Image],
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    width: float = 3.2,
    caption: str | None = None,
) -> None:
    """Display :func:`image_grid` once in a notebook (a plain script gets nothing shown)."""
    from IPython.display import display

    display(image_grid(images, titles, ncols=ncols, width=width, caption=caption))  # type: ignore[no-untyped-call]
