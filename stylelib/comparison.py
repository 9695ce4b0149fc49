"""Every method of the book on the same photo-painting pairs, measured the same way.

:func:`compare` stylises each pair with each method that can paint it, and records the time of
one image (models loaded beforehand, one untimed warm-up per method, the result cache
bypassed), the memory it needs beyond what was in use before, and scores under one loss
network: relative content error to the photo (at ``relu4_2`` and, for edges and small shapes,
``relu2_2``), Gram style error and mean/std style error to the painting, SSIM to the photo
and, per photo, how different a method's results for different paintings are
(:func:`~stylelib.metrics.style_separation`). :func:`summary` averages them per method and
:func:`against` sets one method's scores beside a reference's pair by pair. Chapter 7 prints
the summary, and ``python -m stylelib compare`` prints the same one from the shell.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from stylelib import result_cache
from stylelib.backbones import FeatureExtractor
from stylelib.costs import peak_memory
from stylelib.images import load_image
from stylelib.losses import STATISTICS_LAYERS, PerceptualLoss
from stylelib.methods import REFERENCE, Method, chosen
from stylelib.metrics import (
    content_error,
    markdown_table,
    perceptual_errors,
    ssim,
    statistics_error,
    style_separation,
)
from stylelib.profiles import Profile, device_name, get_profile


@dataclass
class Result:
    """One method on one pair: the picture and its measurements."""

    method: str
    photo: str
    painting: str
    image: torch.Tensor = field(repr=False)
    content: float
    style: float
    """Gram style error over relu1_1 ... relu5_1 (what Gatys minimises)."""
    statistics: float
    """Mean/std style error over relu1_1 ... relu4_1 (what AdaIN minimises)."""
    ssim: float
    shallow_content: float
    """Relative content error at relu2_2 (edges and small shapes; Johnson et al.'s layer)."""


@dataclass(frozen=True)
class Cost:
    """What one image costs a method: wall time and memory beyond what was in use before."""

    seconds: float
    peak_mb: float


@dataclass
class Comparison:
    """What :func:`compare` measured: the methods that painted, their weights' size, results."""

    methods: dict[str, Method]
    labels: dict[str, str]
    """Each method's label with the settings it ran with."""
    weights_mb: dict[str, float]
    results: list[Result]
    costs: dict[str, Cost] = field(default_factory=dict)
    """Each method's cost of one image: its first pair, painted after the warm-up and computed
    even where the result cache holds it."""
    separation: dict[tuple[str, str], float] = field(default_factory=dict)
    """``(method, photo)``: :func:`~stylelib.metrics.style_separation` of the method's results
    for that photo, where it painted it with at least two paintings."""

    def of(self, method: str) -> list[Result]:
        """The results of one method."""
        return [r for r in self.results if r.method == method]

    def separation_of(self, method: str, photos: Sequence[str] | None = None) -> float | None:
        """A method's style separation averaged over ``photos`` (default: all it has one for),
        or ``None`` where it painted no photo with two paintings."""
        values = [v for (m, photo), v in self.separation.items()
                  if m == method and (photos is None or photo in photos)]
        return statistics.fmean(values) if values else None


def compare(
    names: Sequence[str | Method] | None, photos: Sequence[str], paintings: Sequence[str], *,
    size: int, device: str | torch.device = "cpu", profile: Profile | None = None,
) -> Comparison:
    """Run each method (a registered name or a :class:`~stylelib.methods.Method`; ``None``:
    all) on every (photo, painting) pair it can paint, at long side ``size``, with the
    settings ``profile`` gives it.

    Each method loads its models once and paints one untimed warm-up image first, so the time
    is of one image, not of start-up; that timed image (the first pair) bypasses the result
    cache (:mod:`stylelib.result_cache`), while the other pairs may come from it.
    """
    dev = torch.device(device)
    settled = profile or get_profile()
    to_run = chosen(names)  # an unknown name fails here, before any image is loaded
    images = {name: load_image(name, size, device=dev) for name in {*photos, *paintings}}
    loss = PerceptualLoss().to(dev)
    statistics_network = FeatureExtractor(STATISTICS_LAYERS).to(dev)
    shallow_network = FeatureExtractor(("relu2_2",)).to(dev)
    done = Comparison({}, {}, {}, [])
    for method in to_run:
        styles = method.painted_styles()
        pairs = [(p, s) for s in paintings if styles is None or s in styles for p in photos]
        if not pairs:
            continue
        settings = method.settings(method.for_profile(settled))
        paint, weights = method.load(dev, settings)
        done.methods[method.name] = method
        done.labels[method.name] = method.title(settings, size)
        # warm-up: once, or once per painting where each has its own weights to load
        for photo, painting in ({p[1]: p for p in pairs}.values() if styles else pairs[:1]):
            paint(images[photo], images[painting], painting)
        first = pairs[0]
        with result_cache.bypassed(), peak_memory(dev) as peak:
            started = time.perf_counter()
            timed = paint(images[first[0]], images[first[1]], first[1])
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds = time.perf_counter() - started
        done.costs[method.name] = Cost(seconds, peak[0])
        for photo, painting in pairs:
            image = timed if (photo, painting) == first else paint(
                images[photo], images[painting], painting)
            errors = perceptual_errors(image, images[photo], images[painting], loss)
            done.results.append(Result(
                method.name, photo, painting, image.detach().clone(),
                errors["content"], errors["style"],
                statistics_error(image, images[painting], statistics_network),
                ssim(image, images[photo]), content_error(image, images[photo], shallow_network),
            ))
        done.weights_mb[method.name] = weights()
        for photo in photos:
            outputs = [r.image for r in done.of(method.name) if r.photo == photo]
            if len(outputs) >= 2:
                done.separation[method.name, photo] = style_separation(outputs, statistics_network)
    return done


PHOTOS = ("tubingen", "golden_gate")
"""The comparison's photos: held out from every network's training."""
PAINTINGS = ("starry_night", "the_scream", "great_wave")
"""The comparison's paintings: each has a bundled feed-forward network; the first has the prior."""

SUMMARY_HEADERS = ("method", "pairs", "training needed", "arbitrary styles", "s per image",
                   "peak MB", "weights MB", "content error", "relu2_2 content error",
                   "Gram style error", "mean/std style error", "SSIM to photo",
                   "style separation")


def summary(measured: Comparison) -> list[list[object]]:
    """One row per method: the cost of one image, means of the scores over the pairs it
    painted ("n/a" for the separation of a method that painted no photo twice)."""
    rows: list[list[object]] = []
    for name, method in measured.methods.items():
        mine = measured.of(name)
        rows.append([
            measured.labels[name], len(mine), method.training, "yes" if method.arbitrary else "no",
            measured.costs[name].seconds, measured.costs[name].peak_mb,
            measured.weights_mb[name], statistics.fmean(r.content for r in mine),
            statistics.fmean(r.shallow_content for r in mine),
            statistics.fmean(r.style for r in mine), statistics.fmean(r.statistics for r in mine),
            statistics.fmean(r.ssim for r in mine),
            _or_na(measured.separation_of(name)),
        ])
    return rows


def _or_na(value: float | None) -> float | str:
    """A number for a table cell, or "n/a"."""
    return "n/a" if value is None else value


RATIOS = {"content": "content", "shallow_content": "relu2_2 content", "style": "Gram style",
          "statistics": "mean/std style"}
"""The errors :func:`against` divides by the reference's, with their column names."""
AGAINST_HEADERS = ("painting", "photo", *(f"{label} (ratio)" for label in RATIOS.values()), "SSIM",
                   "reference SSIM")


def against(measured: Comparison, method: str, reference: str = REFERENCE, *,
            paintings: Sequence[str] | None = None) -> list[list[object]]:
    """One row per pair both methods painted (paintings outer, photos inner; only
    ``paintings`` where given): each error of ``method`` as a ratio to ``reference``'s on the
    same pair, and both SSIMs, then a "mean" row; the shape of a quality bar ("content at most
    1.5 times Gatys's, SSIM at least 0.35"), per painting for one network per painting."""
    pairs, scores = _ratios(measured, method, reference, paintings)
    return [*(pair + list(row) for pair, row in zip(pairs, scores, strict=True)),
            ["mean", "", *_column_means(scores)]]


def mean_ratios(measured: Comparison, method: str, reference: str = REFERENCE, *,
                paintings: Sequence[str] | None = None) -> dict[str, float]:
    """The "mean" row of :func:`against` by column name (``"content (ratio)"``, ``"SSIM"``, ...):
    what a quality bar over all pairs (or only ``paintings``') reads."""
    scores = _ratios(measured, method, reference, paintings)[1]
    return dict(zip(AGAINST_HEADERS[2:], _column_means(scores), strict=True))


def _column_means(scores: list[list[float]]) -> list[float]:
    """The mean of each column of :func:`_ratios`' scores."""
    return [statistics.fmean(column) for column in zip(*scores, strict=True)]


def _ratios(measured: Comparison, method: str, reference: str, paintings: Sequence[str] | None
            ) -> tuple[list[list[object]], list[list[float]]]:
    """The pairs of :func:`against` and, for each, its ratios and the two SSIMs."""
    theirs = {(r.painting, r.photo): r for r in measured.of(reference)}
    kept = None if paintings is None else frozenset(paintings)
    pairs: list[list[object]] = []
    scores: list[list[float]] = []
    for mine in measured.of(method):
        base = theirs.get((mine.painting, mine.photo))
        if base is not None and (kept is None or mine.painting in kept):
            pairs.append([mine.painting, mine.photo])
            scores.append([*(getattr(mine, k) / getattr(base, k) for k in RATIOS),
                           mine.ssim, base.ssim])
    if not scores:
        raise ValueError(f"{method!r} and {reference!r} painted no pair in common.")
    return pairs, scores


BY_PAINTING_HEADERS = ("method", "painting", *AGAINST_HEADERS[2:])
"""The columns of :func:`by_painting`."""


def by_painting(measured: Comparison, labels: Mapping[str, str], paintings: Sequence[str],
                reference: str = REFERENCE) -> list[list[object]]:
    """For each painting, one row per method of ``labels`` (name to label): its :func:`against`
    means over that painting's photos, so methods can be read side by side painting by painting."""
    return [[label, painting,
             *mean_ratios(measured, name, reference, paintings=[painting]).values()]
            for painting in paintings for name, label in labels.items()]


def table(measured: Comparison, device: str | torch.device,
          profile: Profile | None = None) -> str:
    """The summary as a Markdown table, under a line that says where it was measured."""
    used = profile or get_profile()
    where = device_name(torch.device(device))
    height, width = measured.results[0].image.shape[-2:]
    return (f"Measured on {where}, profile {used.name}, images {width}x{height} px; each time "
            "is of one image after a warm-up, computed afresh.\n\n"
            + markdown_table(SUMMARY_HEADERS, summary(measured)))


def grid(measured: Comparison, photos: Sequence[str], paintings: Sequence[str]
         ) -> tuple[list[torch.Tensor], list[str]]:
    """Images and titles for :func:`stylelib.show` with one row per pair (paintings in the
    outer loop, photos in the inner) and one column per method, titled with the method's name;
    a method that cannot paint a pair gets a blank cell titled "none"."""
    names = list(measured.methods)
    found = {(r.method, r.photo, r.painting): r.image for r in measured.results}
    blank = torch.ones_like(measured.results[0].image)
    images, titles = [], []
    for painting in paintings:
        for photo in photos:
            for name in names:
                image = found.get((name, photo, painting))
                images.append(blank if image is None else image)
                titles.append(name if image is not None else f"{name}: none")
    return images, titles
