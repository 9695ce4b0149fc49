"""Tests for ``python -m stylelib``: every method writes an image, bad input writes nothing."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylelib import adain, cli, gatys, upsampling
from stylelib.cli import main
from stylelib.images import load_image, resize
from stylelib.metrics import psnr


@pytest.mark.parametrize(("method", "style", "extra"), [
    ("fast", "the_scream", []),
    ("gatys", "starry_night", ["--steps", "2", "--style-weight", "30"]),
    ("adain", "candy", ["--alpha", "0.5"]),
    ("sdedit", "starry_night", ["--steps", "4", "--strength", "0.5"]),
    ("magenta", "candy", []),
])
def test_each_method_writes_an_image_of_the_requested_size(
    mirror: Path, tmp_path: Path, method: str, style: str, extra: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.png"
    status = main(["stylize", "tubingen", style, "-o", str(out), "--method", method,
                   "--size", "32", "--device", "cpu", *extra])
    assert status == 0
    with Image.open(out) as image:
        assert max(image.size) == 32 and image.mode == "RGB"
    assert f"{method}: wrote {out}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random painting prior file: enough to run the sdedit path end to end."""
    from stylelib import diffusion

    torch.manual_seed(0)
    prior = diffusion.PaintingPrior(diffusion.prior_unet((32, 32), 1, 16, 8))
    return diffusion.save_prior(prior, tmp_path_factory.mktemp("prior") / "prior.safetensors",
                                {"note": "random weights, for tests"})


def test_sdedit_runs_with_a_prior_file(mirror: Path, tmp_path: Path, tiny_prior: Path) -> None:
    out = tmp_path / "out.png"
    assert main(["stylize", "tubingen", str(tiny_prior), "-o", str(out), "--method", "sdedit",
                 "--size", "32", "--steps", "4", "--strength", "0.5"]) == 0
    with Image.open(out) as image:
        assert image.size == (32, 24)


