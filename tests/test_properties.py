"""Property-based tests (hypothesis): any image file and any command line either works or fails
with one clear error, never a traceback, a changed input or a leftover temporary file.

Example counts are fixed and small (``EXAMPLES``) so the run stays bounded in CI; hypothesis
keeps no database (``database=None``), so every run draws fresh, reproducible-by-seed examples.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stylelib.cli import main
from stylelib.errors import ImageError
from stylelib.images import load_image

EXAMPLES = 60
MODES = ("RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I;16", "I", "F")
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])


def encoded(mode: str, fmt: str, width: int, height: int, seed: int) -> bytes:
    """Random pixels in ``mode``, saved as ``fmt`` (as RGB when the format cannot hold it)."""
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    if mode in ("I;16", "I"):
        image = Image.fromarray(rng.integers(0, 65536, (height, width)).astype(
            np.uint16 if mode == "I;16" else np.int32))
    elif mode == "F":
        image = Image.fromarray(rng.random((height, width), dtype=np.float32), "F")
    else:
        image = rgb.convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError):  # e.g. "cannot write mode F as PNG"
        buffer = io.BytesIO()
        rgb.save(buffer, format=fmt)
    return buffer.getvalue()


@BOUNDED
@given(mode=st.sampled_from(MODES), fmt=st.sampled_from(sorted(FORMATS)),
       width=st.integers(1, 96), height=st.integers(1, 96), seed=st.integers(0, 2**16),
       damage=st.sampled_from(["none", "truncate", "flip bytes", "empty"]),
       cut=st.floats(0.05, 0.95), size=st.one_of(st.none(), st.integers(1, 128)))
def test_any_image_file_loads_or_gives_an_image_error(
    tmp_path: Path, mode: str, fmt: str, width: int, height: int, seed: int, damage: str,
    cut: float, size: int | None,
) -> None:
    data = encoded(mode, fmt, width, height, seed)
    if damage == "truncate":
        data = data[: int(len(data) * cut)]
    elif damage == "flip bytes":
        start = int(len(data) * cut)
        data = data[:start] + bytes(b ^ 0xFF for b in data[start:start + 64]) + data[start + 64:]
    elif damage == "empty":
        data = b""
    path = tmp_path / f"input{FORMATS[fmt]}"
    path.write_bytes(data)
    try:
        image = load_image(path, size)
    except ImageError as error:
        assert "\n" not in str(error), "an image error is one line"
    else:
        assert image.dim() == 4 and image.shape[:2] == (1, 3) and min(image.shape[-2:]) >= 16
        assert torch.isfinite(image).all() and 0 <= float(image.min()) <= float(image.max()) <= 1
        if size is not None:
            assert max(image.shape[-2:]) == max(size, 16) or min(image.shape[-2:]) == 16
    assert path.read_bytes() == data, "loading changed the input file"


NUMBERS = st.one_of(st.integers(-3, 600).map(str), st.sampled_from(
    ["0", "-1", "nan", "inf", "-inf", "1e9", "0.5", "abc", "", "1.5", "2"]))
OPTIONS = ("--size", "--steps", "--style-weight", "--scales", "--alpha", "--strength")


@BOUNDED
@given(method=st.sampled_from(["gatys", "fast", "adain", "magenta"]),
       style=st.sampled_from(["the_scream", "candy", "starry_nite", "painting.png"]),
       options=st.dictionaries(st.sampled_from(OPTIONS), NUMBERS, max_size=3),
       output=st.sampled_from(["out.png", "out.jpg", "out.gif", "photo.png", "sub/out.png",
                               "out"]))
def test_any_command_line_works_or_fails_cleanly(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, mirror_dir: Path, method: str, style: str,
    options: dict[str, str], output: str,
) -> None:
    """Exit 0 with exactly the output file, or exit 2 with one ``error:`` line and no new file;
    the inputs are byte-for-byte unchanged either way. Sizes are capped at 48 px and Gatys at
    two steps so every example runs in well under a second."""
    folder = tmp_path_factory.mktemp("cli")
    monkeypatch.setenv("STYLELIB_ASSETS_DIR", str(mirror_dir))
    photo, painting = folder / "photo.png", folder / "painting.png"
    Image.open(mirror_dir / "content" / "tubingen.jpg").resize((40, 30)).save(photo)
    Image.open(mirror_dir / "style" / "candy.jpg").resize((36, 36)).save(painting)
    before = {p: p.read_bytes() for p in (photo, painting)}
    if "--size" in options and options["--size"].isdigit():
        options["--size"] = str(min(int(options["--size"]), 48))
    if method == "gatys" and "--steps" in options and options["--steps"].isdigit():
        options["--steps"] = str(min(int(options["--steps"]), 2))
    argv = ["stylize", str(photo), str(folder / style) if style.endswith(".png") else style,
            "-o", str(folder / output), "--method", method, "--size", "32"]
    if method == "gatys" and "--steps" not in options:
        argv += ["--steps", "1"]
    for option, value in options.items():
        argv += [option, value] if option != "--size" else []
        if option == "--size":
            argv[argv.index("--size") + 1] = value
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse: a value that is not a number at all
        status = int(stop.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    made = sorted(p.name for p in folder.rglob("*") if p not in before)
    if status == 0:
        assert made == [Path(output).name]
    else:
        assert status == 2
        assert err.count("error:") == 1, err
        assert made == []
    assert all(p.read_bytes() == data for p, data in before.items())
