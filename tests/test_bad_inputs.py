"""The bad-input table: what a reader can get wrong, and the one message each mistake gets.

Each row is run end to end, through ``python -m stylelib stylize`` where the mistake can be
made on the command line, else through the library call a notebook would make. Every row must
end in one error line (CLI: exit status 2, ``error: …`` on stderr; library: a StylelibError or
ValueError raised from stylelib's own code, not from deep inside torch or PIL) and leave the
output folder empty. Valid but unusual images are converted, not rejected.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import block_network
from PIL import Image
from safetensors.torch import save_file

import stylelib
from stylelib import adain, assets, diffusion, gatys, images
from stylelib.backbones import FeatureExtractor
from stylelib.cli import main
from stylelib.errors import StylelibError
from stylelib.images import load_image

PACKAGE = Path(stylelib.__file__).parent
ORIENTATION = 0x0112


class Exploit:
    """Unpickling this creates a marker file: proof that a pickle was (or was not) run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@dataclass
class Setup:
    """What a row may prepare: a scratch folder and the test's monkeypatch."""

    folder: Path
    monkeypatch: pytest.MonkeyPatch

    def photo(self, name: str, image: Image.Image, **save: object) -> str:
        path = self.folder / name
        image.save(path, **save)
        return str(path)

    def noise(self, mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> Image.Image:
        rng = np.random.default_rng(0)
        rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        return rgb.convert(mode)


def truncated_jpeg(s: Setup) -> str:
    whole = s.photo("whole.jpg", s.noise(size=(64, 64)), quality=95)
    data = Path(whole).read_bytes()
    (s.folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    return str(s.folder / "cut.jpg")


def weights_file(s: Setup, tensors: dict[str, torch.Tensor]) -> str:
    save_file(tensors, str(s.folder / "net.safetensors"))
    return str(s.folder / "net.safetensors")


def pickled_weights(s: Setup) -> str:
    (s.folder / "net.safetensors").write_bytes(pickle.dumps(Exploit(s.folder / "PWNED")))
    return str(s.folder / "net.safetensors")


def offline_without_mirror(s: Setup) -> str:
    block_network(s.monkeypatch)
    s.monkeypatch.delenv(assets.MIRROR_ENV, raising=False)
    s.monkeypatch.setenv(assets.CACHE_ENV, str(s.folder / "cache"))
    return "starry_night"


def damaged_mirror(s: Setup) -> str:
    mirror = Path(os.environ[assets.MIRROR_ENV])
    copy = s.folder / "mirror"
    shutil.copytree(mirror / "style", copy / "style")
    shutil.copytree(mirror / "content", copy / "content")
    damaged = copy / "style" / "udnie.jpg"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    s.monkeypatch.setenv(assets.MIRROR_ENV, str(copy))
    s.monkeypatch.setenv(assets.CACHE_ENV, str(s.folder / "cache"))
    return "udnie"


def above_pixel_cap(s: Setup) -> str:
    s.monkeypatch.setattr(images, "MAX_PIXELS", 1_000)
    return s.photo("big.png", s.noise(size=(40, 30)))


Args = Callable[[Setup], list[str]]
"""Builds the command line after ``stylize``, without ``-o``."""

CLI_ROWS: dict[str, tuple[Args, str]] = {
    "missing file": (lambda s: [str(s.folder / "gone.jpg"), "starry_night"],
                     "No image file at"),
    "directory instead of a painting": (lambda s: ["tubingen", str(s.folder)],
                                        "is a directory, not an image file"),
    "folder of photos into one file": (lambda s: [str(s.folder), "starry_night"],
                                       "is a folder, so -o must be a folder for the results"),
    "non-image bytes": (lambda s: [str(s.folder / "notes.jpg"), "starry_night"]
                        if (s.folder / "notes.jpg").write_text("hello") else [],
                        "not an image PIL can read"),
    "truncated JPEG": (lambda s: [truncated_jpeg(s), "starry_night"],
                       "truncated or corrupt"),
    "1x1 pixel image": (lambda s: [s.photo("dot.png", Image.new("RGB", (1, 1))), "starry_night"],
                        "1x1 px; each side must be at least 16"),
    "above the pixel cap": (lambda s: [above_pixel_cap(s), "starry_night", "--size", "20"],
                            "40x30 = 1,200 pixels, above the cap of 1,000"),
    "unknown asset name": (lambda s: ["tubingen", "starry_nite"],
                           "not an asset name either. Did you mean 'starry_night'"),
    "offline without a mirror": (lambda s: ["tubingen", offline_without_mirror(s)],
                                 "set STYLELIB_ASSETS_DIR to a folder that holds"),
    "wrong checksum": (lambda s: ["tubingen", damaged_mirror(s)],
                       "Checksum mismatch for asset 'style/udnie.jpg'"),
    "unknown bundled style": (lambda s: ["tubingen", "mona_lisa", "--method", "fast"],
                              "No bundled network for style 'mona_lisa'"),
    "wrong-shape weight file": (
        lambda s: ["tubingen", weights_file(s, {"encoder.0.weight": torch.zeros(2, 2)}),
                   "--method", "fast"], "does not hold TransformerNet weights"),
    "NaN weights": (
        lambda s: ["tubingen", weights_file(s, {"w": torch.full((2,), float("nan"))}),
                   "--method", "fast"], "contains NaN or infinite weights"),
    "pickle where safetensors expected": (
        lambda s: ["tubingen", pickled_weights(s), "--method", "fast"],
        "never unpickles .pt/.pth files"),
    "--alpha for fast": (lambda s: ["tubingen", "the_scream", "--method", "fast", "--alpha", "0.5"],
                         "--alpha does not apply to --method fast (only to adain)"),
    "--steps for adain": (lambda s: ["tubingen", "candy", "--method", "adain", "--steps", "9"],
                          "--steps does not apply to --method adain (only to gatys and sdedit)"),
    "--style-weight for magenta": (
        lambda s: ["tubingen", "candy", "--method", "magenta", "--style-weight", "3"],
        "--style-weight does not apply to --method magenta (only to gatys)"),
    "--strength for gatys": (lambda s: ["tubingen", "starry_night", "--strength", "0.3"],
                             "--strength does not apply to --method gatys (only to sdedit)"),
    "--tile for sdedit": (lambda s: ["tubingen", "starry_night", "--method", "sdedit", "--tile",
                                     "1024"],
                          "--tile does not apply to --method sdedit (only to gatys and fast and "
                          "adain and magenta)"),
    "--style-scale for gatys": (lambda s: ["tubingen", "starry_night", "--style-scale", "2"],
                                "--style-scale does not apply to --method gatys (only to fast "
                                "and adain and magenta)"),
    "zero style scale": (lambda s: ["tubingen", "the_scream", "--method", "fast",
                                    "--style-scale", "0"],
                         "--style-scale must be a positive number, got 0.0"),
    "tile too small": (lambda s: ["tubingen", "candy", "--method", "adain", "--tile", "100"],
                       "--tile must be an integer >= 512, got 100"),
    "unknown --device": (lambda s: ["tubingen", "the_scream", "--method", "fast", "--device",
                                    "gpu"], "Unknown device 'gpu' (from --device/argument)"),
    "mps where there is none": (
        lambda s: ["tubingen", "the_scream", "--method", "fast", "--device", "mps"],
        "Device 'mps' (from --device/argument) is not available on this machine"),
    "unknown $STYLELIB_PROFILE": (
        lambda s: ["tubingen", "the_scream", "--method", "fast"]
        if s.monkeypatch.setenv("STYLELIB_PROFILE", "fastest") is None else [],
        "Unknown profile 'fastest': choose one of quick, book, full"),
    "zero size": (lambda s: ["tubingen", "starry_night", "--size", "0"],
                  "--size must be a positive integer, got 0"),
    "negative steps": (lambda s: ["tubingen", "starry_night", "--steps", "-5"],
                       "--steps must be a positive integer, got -5"),
    "NaN style weight": (lambda s: ["tubingen", "starry_night", "--style-weight", "nan"],
                         "--style-weight must be a finite number"),
    "init file missing": (lambda s: ["tubingen", "starry_night", "--init", "gone.png"],
                          "--init gone.png: no such file. Pass photo, noise or an image file."),
    "seed below 0": (lambda s: ["tubingen", "starry_night", "--seed", "-2"],
                     "--seed must be an integer >= 0, got -2"),
    "alpha above 1": (lambda s: ["tubingen", "starry_night", "--method", "adain", "--alpha", "2"],
                      "alpha must be in [0, 1], got 2.0"),
    "negative strength": (
        lambda s: ["tubingen", "prior.safetensors", "--method", "sdedit", "--strength", "-1"],
        "strength must be a number in [0, 1]"),
    "steps x strength below 1": (
        lambda s: ["tubingen", "prior.safetensors", "--method", "sdedit", "--steps", "3",
                   "--strength", "0.2"], "no denoising step would run: raise steps to at least 5"),
    "prior file missing": (
        lambda s: ["tubingen", str(s.folder / "prior.safetensors"), "--method", "sdedit",
                   "--steps", "10"],
        "No weights file at"),
    "painting without a prior": (
        lambda s: ["tubingen", "the_scream", "--method", "sdedit", "--steps", "10"],
        "No bundled painting prior for 'the_scream'"),
}

OUTPUT_ROWS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "output folder missing": (lambda d: d / "missing" / "out.png", "does not exist"),
    "output below a regular file": (lambda d: d / "notes.txt" / "out.png", "does not exist"),
    "output is a directory": (lambda d: d, "is a directory"),
    "output format unsupported": (lambda d: d / "out.gif", "Cannot save as '.gif'"),
}


def random_adain() -> adain.AdaIN:
    """An AdaIN model with an untrained decoder: argument checks need no trained weights."""
    return adain.AdaIN(adain.Decoder(), backbone="vgg16-hed")


def bad_tensor(value: float) -> torch.Tensor:
    image = torch.rand(1, 3, 32, 32)
    image[0, 0, 0, 0] = value
    return image


LIBRARY_ROWS: dict[str, tuple[Callable[[], object], str]] = {
    "NaN tensor": (lambda: load_image(bad_tensor(float("nan"))), "NaN or infinite"),
    "inf tensor": (lambda: load_image(bad_tensor(float("inf"))), "NaN or infinite"),
    "wrong-shape tensor": (lambda: gatys.stylize(torch.rand(3, 32), torch.rand(1, 3, 32, 32)),
                           "must have shape [1, 3, H, W]"),
    "unknown backbone": (lambda: FeatureExtractor(["relu1_1"], "resnet50"),
                         "Unknown backbone 'resnet50'"),
    "unknown layer": (lambda: FeatureExtractor(["relu9_9"], "vgg16-hed"), "relu9_9"),
    "zero steps": (lambda: gatys.stylize(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32),
                                         steps=0), "steps must be a positive integer, got 0"),
    "alpha below 0": (lambda: adain.check_alpha(-0.5), "alpha must be in [0, 1], got -0.5"),
    "strength above 1": (lambda: diffusion.check_strength(10, 1.5),
                         "strength must be a number in [0, 1]"),
    "mask of the wrong shape": (
        lambda: adain.stylize(random_adain(), torch.rand(1, 3, 32, 32),
                              [torch.rand(1, 3, 32, 32)] * 2, mask=[torch.ones(16, 16)] * 2),
        "mask[0] must have shape [32, 32] or [1, 1, 32, 32]"),
    "style weights not summing to 1": (
        lambda: adain.stylize(random_adain(), torch.rand(1, 3, 32, 32),
                              [torch.rand(1, 3, 32, 32)] * 2, style_weights=[0.5, 0.7]),
        "style_weights must sum to 1"),
}


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror: Path) -> Setup:
    folder = tmp_path / "inputs"
    folder.mkdir()
    return Setup(folder, monkeypatch)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["stylize", *argv])
    return status, capsys.readouterr().err


