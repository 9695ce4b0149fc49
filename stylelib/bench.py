"""``python -m stylelib bench METHOD`` and ``python -m stylelib compare``: the measuring commands.

``bench`` runs a method's benchmark (:mod:`stylelib.benchmarks`, found through the registry):
its own cost against the bare network work it cannot avoid (for Gatys: one backbone forward +
backward), so the ratio shows the overhead the library adds; ``bench scale`` times the one-pass
methods from 512 to 4096 px with their peak memory (:mod:`stylelib.scaling`). ``compare``
prints chapter 7's table and each method against the reference pair by pair. Speed targets live
in these benchmarks (their rows name them), never in unit tests.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from stylelib import comparison, methods, scaling
from stylelib.errors import StylelibError
from stylelib.metrics import markdown_table
from stylelib.profiles import pick_device

SCALE = "scale"
"""``bench scale``: the cost of larger pictures (:mod:`stylelib.scaling`)."""


def _compare(size: int, device: str | None, chosen: Sequence[str] | None,
             photos: Sequence[str], paintings: Sequence[str]) -> str:
    """Chapter 7's table (every method, or ``chosen``, on the given pairs, in the active
    profile), then each method's errors as ratios to Gatys's pair by pair where Gatys ran."""
    dev = pick_device(device)
    measured = comparison.compare(chosen, photos, paintings, size=size, device=dev)
    parts = [comparison.table(measured, dev)]
    reference = methods.REFERENCE
    if reference in measured.methods:
        for name in measured.methods:
            if name != reference:
                against = measured.methods[reference].label
                parts.append(f"{measured.labels[name]} against {against}, pair by pair:\n\n"
                             + markdown_table(comparison.AGAINST_HEADERS,
                                              comparison.against(measured, name)))
    return "\n\n".join(parts)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """``bench METHOD``'s options: which method, at what size, how often, on what."""
    timed = [name for name, m in methods.REGISTRY.items() if m.benchmark]
    parser.add_argument("method", choices=[*timed, SCALE],
                        help="the method to time against its floor, or scale: time and peak "
                             "memory of the one-pass methods at --sizes")
    parser.add_argument("--size", type=int, default=256, help="long side in pixels (256)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (2)")
    parser.add_argument("--backbone", default=None,
                        help="a name in stylelib.backbones.SOURCES (default: the default one)")
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: auto)")
    parser.add_argument("--sizes", nargs="+", type=int, default=list(scaling.SIZES),
                        help="scale: the long sides to paint (512 1024 2048 4096)")
    parser.add_argument("--methods", nargs="+", default=list(scaling.METHODS),
                        choices=list(methods.REGISTRY),
                        help=f"scale: the methods ({' '.join(scaling.METHODS)})")
    parser.add_argument("--style-scale", type=float, default=None, metavar="S",
                        help="scale: paint every size with stylize's --style-scale S (e.g. "
                             "0.25: a 4096 px picture painted at full size, in tiles)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="scale: also draw time and memory against size to this .png")


def _scale(args: argparse.Namespace) -> None:
    """Print (and plot) each method's time and peak memory at each size."""
    if any(size < 1 for size in args.sizes):
        raise StylelibError(f"--sizes must be positive integers, got {args.sizes}.")
    costs = []
    for method in args.methods:
        for size in args.sizes:
            extra = [] if args.style_scale is None else ["--style-scale", str(args.style_scale)]
            costs.append(scaling.measure(method, size, extra))
            print(f"  {method} {size} px: {costs[-1].seconds:.1f} s, "
                  f"{costs[-1].peak_gb:.2f} GB", flush=True)
    print(scaling.table(costs))
    if args.plot is not None:
        print(f"Saved {scaling.plot(costs, args.plot)}")


def run_bench(args: argparse.Namespace) -> None:
    """Run one method's benchmark and print its rows."""
    if args.method == SCALE:
        _scale(args)
        return
    if args.repeat < 1 or args.warmup < 0:
        raise StylelibError("--repeat must be >= 1 and --warmup >= 0.")
    benchmark = methods.get(args.method).benchmark
    assert benchmark is not None  # the parser offers only methods with one
    rows = benchmark(args.size, args.repeat, args.warmup, args.backbone, args.device)
    width = max(len(label) for label, _ in rows)
    print(f"{args.method} benchmark")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """``compare``'s options: the methods, photos and paintings, the size and the device."""
    parser.add_argument("--size", type=int, default=256, help="long side in pixels (256)")
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: auto)")
    parser.add_argument("--methods", nargs="+", choices=list(methods.REGISTRY), default=None,
                        help="the methods to run (default: all)")
    parser.add_argument("--photos", nargs="+", default=list(comparison.PHOTOS),
                        help=f"photo names or files ({' '.join(comparison.PHOTOS)})")
    parser.add_argument("--paintings", nargs="+", default=list(comparison.PAINTINGS),
                        help=f"painting names or files ({' '.join(comparison.PAINTINGS)})")


def run_compare(args: argparse.Namespace) -> None:
    """Print chapter 7's table for the chosen methods and pairs."""
    print(_compare(args.size, args.device, args.methods, args.photos, args.paintings))
