"""The measuring commands, ``bench`` and ``compare``, run from Python at a toy size."""

from __future__ import annotations

from pathlib import Path

import pytest

from stylelib import comparison
from stylelib.cli import main


def test_compare_prints_the_table_and_each_method_against_gatys(
        mirror: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STYLELIB_PROFILE", "quick")
    main(["compare", "--size", "32", "--methods", "gatys", "fast", "--photos", "tubingen",
                "--paintings", "starry_night", "the_scream"])
    text = capsys.readouterr().out
    assert "| " + " | ".join(comparison.SUMMARY_HEADERS) + " |" in text
    assert "feed-forward network (Johnson et al.) against Gatys optimisation" in text
    ratios = text.split("against Gatys optimisation, pair by pair:")[1].strip().splitlines()
    assert ratios[0] == "| " + " | ".join(comparison.AGAINST_HEADERS) + " |"
    assert [row.split(" | ")[:2] for row in ratios[2:]] == [
        ["| starry_night", "tubingen"], ["| the_scream", "tubingen"], ["| mean", ""]]


def test_compare_only_options_are_refused_elsewhere(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "gatys", "--photos", "tubingen"])
    assert "unrecognized arguments: --photos tubingen" in capsys.readouterr().err


def test_a_bad_repeat_count_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "fast", "--repeat", "0"]) == 2
    assert capsys.readouterr().err == "error: --repeat must be >= 1 and --warmup >= 0.\n"


def test_bench_gatys_reports_float32_and_the_chosen_precision_against_bare_float32(
        mirror: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STYLELIB_BF16", "1")
    assert main(["bench", "gatys", "--size", "32", "--repeat", "1", "--warmup", "0",
                 "--backbone", "vgg16-hed"]) == 0
    text = capsys.readouterr().out
    assert "one Gatys evaluation (losses + gradient), float32" in text
    assert "one Gatys evaluation, bfloat16 autocast (the default here)" in text
    ratio = text.split("bfloat16 autocast evaluation / bare float32 (medians; bests)")[1]
    assert float(ratio.split()[0].rstrip(";")) > 0


def test_bench_scale_times_each_size_in_its_own_process_and_plots_it(
        mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each picture is its own process, so its peak memory is its own: the 96 px one holds at
    least the interpreter and torch (over 0.1 GB), the larger one no less."""
    plot = tmp_path / "scale.png"
    assert main(["bench", "scale", "--methods", "fast", "--sizes", "32", "96",
                 "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| fast")]
    assert [row[1] for row in rows] == ["32", "96"]
    seconds = [float(row[2]) for row in rows]
    peaks = [float(row[3].rstrip(" |")) for row in rows]
    assert all(s > 0 for s in seconds) and 0.1 < peaks[0] <= peaks[1] + 0.05
    assert plot.stat().st_size > 10_000


def test_bench_scale_refuses_a_size_below_one(mirror: Path, capsys: pytest.CaptureFixture[str]
                                               ) -> None:
    assert main(["bench", "scale", "--methods", "gatys", "--sizes", "0"]) == 2
    assert "--sizes must be positive integers, got [0]" in capsys.readouterr().err
