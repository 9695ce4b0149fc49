"""The images networks train on: photo files, random crops, and the course's collection.

:func:`photo_files` and :class:`PhotoCrops` turn a folder or a list of images into an endless,
resumable stream of crops; :func:`training_photos` and :func:`training_paintings` are the shared
training collection (the book's content photos and :data:`HELD_OUT_STYLES` never among them),
and the ``*_for_training`` functions fall back to the book's own images where it is absent.
Every trainer (fast nets, AdaIN decoder, painting prior, GAN) reads its data from here.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from stylelib import assets
from stylelib.colour import rotate_hue
from stylelib.distributed import share, world
from stylelib.errors import ImageError, StylelibError
from stylelib.images import MIN_SIDE, load_image, resize

T = TypeVar("T")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
HELD_OUT = ("tubingen", "golden_gate", "hoovertowernight", "amber", "sailboat")
"""Content photos the networks never saw, used to compare them with Gatys optimisation."""
HELD_OUT_STYLES = ("candy", "mosaic", "brushstrokes", "en_campo_gris", "the_resevoir_at_poitiers")
"""Style images no network of the book was trained on, for the AdaIN comparison."""
TRAINING_DIR = "training/photos"
"""The photo collection's folder inside the asset mirror (``$STYLELIB_ASSETS_DIR``)."""
PAINTINGS_DIR = "training/paintings"
"""The painting collection's folder inside the asset mirror."""


