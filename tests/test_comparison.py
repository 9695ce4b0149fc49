"""The comparison of every method: which pairs each paints, the table's schema, the memory probe."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from stylelib import bundled, comparison, methods
from stylelib.diffusion import PRIOR_PAINTING
from stylelib.errors import StylelibError
from stylelib.profiles import get_profile
from stylelib.result_cache import FOLDER_ENV

QUICK = get_profile("quick")


@pytest.fixture(scope="module")
def measured(mirror_dir: Path) -> comparison.Comparison:
    """Every method on 2 photos x 2 paintings at 32 px in the quick profile."""
    patch = pytest.MonkeyPatch()
    patch.setenv("STYLELIB_ASSETS_DIR", str(mirror_dir))
    try:
        return comparison.compare(None, ["tubingen", "golden_gate"],
                                  ["starry_night", "candy"], size=32, profile=QUICK)
    finally:
        patch.undo()


def test_each_method_paints_exactly_the_pairs_it_can(
        measured: comparison.Comparison) -> None:
    pairs = {name: {(r.photo, r.painting) for r in measured.of(name)}
             for name in measured.methods}
    assert list(measured.methods) == list(methods.REGISTRY)
    everything = {(p, s) for p in ("tubingen", "golden_gate") for s in ("starry_night", "candy")}
    for arbitrary in ("gatys", "adain", "magenta"):
        assert pairs[arbitrary] == everything
    assert "candy" not in bundled.available() and PRIOR_PAINTING == "starry_night"
    assert pairs["fast"] == pairs["sdedit"] == {(p, "starry_night") for p in
                                                ("tubingen", "golden_gate")}


def test_every_measurement_is_a_real_number(
        measured: comparison.Comparison) -> None:
    for result in measured.results:
        assert result.image.shape[-2:] == (24, 32)
        assert all(math.isfinite(v) and v >= 0 for v in
                   (result.content, result.style, result.statistics, result.shallow_content))
        assert -1 <= result.ssim <= 1
    assert all(mb > 1 for mb in measured.weights_mb.values())
    assert set(measured.costs) == set(measured.methods)
    assert all(c.seconds > 0 and c.peak_mb >= 0 for c in measured.costs.values())
    by_method = {r.method: r for r in measured.results if r.photo == "tubingen"
                 and r.painting == "starry_night"}
    # Optimising the image from the photo keeps more of it than any one-pass method.
    assert by_method["gatys"].ssim > max(by_method[m].ssim for m in ("fast", "adain", "sdedit"))


def test_the_table_has_one_row_per_method_in_the_documented_columns(
        measured: comparison.Comparison) -> None:
    text = comparison.table(measured, "cpu", QUICK)
    header, lines = text.split("\n\n")
    assert "1 thread)" in header and "profile quick" in header and "32x24 px" in header
    rows = lines.splitlines()
    assert rows[0] == "| " + " | ".join(comparison.SUMMARY_HEADERS) + " |"
    assert len(rows) == 2 + len(methods.REGISTRY)
    cells = {row.split(" | ")[0].strip("| "): row.split(" | ") for row in rows[2:]}
    gatys_row = cells[measured.labels["gatys"]]
    assert gatys_row[1] == "4" and gatys_row[3] == "yes"
    assert cells[measured.labels["fast"]][3] == "no"


def test_unknown_methods_are_refused() -> None:
    with pytest.raises(StylelibError, match=r"Unknown method 'cyclegan': choose one of gatys, "):
        comparison.compare(["cyclegan"], ["tubingen"], ["starry_night"], size=32)


def test_grid_has_a_cell_per_pair_and_method_with_blanks_where_none(
        measured: comparison.Comparison) -> None:
    images, titles = comparison.grid(measured, ["tubingen"], ["starry_night", "candy"])
    assert len(images) == len(titles) == 2 * len(measured.methods)
    assert titles[: len(measured.methods)] == list(measured.methods)
    blank = titles.index("fast: none")
    assert bool((images[blank] == 1).all())
    assert not bool((images[len(measured.methods) + list(measured.methods).index("adain")]
                     == 1).all())


def test_a_method_of_ones_own_can_be_compared(mirror: Path) -> None:
    def load(device: torch.device, settings: methods.Settings, *, progress: bool = False
             ) -> tuple[methods.Painter, methods.Size]:
        return (lambda photo, painting, name: photo.flip(-1)), lambda: 0.0

    mirror_method = methods.Method("mirror", "left-right flip", "none", load)
    measured = comparison.compare([mirror_method], ["tubingen"], ["candy"], size=32,
                                  profile=QUICK)
    (result,) = measured.of("mirror")
    assert result.ssim < 0.9 and result.content > 0
    twice = comparison.compare([mirror_method], ["tubingen"], ["candy", "starry_night"],
                               size=32, profile=QUICK)
    assert twice.separation_of("mirror") == 0.0  # it ignores the painting: nothing separates
    assert comparison.summary(measured)[0][:4] == ["left-right flip", 1, "none", "yes"]


def test_separation_is_measured_for_methods_that_painted_a_photo_twice(
        measured: comparison.Comparison) -> None:
    for name in ("gatys", "adain", "magenta"):
        assert {photo for method, photo in measured.separation if method == name} == {
            "tubingen", "golden_gate"}
        separation = measured.separation_of(name)
        assert separation is not None and separation > 0
    assert measured.separation_of("fast") is None  # one painting each: nothing to separate
    rows = {row[0]: row for row in comparison.summary(measured)}
    assert rows[measured.labels["fast"]][-1] == "n/a"


def test_against_gives_ratios_per_shared_pair_and_their_mean(
        measured: comparison.Comparison) -> None:
    rows = comparison.against(measured, "fast")
    assert [row[:2] for row in rows] == [["starry_night", "tubingen"],
                                         ["starry_night", "golden_gate"], ["mean", ""]]
    mine = {r.photo: r for r in measured.of("fast")}
    gatys = {r.photo: r for r in measured.of("gatys") if r.painting == "starry_night"}
    assert rows[0][2] == pytest.approx(mine["tubingen"].content / gatys["tubingen"].content)
    assert rows[1][4] == pytest.approx(mine["golden_gate"].style / gatys["golden_gate"].style)
    assert rows[2][6:] == pytest.approx([sum(r.ssim for r in mine.values()) / 2,
                                         sum(r.ssim for r in gatys.values()) / 2])
    assert len(rows[0]) == len(comparison.AGAINST_HEADERS)
    with pytest.raises(ValueError, match="painted no pair in common"):
        comparison.against(measured, "fast", "nothing")


def test_against_can_keep_only_some_paintings(measured: comparison.Comparison) -> None:
    candy = comparison.against(measured, "adain", paintings=["candy"])
    assert [row[:2] for row in candy] == [["candy", "tubingen"], ["candy", "golden_gate"],
                                          ["mean", ""]]
    both = comparison.against(measured, "adain")
    assert candy[:2] == [row for row in both if row[0] == "candy"]
    assert candy[-1][2:] == pytest.approx([(a + b) / 2 for a, b in
                                           zip(candy[0][2:], candy[1][2:], strict=True)])
    with pytest.raises(ValueError, match="painted no pair in common"):
        comparison.against(measured, "fast", paintings=["candy"])


def test_mean_ratios_and_by_painting_read_the_mean_rows_of_against(
        measured: comparison.Comparison) -> None:
    """The bar's numbers are against's mean row by name; by_painting puts each method's mean over
    one painting's photos in a row, paintings outer, and refuses a method that painted none."""
    ratios = comparison.mean_ratios(measured, "adain", "magenta")
    assert list(ratios) == list(comparison.AGAINST_HEADERS[2:])
    assert list(ratios.values()) == pytest.approx(
        comparison.against(measured, "adain", "magenta")[-1][2:])
    assert ratios["reference SSIM"] == pytest.approx(
        sum(r.ssim for r in measured.of("magenta")) / 4)
    rows = comparison.by_painting(measured, {"adain": "ours", "magenta": "theirs"},
                                  ["candy", "starry_night"])
    assert [row[:2] for row in rows] == [["ours", "candy"], ["theirs", "candy"],
                                         ["ours", "starry_night"], ["theirs", "starry_night"]]
    assert rows[0][2:] == comparison.against(measured, "adain", paintings=["candy"])[-1][2:]
    assert len(rows[0]) == len(comparison.BY_PAINTING_HEADERS)
    with pytest.raises(ValueError, match="painted no pair in common"):
        comparison.by_painting(measured, {"fast": "net"}, ["candy"])

def test_only_the_timed_image_is_computed_again_when_the_results_are_cached(
        mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        optimize_runs: list[int]) -> None:
    monkeypatch.setenv(FOLDER_ENV, str(tmp_path / "results"))
    runs = optimize_runs
    pairs = (["tubingen", "golden_gate"], ["candy"])
    first = comparison.compare(["gatys"], *pairs, size=32, profile=QUICK)
    assert len(runs) == 3  # the warm-up (kept), the timed first pair (not kept), the second pair
    again = comparison.compare(["gatys"], *pairs, size=32, profile=QUICK)
    assert len(runs) == 4  # only the timed image
    assert again.costs["gatys"].seconds > 0
    for old, new in zip(first.results, again.results, strict=True):
        assert torch.equal(old.image, new.image) and old.content == new.content
