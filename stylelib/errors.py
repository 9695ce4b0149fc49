"""The exceptions stylelib raises for bad input, so callers and the CLI can catch one family."""

from __future__ import annotations

import math
import signal
import sys
import threading
from collections.abc import Callable, Sequence


class StylelibError(Exception):
    """Base class: every message says what was wrong and what to do about it."""


class AssetError(StylelibError):
    """An asset is unknown, unreachable, or its bytes do not match the registry's checksum."""


class ImageError(StylelibError, ValueError):
    """A file or tensor cannot be used as an image."""


class StoppedError(StylelibError):
    """A run was stopped by Ctrl-C (SIGINT) or SIGTERM after what could be saved was saved."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.status = 128 + signum


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


def check_blend(weights: Sequence[float] | None, count: int) -> list[float]:
    """The weights of a blend of ``count`` styles scaled to sum to 1 (equal when ``None``),
    after refusing a wrong count, a negative or non-finite weight, or all zeros."""
    if weights is None:
        return [1 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise StylelibError(f"Got {len(values)} blend weights for {count} styles: pass one "
                            "weight per style.")
    if not all(math.isfinite(w) and w >= 0 for w in values) or sum(values) <= 0:
        raise StylelibError(f"Blend weights must be numbers >= 0, not all 0, got {values}: "
                            "e.g. 0.7 and 0.3.")
    return [w / sum(values) for w in values]


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM as an exception, so a stopped command cleans up like one stopped by Ctrl-C."""
    raise KeyboardInterrupt(signum)


def command(run: Callable[[], object]) -> int:
    """Run a command-line entry point: bad input (a StylelibError or ValueError) ends it with
    one ``error:`` line on stderr and exit status 2 instead of a traceback; Ctrl-C or SIGTERM
    with one ``interrupted:`` line and status 130 or 143 (128 + the signal), as shells do."""
    catch = (threading.current_thread() is threading.main_thread()
             and signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN)
    if catch:
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        run()
    except StoppedError as stop:
        print(f"interrupted: {stop}", file=sys.stderr)
        return stop.status
    except KeyboardInterrupt as stop:
        signum = stop.args[0] if stop.args else signal.SIGINT
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        print(f"interrupted: stopped by {name}; no file was left half-written.", file=sys.stderr)
        return 128 + signum
    except (StylelibError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if catch:
            signal.signal(signal.SIGTERM, previous)
    return 0
