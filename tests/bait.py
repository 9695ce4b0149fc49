"""A pickle that proves whether it was run, for the tests that check weight and optimiser files
are never unpickled."""

from __future__ import annotations

from pathlib import Path


class Bait:
    """Unpickles by calling ``Path.touch(marker)``: proof that a pickle was (or was not) run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))
