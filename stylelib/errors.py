"""The exceptions stylelib raises for bad input, so callers and the CLI can catch one family."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable


class StylelibError(Exception):
    """Base class: every message says what was wrong and what to do about it."""


class AssetError(StylelibError):
    """An asset is unknown, unreachable, or its bytes do not match the registry's checksum."""


class ImageError(StylelibError, ValueError):
    """A file or tensor cannot be used as an image."""


class StoppedError(StylelibError):
    """The user stopped a run with Ctrl-C after what could be saved was saved."""


def check_int(
    value: object, name: str, minimum: int = 1, error: type[StylelibError] = StylelibError
) -> int:
    """Return ``value`` if it is an int (not a bool) of at least ``minimum``, else raise ``error``.

    One wording for every count the library takes: steps, sizes, scales, seeds, tiles.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise error(f"{name} must be {expected}, got {value!r}.")
    return value


def check_number(value: float, name: str, minimum: float = 0.0, *, strict: bool = False) -> float:
    """Return ``value`` if it is finite and ``>= minimum`` (``> minimum`` when ``strict``)."""
    if not (math.isfinite(value) and (value > minimum if strict else value >= minimum)):
        bound = f"{'>' if strict else '>='} {minimum:g}"
        raise StylelibError(f"{name} must be a finite number {bound}, got {value!r}.")
    return value


INTERRUPTED = 130
"""The exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it."""


def command(run: Callable[[], object]) -> int:
    """Run a command-line entry point: bad input (a StylelibError or ValueError) ends it with
    one ``error:`` line on stderr and exit status 2 instead of a traceback; Ctrl-C with one
    ``interrupted:`` line and status 130."""
    try:
        run()
    except StoppedError as stop:
        print(f"interrupted: {stop}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted: stopped by Ctrl-C; no output was written.", file=sys.stderr)
        return INTERRUPTED
    except (StylelibError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
