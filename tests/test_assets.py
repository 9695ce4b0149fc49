"""Tests for stylelib.assets: names, the registry's rows, and fetching from mirror, cache or web."""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest

from stylelib import assets
from stylelib.errors import AssetError

HEX64 = re.compile(r"[0-9a-f]{64}")
PIP_SPEC = re.compile(r"pip:[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+")
SMALL = "style/udnie.jpg"
"""A small registry image (40 kB), so hashing it costs nothing."""


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def copy_mirror(source: Path, target: Path) -> Path:
    """Copy the mirror's image folders (not the large training set) to ``target``."""
    for folder in ("content", "style"):
        shutil.copytree(source / folder, target / folder)
    return target


@pytest.fixture
def empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty download cache, so nothing from the user's cache can answer."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv(assets.CACHE_ENV, str(cache))
    return cache


# --------------------------------------------------------------------------- names


def test_resolve_by_full_name_and_by_stem_give_the_same_asset() -> None:
    full = assets.resolve("style/starry_night.jpg")
    assert full.name == "style/starry_night.jpg"
    assert assets.resolve("starry_night") == full
    assert assets.resolve("tubingen").name == "content/tubingen.jpg"


def test_unknown_name_suggests_a_close_one() -> None:
    suggestion = r"Unknown asset 'stary_night'\. Did you mean 'starry_night'"
    with pytest.raises(AssetError, match=suggestion):
        assets.resolve("stary_night")


def test_unknown_name_without_close_match_points_to_names() -> None:
    with pytest.raises(AssetError, match=r"Unknown asset 'qqqqqq'\. List the known names") as info:
        assets.resolve("qqqqqq")
    assert "Did you mean" not in str(info.value)


def test_ambiguous_stem_is_not_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two files with one stem (a.jpg, a.png): the stem alone must not pick one of them."""
    table = {
        name: assets.Asset(name, "https://example.org/" + name, "0" * 64, 1, "c", "l")
        for name in ("style/wave.jpg", "content/wave.png")
    }
    monkeypatch.setattr(assets, "registry", lambda: table)
    assert assets.resolve("style/wave.jpg").name == "style/wave.jpg"
    with pytest.raises(AssetError, match="Unknown asset 'wave'"):
        assets.resolve("wave")


def test_names_filters_by_folder() -> None:
    styles = assets.names("style/")
    assert "style/starry_night.jpg" in styles
    assert all(name.startswith("style/") for name in styles)
    assert styles == sorted(styles)
    assert set(assets.names()) == set(assets.registry())


def test_credit_line_contains_credit_and_licence() -> None:
    asset = assets.resolve("starry_night")
    assert asset.credit_line == f"{asset.credit}. Licence: {asset.licence}."
    assert "van Gogh" in asset.credit_line


# --------------------------------------------------------------------------- registry rows


def test_registry_csv_has_no_duplicate_names() -> None:
    """``registry()`` builds a dict, which would silently keep only the last duplicate row."""
    text = resources.files("stylelib").joinpath("assets.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    names = [row["name"] for row in rows]
    assert len(names) == len(set(names))
    assert len(rows) == len(assets.registry())


def test_every_registry_row_is_complete() -> None:
    problems = []
    for asset in assets.registry().values():
        if not HEX64.fullmatch(asset.sha256):
            problems.append(f"{asset.name}: sha256 {asset.sha256!r} is not 64 lowercase hex")
        if not (asset.url.startswith("https://") or PIP_SPEC.fullmatch(asset.url)):
            problems.append(f"{asset.name}: url {asset.url!r} is neither https nor pip:NAME==VER")
        if not asset.credit.strip():
            problems.append(f"{asset.name}: empty credit")
        if not asset.licence.strip():
            problems.append(f"{asset.name}: empty licence")
        if asset.bytes <= 0:
            problems.append(f"{asset.name}: size {asset.bytes}")
        if asset.name.startswith("/") or ".." in Path(asset.name).parts:
            problems.append(f"{asset.name}: name must be a relative path inside the mirror")
    assert problems == []


def test_every_mirror_image_is_registered_with_its_checksum(mirror_dir: Path) -> None:
    """The mirror's SOURCES.csv is the ground truth: same sha256, size, URL and credit."""
    table = assets.registry()
    with (mirror_dir / "SOURCES.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows, "SOURCES.csv lists no files"
    problems = []
    for row in rows:
        asset = table.get(row["file"])
        if asset is None:
            problems.append(f"{row['file']}: not in the registry")
            continue
        url = f"https://raw.githubusercontent.com/{row['repo']}/{row['commit']}/{row['path']}"
        if asset.sha256 != row["sha256"]:
            problems.append(f"{row['file']}: sha256 {asset.sha256} != {row['sha256']}")
        if asset.bytes != int(row["bytes"]):
            problems.append(f"{row['file']}: bytes {asset.bytes} != {row['bytes']}")
        if asset.url != url:
            problems.append(f"{row['file']}: url {asset.url} != {url}")
        if asset.credit != row["credit"]:
            problems.append(f"{row['file']}: credit {asset.credit!r} != {row['credit']!r}")
    assert problems == []


# --------------------------------------------------------------------------- fetch


def test_fetch_reads_the_mirror_and_the_bytes_match(mirror: Path) -> None:
    asset = assets.resolve("udnie")
    path = assets.fetch("udnie")
    assert path == mirror / SMALL
    assert sha256_of(path) == asset.sha256
    assert path.stat().st_size == asset.bytes


def test_every_registered_image_is_in_the_mirror(mirror: Path) -> None:
    images = assets.names("content/") + assets.names("style/")
    assert len(images) >= 20
    for name in images:
        assert assets.fetch(name) == mirror / name


def test_corrupted_mirror_file_is_a_checksum_error(
    mirror_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_cache: Path
) -> None:
    copy = copy_mirror(mirror_dir, tmp_path / "mirror")
    damaged = copy / SMALL
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    damaged.write_bytes(bytes(data))
    monkeypatch.setenv(assets.MIRROR_ENV, str(copy))

    expected = assets.resolve(SMALL).sha256
    with pytest.raises(AssetError, match=r"Checksum mismatch for asset 'style/udnie\.jpg'") as info:
        assets.fetch("udnie")
    assert expected in str(info.value)
    assert str(damaged) in str(info.value)
    # The intact files of the same copy are still served from it.
    assert assets.fetch("tubingen") == copy / "content" / "tubingen.jpg"
    assert files_under(empty_cache) == []


def test_offline_without_mirror_names_the_file_and_the_variable(
    monkeypatch: pytest.MonkeyPatch, empty_cache: Path, no_network: None
) -> None:
    monkeypatch.delenv(assets.MIRROR_ENV, raising=False)
    with pytest.raises(AssetError, match=r"Cannot get asset 'style/udnie\.jpg'") as info:
        assets.fetch("udnie")
    message = str(info.value)
    assert "STYLELIB_ASSETS_DIR is not set" in message
    assert f"set STYLELIB_ASSETS_DIR to a folder that holds {SMALL}" in message
    assert "\n" not in message, "the network error's traceback leaked into the message"
    assert files_under(empty_cache) == []


def test_offline_with_a_mirror_that_lacks_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, empty_cache: Path, no_network: None
) -> None:
    elsewhere = tmp_path / "other-mirror"
    elsewhere.mkdir()
    monkeypatch.setenv(assets.MIRROR_ENV, str(elsewhere))
    with pytest.raises(AssetError, match=r"Cannot get asset 'style/udnie\.jpg'") as info:
        assets.fetch("udnie")
    assert f"STYLELIB_ASSETS_DIR={elsewhere}" in str(info.value)
    assert files_under(empty_cache) == []