def test_adain_without_the_bundled_decoder_says_so_and_writes_nothing(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(adain, "weights_path", lambda: tmp_path / "gone.safetensors")
    out = tmp_path / "out.png"
    status = main(["stylize", "tubingen", "starry_night", "-o", str(out), "--method", "adain",
                   "--size", "32"])
    assert status == 2 and not out.exists()
    assert "No bundled AdaIN decoder" in capsys.readouterr().err


def test_sdedit_without_a_prior_for_the_painting_says_how_to_train_one(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.png"
    status = main(["stylize", "tubingen", "the_scream", "-o", str(out), "--method", "sdedit",
                   "--size", "32", "--steps", "4"])
    assert status == 2 and not out.exists()
    error = capsys.readouterr().err
    assert "No bundled painting prior for 'the_scream'" in error
    assert "python -m stylelib train prior the_scream" in error


def test_the_advised_prior_command_works_for_a_readers_own_painting(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Follow the message word for word (at toy size): train, then stylise with the file."""
    import shlex

    from stylelib import diffusion

    monkeypatch.chdir(tmp_path)
    Image.open(mirror / "style" / "the_scream.jpg").resize((48, 60)).save("my_painting.png")
    argv = ["stylize", "tubingen", "my_painting.png", "-o", "out.png", "--method", "sdedit",
            "--size", "32", "--steps", "4"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    advice = shlex.split(error.split("`")[1])
    assert advice[:5] == ["python", "-m", "stylelib", "train", "prior"]
    assert main([*advice[3:], "--steps", "2", "--size", "16", "--scale", "24",
                 "--batch-size", "2", "--channels", "8,8,8"]) == 0
    prior_file = error.split("then pass ")[1].split(" as STYLE")[0]
    assert main([*argv[:2], prior_file, *argv[3:]]) == 0
    assert Image.open("out.png").size == (32, 24)
    card = diffusion.load_prior(prior_file, "cpu").card
    assert card["painting"] == "my_painting.png: the reader's own painting"


def test_fast_accepts_a_trained_weights_file(mirror: Path, tmp_path: Path) -> None:
    weights = Path(__file__).parents[1] / "stylelib" / "weights" / "fast_great_wave.safetensors"
    out = tmp_path / "out.jpg"
    assert main(["stylize", "tubingen", str(weights), "-o", str(out), "--method", "fast",
                 "--size", "24"]) == 0
    assert out.stat().st_size > 0


@pytest.mark.parametrize(("argv", "message"), [
    (["tubingen", "starry_night", "--size", "0"], "--size must be a positive integer, got 0"),
    (["tubingen", "starry_night", "--steps", "-3"], "--steps must be a positive integer"),
    (["no_such_photo.jpg", "starry_night"], "no_such_photo.jpg"),
    (["tubingen", "mona_lisa", "--method", "fast"], "No bundled network for style 'mona_lisa'"),
    (["tubingen", "starry_night", "--style-weight", "nan"], "--style-weight must be a finite"),
    (["tubingen", "starry_night", "--tv-weight", "-1"], "--tv-weight must be a finite number >= 0"),
    (["tubingen", "starry_night", "--init", "nowhere.png"],
     "--init nowhere.png: no such file. Pass photo, noise or an image file."),
    (["tubingen", "starry_night", "--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["tubingen", "the_scream", "--method", "fast", "--seed", "3"],
     "--seed does not apply to --method fast (only to gatys and sdedit)"),
    (["tubingen", "starry_night", "--method", "adain", "--alpha", "1.5"],
     "alpha must be in [0, 1], got 1.5"),
    (["tubingen", "prior.safetensors", "--method", "sdedit", "--strength", "-0.1"],
     "strength must be a number in [0, 1]"),
    (["tubingen", "prior.safetensors", "--method", "sdedit", "--strength", "0.1", "--steps", "5"],
     "no denoising step would run"),
])
def test_bad_arguments_give_one_error_line_and_no_file(
    mirror: Path, tmp_path: Path, argv: list[str], message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.png"
    assert main(["stylize", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_output_path_is_checked_before_any_work(mirror: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    for target, message in [(tmp_path / "missing" / "o.png", "does not exist"),
                            (tmp_path / "o.gif", "use .png, .jpg or .webp"),
                            (tmp_path, "is a directory")]:
        assert main(["stylize", "tubingen", "starry_night", "-o", str(target)]) == 2
        assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("alias", ["same path", "symlink", "hard link"])
@pytest.mark.parametrize("role", ["content", "style"])
def test_output_that_is_an_input_is_refused_and_the_input_kept(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], alias: str, role: str
) -> None:
    photo, painting = tmp_path / "photo.png", tmp_path / "painting.png"
    for name, target in (("tubingen", photo), ("the_scream", painting)):
        Image.open(mirror / "content" / f"{name}.jpg" if name == "tubingen"
                   else mirror / "style" / f"{name}.jpg").resize((40, 30)).save(target)
    victim = photo if role == "content" else painting
    before = victim.read_bytes()
    out = tmp_path / "out.png"
    if alias == "same path":
        out = victim
    elif alias == "symlink":
        out.symlink_to(victim)
    else:
        out.hardlink_to(victim)
    argv = ["stylize", str(photo), str(painting), "-o", str(out), "--steps", "1", "--size", "32"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"is the {role} image" in error
    assert victim.read_bytes() == before
    assert main([*argv[:3], "-o", str(tmp_path / "elsewhere.png"), *argv[5:]]) == 0  # it runs


def test_output_into_the_mirror_copy_of_a_named_input_is_refused(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A book image given by name is read from the mirror; -o may not point there either."""
    copy = tmp_path / "mirror"
    shutil.copytree(mirror / "content", copy / "content")
    monkeypatch.setenv("STYLELIB_ASSETS_DIR", str(copy))
    target = copy / "content" / "tubingen.jpg"
    before = target.read_bytes()
    assert main(["stylize", "tubingen", "the_scream", "-o", str(target), "--method", "fast",
                 "--size", "32"]) == 2
    assert "is the content image tubingen" in capsys.readouterr().err
    assert target.read_bytes() == before


@pytest.mark.parametrize(("signum", "status", "name"), [(signal.SIGINT, 130, "Ctrl-C"),
                                                         (signal.SIGTERM, 143, "SIGTERM")])
def test_ctrl_c_or_sigterm_during_stylize_is_one_line_and_no_file(
    mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, signum: signal.Signals, status: int, name: str,
) -> None:
    def signalled(*args: object, **kwargs: object) -> None:
        signal.raise_signal(signum)

    monkeypatch.setattr(gatys, "stylize", signalled)
    out = tmp_path / "out.png"
    assert main(["stylize", "tubingen", "starry_night", "-o", str(out), "--size", "32"]) == status
    expected = f"interrupted: stopped by {name}; no file was left half-written.\n"
    assert capsys.readouterr().err == expected
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_unknown_method_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["stylize", "a.jpg", "b.jpg", "-o", "c.png", "--method", "magic"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'magic'" in capsys.readouterr().err


def test_one_parser_lists_every_command_and_every_trainer() -> None:
    def shown(*argv: str) -> str:
        return subprocess.run([sys.executable, "-m", "stylelib", *argv], capture_output=True,
                              text=True, check=True).stdout

    assert "{stylize,video,train,bench,compare}" in shown("--help")
    assert "--temporal-weight" in shown("video", "--help")
    trainers = shown("train", "--help")
    assert all(f"\n    {kind} " in trainers for kind in ("fast", "adain", "prior")), trainers
    assert shown("train", "fast", "--help").startswith("usage: python -m stylelib train fast ")
    assert "{gatys,fast,adain,sdedit,scale}" in shown("bench", "--help")
    assert "--paintings" in shown("compare", "--help")


def test_module_entry_point_shows_examples() -> None:
    shown = subprocess.run([sys.executable, "-m", "stylelib", "stylize", "--help"],
                           capture_output=True, text=True, check=True).stdout
    assert "python -m stylelib stylize photo.jpg starry_night -o out.png" in shown
    assert "--method {gatys,fast,adain,magenta,sdedit}" in shown


def _pixels(path: Path) -> np.ndarray:
    """An image file as ``[H, W, 3]`` floats in [0, 1]."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255


@pytest.mark.parametrize("method", ["gatys", "fast", "adain", "magenta", "sdedit"])
def test_colour_photo_keeps_the_photos_chroma_for_every_method(
        mirror: Path, tmp_path: Path, method: str) -> None:
    """``--colour photo``: the result's a and b in Lab are the photo's, its lightness is not."""
    from skimage.color import rgb2lab

    style = {"fast": "the_scream", "sdedit": "starry_night"}.get(method, "candy")
    lab = {}
    for colour in ("painting", "photo"):
        out = tmp_path / f"{colour}.png"
        assert main(["stylize", "tubingen", style, "-o", str(out), "--method", method, "--size",
                     "32", "--colour", colour, *(["--steps", "3"] if method == "gatys" else [])
                     ]) == 0
        lab[colour] = rgb2lab(_pixels(out))
    photo = rgb2lab(load_image("tubingen", 32)[0].permute(1, 2, 0).double().numpy())
    off = {colour: float(np.abs(lab[colour][..., 1:] - photo[..., 1:]).mean()) for colour in lab}
    assert off["photo"] < 3.0 < off["painting"], off
    assert np.abs(lab["photo"][..., 0] - photo[..., 0]).mean() > 2.0  # the style's lightness


def test_a_larger_print_keeps_the_marks_of_the_working_size_unless_style_scale_says(
        mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a working size of 64 px: a 128 px print is the 64 px picture enlarged (with the
    photo's detail), not a finer-grained picture; --style-scale 0.5 paints it at 128 px."""
    monkeypatch.setattr(upsampling, "WORKING", 64)
    base = ["stylize", "tubingen", "the_scream", "--method", "fast"]
    for name, extra in (("work.png", ["--size", "64"]), ("print.png", ["--size", "128"]),
                        ("fine.png", ["--size", "128", "--style-scale", "0.5"])):
        assert main([*base, *extra, "-o", str(tmp_path / name)]) == 0
    work, printed, fine = (torch.from_numpy(_pixels(tmp_path / n)).permute(2, 0, 1)[None].float()
                           for n in ("work.png", "print.png", "fine.png"))
    assert printed.shape == fine.shape and printed.shape[-1] == 128
    assert psnr(resize(printed, 64), work) > 28
    assert psnr(resize(fine, 64), work) < psnr(resize(printed, 64), work) - 5


def test_the_painting_keeps_its_pixels_whatever_the_style_scale(
        mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AdaIN reads the painting at --style-scale times the working size (64 px here). At 0.5
    the 128 px print is painted whole beside the 64 px painting that scale 1 reads, so its
    marks take half the share of the frame instead of being a blurred painting's; at 2 the
    32 px picture gets that 64 px painting, marks twice the share; a 64 px print at 0.5
    reads it at 32 px."""
    monkeypatch.setattr(upsampling, "WORKING", 64)
    read: dict[str, int | None] = {}
    real = cli.load_image

    def spied(source: str, size: int | None = None, **options: object) -> torch.Tensor:
        read[str(source)] = size
        return real(source, size, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(cli, "load_image", spied)
    base = ["stylize", "tubingen", "candy", "--method", "adain", "-o", str(tmp_path / "a.png")]
    for extra, photo, painting in ((["--size", "128", "--style-scale", "0.5"], 128, 64),
                                   (["--size", "128", "--style-scale", "2"], 128, 64),
                                   (["--size", "64"], 64, 64),
                                   (["--size", "64", "--style-scale", "0.5"], 64, 32)):
        read.clear()
        assert main([*base, *extra]) == 0
        assert read == {"tubingen": photo, "candy": painting}, extra


def test_a_seed_gives_a_bit_identical_file_and_init_starts_from_a_file(
        mirror: Path, tmp_path: Path) -> None:
    base = ["stylize", "tubingen", "starry_night", "--size", "32", "--steps", "2"]
    for name, seed in (("a.png", "3"), ("b.png", "3"), ("c.png", "4")):
        assert main([*base, "--init", "noise", "--seed", seed, "-o", str(tmp_path / name)]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()
    for start, name in ((str(tmp_path / "c.png"), "from_c.png"), ("photo", "from_photo.png")):
        assert main([*base[:-1], "1", "--init", start, "-o", str(tmp_path / name)]) == 0
    c = _pixels(tmp_path / "c.png")
    assert (np.abs(_pixels(tmp_path / "from_c.png") - c).mean()
            < 0.5 * np.abs(_pixels(tmp_path / "from_photo.png") - c).mean())


def test_a_folder_of_photos_goes_to_a_folder_and_a_rerun_skips_what_is_done(
        mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "holiday"
    (photos / "day2").mkdir(parents=True)
    shutil.copy(mirror / "content" / "tubingen.jpg", photos / "tubingen.jpg")
    shutil.copy(mirror / "content" / "golden_gate.jpg", photos / "day2" / "golden_gate.jpg")
    out = tmp_path / "styled"
    argv = ["stylize", str(photos), "the_scream", "-o", str(out), "--method", "fast",
            "--size", "32"]
    assert main(argv) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["day2/golden_gate.png", "tubingen.png"]
    first = (out / "tubingen.png").stat().st_mtime_ns
    (out / "day2" / "golden_gate.png").unlink()  # as if Ctrl-C had stopped the first run there
    capsys.readouterr()
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "skipping 1 photos whose result is already in" in said and said.count("wrote") == 1
    assert (out / "tubingen.png").stat().st_mtime_ns == first
    assert (out / "day2" / "golden_gate.png").is_file()
    assert main([*argv[:4], str(tmp_path / "styled.png"), *argv[5:]]) == 2
    assert "-o must be a folder for the results" in capsys.readouterr().err
    assert main([*argv[:4], str(photos / "styled"), *argv[5:]]) == 2
    assert "is inside CONTENT" in capsys.readouterr().err
    shutil.copy(mirror / "content" / "amber.jpg", photos / "tubingen.png")
    assert main(argv) == 2
    assert "would both be saved as" in capsys.readouterr().err
    (photos / "tubingen.png").unlink()
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 a cut download")  # passes no header check
    (photos / "cut.jpg").write_bytes((photos / "tubingen.jpg").read_bytes()[:3000])
    assert main([*argv[:4], str(tmp_path / "again"), *argv[5:]]) == 0
    said = capsys.readouterr().out
    assert "skipping" in said and "cut.jpg" in said and said.count("wrote") == 2


@pytest.mark.parametrize("method", ["gatys", "adain", "magenta"])
def test_a_one_to_zero_blend_is_the_first_painting_and_an_even_one_is_neither(
        mirror: Path, tmp_path: Path, method: str) -> None:
    base = ["stylize", "tubingen", "--method", method, "--size", "32",
            *(["--steps", "3"] if method == "gatys" else [])]
    runs = {"alone": ["candy"], "one_zero": ["candy:1", "the_scream:0"],
            "even": ["candy", "the_scream"], "other": ["the_scream"]}
    for name, styles in runs.items():
        assert main([*base[:2], *styles, "-o", str(tmp_path / f"{name}.png"), *base[2:]]) == 0
    assert (tmp_path / "one_zero.png").read_bytes() == (tmp_path / "alone.png").read_bytes()
    even = _pixels(tmp_path / "even.png")
    for single in ("alone", "other"):
        assert np.abs(even - _pixels(tmp_path / f"{single}.png")).mean() > 0.01


def test_blends_are_refused_where_a_method_paints_one_painting(
        mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.png"
    assert main(["stylize", "tubingen", "the_scream", "great_wave", "-o", str(out),
                 "--method", "fast"]) == 2
    assert ("--method fast paints one painting, not 2: give one STYLE, or blend them with "
            "--method gatys or adain or magenta") in capsys.readouterr().err
    assert main(["stylize", "tubingen", "candy:0", "mosaic:0", "-o", str(out),
                 "--method", "adain"]) == 2
    assert "Blend weights must be numbers >= 0, not all 0" in capsys.readouterr().err
    assert not out.exists()


def test_save_every_writes_sortable_intermediate_images(mirror: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.png"
    assert main(["stylize", "tubingen", "starry_night", "-o", str(out), "--size", "32",
                 "--steps", "6", "--save-every", "2"]) == 0
    saved = sorted(p.name for p in tmp_path.glob("out_*.png"))
    assert saved == ["out_00002.png", "out_00004.png", "out_00006.png"]
    first, last = _pixels(tmp_path / saved[0]), _pixels(tmp_path / saved[-1])
    assert np.abs(first - last).mean() > 0  # they are the steps, not one image thrice
    assert main(["stylize", "tubingen", "the_scream", "-o", str(out), "--method", "fast",
                 "--save-every", "2"]) == 2
    assert "--save-every does not apply to --method fast (only to gatys)" in capsys.readouterr().err
