"""Tests for stylelib.methods: one registry that the command line, the benchmarks and the
comparison all read, so a new method needs no edit to any of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from stylelib import comparison, methods
from stylelib.cli import main, parser
from stylelib.errors import StylelibError
from stylelib.images import load_image


def _load_flip(device: torch.device, settings: methods.Settings, *, progress: bool = False
               ) -> tuple[methods.Painter, methods.Size]:
    def paint(photo: torch.Tensor, painting: torch.Tensor | methods.Mix | None, style: str, /,
              *, on_step: methods.Step | None = None) -> torch.Tensor:
        assert isinstance(painting, torch.Tensor)
        mixed = (1 - settings["mix"]) * photo.flip(-1) + settings["mix"] * painting.mean()
        return mixed.clamp(0, 1)

    return paint, lambda: 0.5


def _bench_flip(size: int, repeat: int, warmup: int, backbone: str | None, device: str | None
                ) -> list[tuple[str, str]]:
    return [("flip", f"{size} px, {repeat} runs")]


def _check_mix(settings: methods.Settings) -> None:
    if not 0 <= settings["mix"] <= 1:
        raise StylelibError(f"--mix must be in [0, 1], got {settings['mix']}.")


FLIP = methods.Method(
    "flip", "mirror image", "none", _load_flip, summary="a toy: mirror the photo",
    options=(methods.Option("mix", float, 0.25, "share of the painting's mean colour"),),
    check=_check_mix,
    benchmark=_bench_flip,
)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[methods.Method]:
    """The registry with the toy method added (and restored afterwards)."""
    monkeypatch.setattr(methods, "REGISTRY", dict(methods.REGISTRY))
    yield methods.register(FLIP)


def test_a_registered_method_is_offered_by_stylize(toy: methods.Method,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["stylize", "--help"])
    usage = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "flip (a toy: mirror the photo)" in usage
    assert "--mix" in usage and "flip: share of the painting's mean colour (0.25)" in usage


def test_a_registered_method_stylises_from_the_shell_with_its_option(
        toy: methods.Method, mirror: Path, tmp_path: Path) -> None:
    out = tmp_path / "flip.png"
    assert main(["stylize", "tubingen", "candy", "-o", str(out), "--method", "flip",
                 "--size", "32", "--mix", "0"]) == 0
    photo = load_image("tubingen", 32)
    assert torch.allclose(load_image(out), photo.flip(-1), atol=1 / 255)


def test_its_option_is_checked_and_refused_for_other_methods(
        toy: methods.Method, mirror: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.png"
    assert main(["stylize", "tubingen", "candy", "-o", str(out), "--method", "flip",
                 "--mix", "2"]) == 2
    assert "--mix must be in [0, 1], got 2.0." in capsys.readouterr().err
    assert main(["stylize", "tubingen", "candy", "-o", str(out), "--method", "adain",
                 "--mix", "0.5"]) == 2
    assert "--mix does not apply to --method adain (only to flip)" in capsys.readouterr().err
    assert not out.exists()


def test_a_registered_method_is_benchmarked_and_compared(
        toy: methods.Method, mirror: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "flip", "--size", "48"]) == 0
    assert "flip  48 px, 5 runs" in capsys.readouterr().out
    measured = comparison.compare(["flip"], ["tubingen"], ["candy", "starry_night"], size=32)
    assert [r.painting for r in measured.of("flip")] == ["candy", "starry_night"]
    assert measured.labels["flip"] == "mirror image" and measured.weights_mb["flip"] == 0.5


def test_settings_fill_defaults_and_ignore_unset_values() -> None:
    assert FLIP.settings({"mix": None}) == {"mix": 0.25}
    assert FLIP.settings({"mix": 0.5, "alpha": 1.0}) == {"mix": 0.5}
    with pytest.raises(StylelibError, match="--mix must be in"):
        FLIP.settings({"mix": -1.0})


def test_unknown_method_names_list_the_registered_ones() -> None:
    with pytest.raises(StylelibError, match="Unknown method 'cyclegan': choose one of gatys, fast"):
        methods.get("cyclegan")


def test_the_book_methods_are_registered_in_chapter_order() -> None:
    assert list(methods.REGISTRY) == ["gatys", "fast", "adain", "magenta", "sdedit"]
    assert {name for name, m in methods.REGISTRY.items() if m.benchmark} == {
        "gatys", "fast", "adain", "sdedit"}
    assert methods.get("fast").painted_styles() is not None and methods.get("adain").arbitrary
