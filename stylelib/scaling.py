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

from stylelib.errors import StylelibError
from stylelib.metrics import markdown_table

SIZES = (512, 1024, 2048, 4096)
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


def measure(method: str, size: int, extra: Sequence[str] = ()) -> Cost:
    """Paint :data:`PHOTO` like :data:`PAINTING` at ``size`` px with ``method`` in a child
    process; its wall time and peak RSS."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "stylelib", "stylize", PHOTO, PAINTING, "--method",
                   method, "--size", str(size), "-o", str(Path(folder) / "out.png"), *extra]
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


def plot(costs: Sequence[Cost], path: Path) -> Path:
    """Time and peak memory against size, a line per method, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (timing, memory) = plt.subplots(1, 2, figsize=(9, 3.6))
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
    plt.close(figure)
    return path