def test_fetch_uses_a_verified_cached_download(
    mirror_dir: Path, monkeypatch: pytest.MonkeyPatch, empty_cache: Path, no_network: None
) -> None:
    monkeypatch.delenv(assets.MIRROR_ENV, raising=False)
    cached = empty_cache / SMALL
    cached.parent.mkdir(parents=True)
    shutil.copyfile(mirror_dir / SMALL, cached)
    assert assets.fetch("udnie") == cached

    cached.write_bytes(cached.read_bytes()[:-10])  # a truncated download
    with pytest.raises(AssetError, match=r"Checksum mismatch .*\(download cache\)"):
        assets.fetch("udnie")


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    assert assets.cache_dir() == tmp_path
    monkeypatch.delenv(assets.CACHE_ENV)
    assert assets.cache_dir().name == "stylelib"


@pytest.mark.parametrize("in_the_way", ["the cache itself", "its style folder"])
def test_a_cache_that_is_a_file_is_named_as_the_cause(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: None, in_the_way: str
) -> None:
    """Not 'download failed ... connect to the internet': the cache is what must change."""
    cache = tmp_path / "cache"
    if in_the_way == "the cache itself":
        cache.write_text("not a folder")
    else:
        cache.mkdir()
        (cache / "style").write_text("not a folder")
    monkeypatch.setenv(assets.CACHE_ENV, str(cache))
    monkeypatch.delenv(assets.MIRROR_ENV, raising=False)
    with pytest.raises(AssetError, match=r"The download cache .* cannot be used \(.*\): set "
                                         r"STYLELIB_CACHE_DIR to a writable folder") as info:
        assets.fetch("udnie")
    assert "internet" not in str(info.value)


def test_a_mirror_variable_that_names_no_folder_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(assets.MIRROR_ENV, str(tmp_path / "typo"))
    with pytest.raises(AssetError, match=r"STYLELIB_ASSETS_DIR=.*typo is not a folder: point it"):
        assets.fetch("udnie")


def test_credit_lines_join_the_credits_in_order_with_their_roles() -> None:
    photo, painting = assets.resolve("tubingen"), assets.resolve("starry_night")
    assert assets.credit_lines(["tubingen", "starry_night"]) == (
        f"{photo.credit_line} {painting.credit_line}")
    assert assets.credit_lines(["starry_night"], roles=["Painting"], sep="\n") == (
        f"Painting: {painting.credit_line}")
    with pytest.raises(ValueError, match="1 roles for 2 images"):
        assets.credit_lines(["tubingen", "starry_night"], roles=["Photo"])
    with pytest.raises(AssetError):
        assets.credit_lines(["mona_lisa"])
