"""Benchmarks: ``python -m stylelib bench METHOD [--size N]`` times a method against its floor.

Each method's benchmark (:mod:`stylelib.benchmarks`, found through the registry) measures its
own cost and the cost of the bare network work it cannot avoid (for Gatys: one backbone
forward + backward), so the ratio shows the overhead the library adds; ``compare`` prints
chapter 7's table. Speed targets live here, never in unit tests.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from stylelib import comparison, methods
from stylelib.metrics import markdown_table
from stylelib.profiles import pick_device


def _compare(size: int, device: str | None, chosen: Sequence[str] | None,
             photos: Sequence[str], paintings: Sequence[str]) -> str:
    """Chapter 7's table (every method, or ``chosen``, on the given pairs, in the active
    profile), then each method's errors as ratios to Gatys's pair by pair where Gatys ran."""
    dev = pick_device(device)
    measured = comparison.compare(methods.chosen(chosen), photos, paintings, size=size,
                                  device=dev)
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


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, run one benchmark and print its table."""
    parser = argparse.ArgumentParser(
        prog="python -m stylelib.bench",
        description="Time a style-transfer method against the network work it cannot avoid.",
        epilog="examples: python -m stylelib.bench gatys --size 256; "
               "STYLELIB_PROFILE=book python -m stylelib.bench compare --size 256",
    )
    timed = {name: m.benchmark for name, m in methods.REGISTRY.items() if m.benchmark}
    parser.add_argument("method", choices=[*timed, "compare"],
                        help="one method against its floor, or compare: every method on the "
                             "comparison's pairs (chapter 7's table)")
    parser.add_argument("--size", type=int, default=256, help="long side in pixels (256)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (2)")
    parser.add_argument("--backbone", default=None,
                        help="a name in stylelib.backbones.SOURCES (default: the default one)")
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: auto)")
    parser.add_argument("--methods", nargs="+", choices=list(methods.REGISTRY), default=None,
                        help="compare only: the methods to run (default: all)")
    parser.add_argument("--photos", nargs="+", default=None,
                        help="compare only: photo names or files (default: the comparison's)")
    parser.add_argument("--paintings", nargs="+", default=None,
                        help="compare only: painting names or files (default: the "
                             "comparison's)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.warmup < 0:
        parser.error("--repeat must be >= 1 and --warmup >= 0")
    if args.method == "compare":
        print(_compare(args.size, args.device, args.methods, args.photos or comparison.PHOTOS,
                       args.paintings or comparison.PAINTINGS))
        return
    given = [f"--{k}" for k in ("methods", "photos", "paintings") if getattr(args, k)]
    if given:
        parser.error(f"{', '.join(given)} only apply to compare, not to {args.method}")
    rows = timed[args.method](args.size, args.repeat, args.warmup, args.backbone, args.device)
    width = max(len(label) for label, _ in rows)
    print(f"{args.method} benchmark")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    main()