def assert_one_error_line(err: str, message: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("row", CLI_ROWS)
def test_bad_command_line_input(row: str, setup: Setup, out_dir: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    make, message = CLI_ROWS[row]
    argv = make(setup)
    method = argv[argv.index("--method") + 1] if "--method" in argv else "gatys"
    takes_steps = method in ("gatys", "sdedit") and "--steps" not in argv
    defaults = [*(["--size", "32"] if "--size" not in argv else []),
                *(["--steps", "1"] if takes_steps else [])]
    status, err = run_cli([*argv, *defaults, "-o", str(out_dir / "out.png")], capsys)
    assert status == 2
    assert_one_error_line(err, message)
    assert list(out_dir.iterdir()) == [], "a bad input left an output file behind"
    assert not (setup.folder / "PWNED").exists(), "a pickle was unpickled"


@pytest.mark.parametrize("row", OUTPUT_ROWS)
def test_bad_output_path(row: str, setup: Setup, out_dir: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    where, message = OUTPUT_ROWS[row]
    (out_dir / "notes.txt").write_text("not a folder")
    status, err = run_cli(["tubingen", "the_scream", "--method", "fast", "--size", "32",
                           "-o", str(where(out_dir))], capsys)
    assert status == 2
    assert_one_error_line(err, message)
    assert sorted(p.name for p in out_dir.iterdir()) == ["notes.txt"]


def test_unknown_method_is_one_parser_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["stylize", "tubingen", "starry_night", "-o", "x.png", "--method", "cyclegan"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument --method: invalid choice: 'cyclegan'" in err and "Traceback" not in err


@pytest.mark.parametrize("row", LIBRARY_ROWS)
def test_bad_library_input(row: str) -> None:
    call, message = LIBRARY_ROWS[row]
    with pytest.raises((StylelibError, ValueError)) as raised:
        call()
    assert message in str(raised.value)
    origin = Path(raised.traceback[-1].path)
    assert PACKAGE in origin.parents, f"raised from {origin}, not from stylelib's own checks"


ODD_IMAGES: dict[str, Callable[[Setup], str]] = {
    "grayscale": lambda s: s.photo("grey.png", s.noise("L")),
    "RGBA": lambda s: s.photo("alpha.png", s.noise("RGBA")),
    "palette": lambda s: s.photo("palette.png", s.noise("P")),
    "CMYK JPEG": lambda s: s.photo("cmyk.jpg", s.noise("CMYK")),
    "16-bit PNG": lambda s: s.photo(
        "deep.png", Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16))),
}


@pytest.mark.parametrize("kind", ODD_IMAGES)
def test_odd_but_valid_images_are_converted(kind: str, setup: Setup, out_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = out_dir / "out.png"
    status, err = run_cli([ODD_IMAGES[kind](setup), "the_scream", "--method", "fast",
                           "--size", "32", "-o", str(out)], capsys)
    assert (status, err) == (0, "")
    with Image.open(out) as written:
        assert written.mode == "RGB" and written.size == (32, 24)


def test_exif_rotated_photo_is_stylised_upright(setup: Setup, out_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored landscape, displayed portrait
    photo = setup.photo("rotated.jpg", setup.noise(size=(40, 30)), exif=exif)
    out = out_dir / "out.png"
    assert run_cli([photo, "the_scream", "--method", "fast", "--size", "32", "-o", str(out)],
                   capsys)[0] == 0
    with Image.open(out) as written:
        assert written.size == (24, 32)
