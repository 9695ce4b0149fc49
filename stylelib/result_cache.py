"""One on-disk cache of slow results that every chapter of a book build shares.

Gatys optimisations are most of a book build, and chapters 3, 4, 5 and 7 optimise some of the
same pairs with the same settings. :func:`remembered` keeps each result in a
:class:`joblib.Memory` store under a key made of everything that decides it: the caller's name
for the computation, its inputs (tensors by their bytes), its settings, the torch version and a
digest of stylelib's own files (code, bundled weights, and the checksums of the weights it
downloads). The store lives beside the book's Jupyter cache, in ``_build/.stylelib_results`` at
the book's root, and only where that ``_build`` folder already exists: a chapter run alone (on
Colab, or in a fresh clone) computes everything, as it would without the cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import TypeVar, cast

import joblib
import torch

from stylelib.files import sha256_of

T = TypeVar("T")

FOLDER_ENV = "STYLELIB_RESULT_CACHE"
"""A folder to keep results in instead of the book's ``_build``; empty turns the cache off."""
FOLDER_NAME = ".stylelib_results"
"""The store's name inside the book's ``_build`` folder, beside ``.jupyter_cache``."""
BOOK_MARKER = "_config.yml"
"""The file that marks the book's root (Jupyter Book's configuration)."""

_off: ContextVar[bool] = ContextVar("result_cache_off", default=False)


def folder() -> Path | None:
    """Where results are kept: ``$STYLELIB_RESULT_CACHE`` when set (``None`` if empty), else
    ``_build/.stylelib_results`` at the nearest book root at or above the working directory,
    if that root has a ``_build`` folder; else ``None`` (nothing is kept)."""
    chosen = os.environ.get(FOLDER_ENV)
    if chosen is not None:
        return Path(chosen) if chosen else None
    here = Path.cwd()
    for root in (here, *here.parents):
        if (root / BOOK_MARKER).is_file():
            build = root / "_build"
            return build / FOLDER_NAME if build.is_dir() else None
    return None


@contextmanager
def bypassed() -> Iterator[None]:
    """Compute (and keep nothing) inside the block: for timing a result that may be stored."""
    token = _off.set(True)
    try:
        yield
    finally:
        _off.reset(token)


@cache
def package_digest() -> str:
    """sha256 over stylelib's own files: a change to any code, bundled weights or pinned
    checksum (and the version, in ``__init__.py``) gives every result a new key."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(bytes.fromhex(sha256_of(path)))
    return digest.hexdigest()


def _canonical(value: object) -> object:
    """A value joblib hashes by content: tensors become (dtype, shape, sha256 of their bytes),
    since joblib's own hash of a tensor differs between equal copies."""
    if isinstance(value, torch.Tensor):
        data = value.detach().to("cpu").contiguous()
        raw = data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b""
        return ("tensor", str(data.dtype), tuple(data.shape), hashlib.sha256(raw).hexdigest())
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    return value


def key(name: str, *parts: object) -> str:
    """The key of computation ``name`` on ``parts``, with the package digest and torch version."""
    return cast(str, joblib.hash((name, package_digest(), torch.__version__, _canonical(parts))))


def _computed(key: str, compute: Callable[[], T]) -> T:
    """What joblib stores: ``compute()``'s value under ``key`` (``compute`` is not hashed)."""
    return compute()


def remembered(name: str, compute: Callable[[], T], *parts: object) -> T:
    """``compute()``, or the value it gave before for the same ``name`` and ``parts`` (every
    input and setting that decides the result, the device among them) when a store is active."""
    where = None if _off.get() else folder()
    if where is None:
        return compute()
    memory = joblib.Memory(where, verbose=0)
    stored = memory.cache(_computed, ignore=["compute"])
    return cast(T, stored(key(name, *parts), compute))