def photo_files(photos: Sequence[str | Path] | str | Path, what: str = "photos") -> list[Path]:
    """The image files of a folder and its subfolders (sorted), or the given list of files,
    checked to be there; files that are not readable images, or have a side under
    :data:`~stylelib.images.MIN_SIDE` pixels, are left out with a count printed, so a large
    scraped folder never stops a run mid-epoch.

    ``what`` names the images in error messages ("photos", "paintings").
    """
    if isinstance(photos, str | Path):
        folder = Path(photos).expanduser()
        if not folder.is_dir():
            raise StylelibError(f"{folder} is not a folder: pass a folder of {what}.")
        files = sorted(p for p in folder.rglob("*")
                       if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    else:
        files = [Path(p).expanduser() for p in photos]
    missing = [str(p) for p in files if not p.is_file()]
    usable = [p for p in files if p.is_file() and _usable(p)] if not missing else []
    if missing or not usable:
        found = ("the folder holds no JPEG, PNG or WebP" if not files else
                 f"none of the {len(files)} files opens as an image at least {MIN_SIDE} px a "
                 "side")
        raise StylelibError(
            f"No {what} to use: {missing[:3] or found}. "
            f"Pass a folder of {what} or a list of existing image files."
        )
    if len(usable) < len(files) and world().main:
        skipped = sorted(set(files) - set(usable))
        print(f"Skipped {len(skipped)} of {len(files)} {what} (not readable as images, or a "
              f"side under {MIN_SIDE} px), e.g. {skipped[0]}; using {len(usable)}.")
    return usable


def _usable(path: Path) -> bool:
    """Whether ``path`` opens as an image with both sides at least ``MIN_SIDE`` pixels (its
    header only: a whole folder is checked in seconds)."""
    try:
        with Image.open(path) as image:
            return min(image.size) >= MIN_SIDE
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


class PhotoCrops(Dataset[torch.Tensor]):
    """An endless stream of random square crops of photos: item ``k`` is the run's k-th crop.

    Which photo and which crop depend only on ``(seed, k)``, so a resumed run sees exactly the
    batches an uninterrupted one would. Each pass over the photos visits all of them once in a
    fresh order; a tuple ``seed`` such as ``(seed, 1)`` gives a second, independent stream from
    the same run seed. Each photo is first resized so its long side is ``scale`` (at least so
    its short side is ``size``), then cropped to ``size``: small crops of photos at the scale the
    network will later stylise give that scale's brush strokes at a fraction of the training
    cost, as long as a crop holds the painting's largest patterns (the bundled nets' style
    error stopped falling on 128 px crops of 256 px photos and fell again on 192 px ones).
    With ``recolour``, each crop's hue is turned by a uniform random angle
    (:func:`~stylelib.colour.rotate_hue`): a few dozen paintings then show many palettes, though
    not the ones paintings have: the turned hues spread evenly around the colour wheel, where
    the collection's paintings are mostly red to yellow.
    """

    def __init__(self, files: Sequence[Path], size: int, seed: int | tuple[int, ...],
                 scale: int | None = None, *, recolour: bool = False) -> None:
        self.files = list(files)
        self.size = size
        self.seed = (seed,) if isinstance(seed, int) else seed
        self.scale = scale
        self.recolour = recolour

    def __getitem__(self, k: int) -> torch.Tensor:
        """Crop number ``k``, a ``[3, size, size]`` tensor in [0, 1]."""
        epoch, position = divmod(k, len(self.files))
        order = np.random.default_rng((*self.seed, 0, epoch)).permutation(len(self.files))
        image = self._load(order, position)
        height, width = image.shape[-2:]
        fitting = math.ceil(self.size * max(height, width) / min(height, width))
        image = resize(image, max(fitting, self.scale or 0))
        height, width = image.shape[-2:]
        rng = np.random.default_rng((*self.seed, 1, k))
        top = int(rng.integers(height - self.size + 1))
        left = int(rng.integers(width - self.size + 1))
        crop = image[0, :, top:top + self.size, left:left + self.size]
        return rotate_hue(crop, float(rng.uniform(0, 360))) if self.recolour else crop

    def _load(self, order: np.ndarray, position: int) -> torch.Tensor:
        """The image at ``position`` of this pass's ``order``, or, if its file cannot be decoded
        (a truncated download that passed :func:`photo_files`' header check), the next one
        that can: a bad file costs a warning, never the run."""
        for step in range(len(order)):
            path = self.files[order[(position + step) % len(order)]]
            try:
                return load_image(path)
            except (ImageError, OSError) as error:
                warnings.warn(f"skipping {path}: {error}", stacklevel=2)
        raise StylelibError(
            f"None of the {len(order)} training images can be decoded (the last tried: "
            f"{path}): check that the folder holds whole JPEG, PNG or WebP files.")


def default_workers(device: torch.device, asked: int | None = None) -> int:
    """How many processes decode training images: ``asked`` when the caller says, else none on
    the CPU, where each would take a core from the training itself, and four beside a GPU,
    which would otherwise wait for JPEG decoding."""
    if asked is not None:
        return asked
    return 4 if device.type == "cuda" else 0


def batches_from(crops: Dataset[T], batch_size: int, done: int, steps: int, workers: int = 0
                 ) -> DataLoader[T]:
    """The batches a run of ``steps`` steps draws from step ``done`` on: item ``k`` of
    ``crops`` is always in the run's ``k // batch_size``-th batch, so a resumed run sees exactly
    what an uninterrupted one would, on any number of ``torchrun`` ranks: each rank loads its
    share of each global batch (a :class:`DistributedSampler` over the items), decoded in
    ``workers`` background processes (0: in this one)."""
    items = Subset(crops, range(done * batch_size, steps * batch_size))
    ranks = world()
    dealt: DistributedSampler[T] = DistributedSampler(items, num_replicas=ranks.size,
                                                      rank=ranks.rank, shuffle=False)
    return DataLoader(items, batch_size=share(batch_size), sampler=dealt, num_workers=workers)


class MultiScaleCrops(Dataset[tuple[torch.Tensor, int]]):
    """Crops of photos resized to one of several long sides, the side changing batch by batch.

    Item ``k`` is crop ``k`` of a :class:`PhotoCrops` stream at long side
    ``scales[(k // batch_size) % len(scales)]``, returned with that side, so every batch is at
    one scale and a network trained on them sees the painting's strokes at each size a reader
    will stylise (the style target of the batch follows the side). Like :class:`PhotoCrops`, an
    item depends only on ``(seed, k)``.
    """

    def __init__(self, files: Sequence[Path], size: int, seed: int | tuple[int, ...],
                 scales: Sequence[int], batch_size: int) -> None:
        if not scales:
            raise ValueError("scales is empty: give at least one long side.")
        self.streams = [(side, PhotoCrops(files, size, seed, side)) for side in scales]
        self.batch_size = batch_size

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        """Crop number ``k`` and the long side its photo was resized to."""
        side, stream = self.streams[(k // self.batch_size) % len(self.streams)]
        return stream[k], side


# ------------------------------------------------------------ the course's collection


def _collection(folder_name: str, what: str) -> list[Path]:
    """The images of one folder of the training collection in the asset mirror."""
    root = Path(os.environ.get(assets.MIRROR_ENV) or "").expanduser()
    folder = root / folder_name
    if not folder.is_dir():
        raise StylelibError(
            f"The training {what} are not at {folder}: set ${assets.MIRROR_ENV} to a copy of "
            f"the book's asset folder, or pass your own {what} to the training function."
        )
    return photo_files(folder, what)


def training_photos() -> list[Path]:
    """The training collection's photos, minus the book's content photos (held out)."""
    held_out = {Path(name).stem for name in assets.names("content/")}
    return [path for path in _collection(TRAINING_DIR, "photos")
            if path.stem.split("__")[-1] not in held_out]


def training_paintings() -> list[Path]:
    """The training collection's 32 paintings (none of :data:`HELD_OUT_STYLES` among them)."""
    return _collection(PAINTINGS_DIR, "paintings")


def _or_book_images(collection: Callable[[], list[Path]], folder: str, what: str,
                    advice: str, skip: Sequence[str] = ()) -> list[Path]:
    """A training collection when the mirror holds it, else the book's own images of ``folder``
    (downloaded through the registry, minus ``skip``), with a note saying so."""
    try:
        return collection()
    except StylelibError:
        names = [n for n in assets.names(folder) if Path(n).stem not in skip]
        print("The course's training collection is not available here (it is not online): "
              f"training on the book's {len(names)} {what} instead. {advice}")
        return [assets.fetch(name) for name in names]


def photos_for_training() -> list[Path]:
    """The training collection when a mirror holds it, else the book's ten content photos
    (downloaded through the registry): enough for a reader's first network, if a rough one."""
    return _or_book_images(training_photos, "content/", "content photos",
                           "For a better network pass a folder of a few thousand photos, e.g. "
                           "MS-COCO.")


def paintings_for_training() -> list[Path]:
    """The collection's paintings when a mirror holds them, else the book's style images
    without :data:`HELD_OUT_STYLES`, so those stay unseen either way."""
    return _or_book_images(training_paintings, "style/", "style images",
                           "For a model that generalises, pass thousands, e.g. WikiArt.",
                           HELD_OUT_STYLES)
