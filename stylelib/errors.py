"""The exceptions stylelib raises for bad input, so callers and the CLI can catch one family."""

from __future__ import annotations


class StylelibError(Exception):
    """Base class: every message says what was wrong and what to do about it."""


class AssetError(StylelibError):
    """An asset is unknown, unreachable, or its bytes do not match the registry's checksum."""


class ImageError(StylelibError, ValueError):
    """A file or tensor cannot be used as an image."""
