"""``python -m stylelib bench scale``: what a larger picture costs, in time and peak memory.

Each method paints the same photo at each size in a fresh process (``stylize`` from the shell,
as a reader runs it), so the peak resident memory the kernel reports for that process
(``os.wait4``) is that picture's alone: models, images, tiles and all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from stylelib.errors import StylelibError
from stylelib.images import load_image, resize_to
from stylelib.methods import TILE
from stylelib.metrics import markdown_table, psnr
from stylelib.profiles import PROFILES

SIZES = PROFILES["book"].print_sizes
"""The long sides ``bench scale`` paints by default: the book's prints (chapter 7)."""
METHODS = ("fast", "adain", "magenta")
"""The one-pass methods, which tile: every size is within their reach."""
PHOTO, PAINTING = "tubingen", "starry_night"


@dataclass(frozen=True)
class Cost:
    """One picture's cost: wall seconds and the process's peak resident memory in GB."""

    method: str
    size: int
    seconds: float
    peak_gb: float


def measure(method: str, size: int, extra: Sequence[str] = (), out: Path | None = None) -> Cost:
    """Paint :data:`PHOTO` like :data:`PAINTING` at ``size`` px with ``method`` in a child
    process; its wall time and peak RSS. The picture is kept at ``out`` when given."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "out.png" if out is None else out
        command = [sys.executable, "-m", "stylelib", "stylize", PHOTO, PAINTING, "--method",
                   method, "--size", str(size), "-o", str(target), *extra]
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert child.stderr is not None
        error = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise StylelibError(f"{method} at {size} px failed:\n{error.decode(errors='replace')}")
    # ru_maxrss is in kilobytes on Linux.
    return Cost(method, size, seconds, usage.ru_maxrss / 1024**2)


def table(costs: Sequence[Cost]) -> str:
    """The costs as a Markdown table, a row per method and size."""
    return markdown_table(["method", "size (px)", "time (s)", "peak memory (GB)"],
                          [[c.method, c.size, f"{c.seconds:.1f}", f"{c.peak_gb:.2f}"]
                           for c in costs])


def growth(costs: Sequence[Cost]) -> str:
    """A Markdown table of how each method's largest picture in ``costs`` compares with its
    smallest: times the pixels, times the time, times the peak memory."""
    rows = []
    for method in dict.fromkeys(c.method for c in costs):
        mine = sorted((c for c in costs if c.method == method), key=lambda c: c.size)
        small, large = mine[0], mine[-1]
        rows.append([method, f"{small.size} to {large.size}",
                     f"{(large.size / small.size) ** 2:.0f}x",
                     f"{large.seconds / small.seconds:.1f}x",
                     f"{large.peak_gb / small.peak_gb:.1f}x"])
    return markdown_table(["method", "long side (px)", "pixels", "time", "peak memory"], rows)


def plot(costs: Sequence[Cost], path: Path) -> Path:
    """Time and peak memory against size, a line per method, saved to ``path``. The figure is
    made without pyplot, so a notebook's plotting backend is left as it was."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6))
    timing, memory = figure.subplots(1, 2)
    for method in dict.fromkeys(c.method for c in costs):
        mine = [c for c in costs if c.method == method]
        timing.plot([c.size for c in mine], [c.seconds for c in mine], "o-", label=method)
        memory.plot([c.size for c in mine], [c.peak_gb for c in mine], "o-", label=method)
    for axes, label in ((timing, "time (s)"), (memory, "peak memory (GB)")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(sorted({c.size for c in costs}), [str(s) for s in
                                                         sorted({c.size for c in costs})])
        axes.set_xlabel("long side (px)")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    timing.set_yscale("log")
    timing.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def same_region(pictures: Sequence[Path], centre: tuple[float, float] = (0.66, 0.3),
                share: float = 0.125) -> list[torch.Tensor]:
    """The same square part of each picture (its side ``share`` of the picture's width, around
    ``centre``, as fractions of width and height; by default the church tower and the sky of
    :data:`PHOTO`), each enlarged to the pixels of the largest one's: that one is shown pixel
    for pixel, the others as a print of their size would be."""
    images = [load_image(path) for path in pictures]
    side = max(round(image.shape[-1] * share) for image in images)
    parts = []
    for image in images:
        height, width = image.shape[-2:]
        own = max(1, round(width * share))
        top = min(max(round(height * centre[1] - own / 2), 0), height - own)
        left = min(max(round(width * centre[0] - own / 2), 0), width - own)
        parts.append(resize_to(image[..., top:top + own, left:left + own], (side, side)))
    return parts


def tiled_against_whole(method: str, whole: Path) -> float:
    """How much painting in tiles changes ``method``'s picture: the PSNR (dB) of the
    :data:`~stylelib.methods.TILE` px picture painted by ``stylize`` in tiles half that size
    against ``whole``, the same picture painted whole (painted there first when missing, e.g.
    by :func:`measure` at that size). The tiled picture is kept beside it."""
    if not whole.is_file():
        measure(method, TILE, ["--tile", str(TILE)], out=whole)
    tiled = whole.with_name(f"{whole.stem}-tiled{whole.suffix}")
    measure(method, TILE, ["--tile", str(TILE // 2)], out=tiled)
    return psnr(load_image(tiled), load_image(whole))
