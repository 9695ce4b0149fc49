"""A pickle that proves whether it was run, for the tests that check weight and optimiser files
are never unpickled."""

from __future__ import annotations

import pickle
from pathlib import Path


class Bait:
    """Unpickles by calling ``Path.touch(marker)``: proof that a pickle was (or was not) run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def armed_bait(folder: Path) -> tuple[Bait, Path]:
    """A bait and the file it would create, after checking on a control that unpickling one
    does run it (else a test that it never ran would prove nothing)."""
    control = folder / "control-ran"
    pickle.loads(pickle.dumps(Bait(control)))
    assert control.exists(), "the bait must work, or this test proves nothing"
    marker = folder / "payload-ran"
    return Bait(marker), marker
