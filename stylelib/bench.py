"""Benchmarks: ``python -m stylelib.bench METHOD [--size N]`` times a method against its floor.

Each benchmark measures the method's own cost and the cost of the bare network work it cannot
avoid (for Gatys: one backbone forward + backward), so the ratio shows the overhead the library
adds. Speed targets live here, never in unit tests.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass

import torch

from stylelib import bundled, comparison
from stylelib.adain import DEEPEST, AdaIN, Decoder, adain, load_decoder, weights_path
from stylelib.adain import stylize as adain_stylize
from stylelib.backbones import DEFAULT, FALLBACK, FeatureExtractor, default_backbone
from stylelib.errors import AssetError
from stylelib.fast import TransformerNet, stylize
from stylelib.images import load_image
from stylelib.losses import CONTENT_LAYERS, STYLE_LAYERS, PerceptualLoss
from stylelib.metrics import markdown_table
from stylelib.profiles import pick_device


@dataclass(frozen=True)
class Timing:
    """Median and best of repeated runs, in seconds."""

    median: float
    best: float


def measure(
    fns: Sequence[Callable[[], object]], repeat: int, warmup: int, device: torch.device
) -> list[Timing]:
    """Time each function ``repeat`` times after ``warmup`` untimed rounds.

    The functions are interleaved round by round, so load from other processes slows all of
    them alike and their ratio stays meaningful on a busy machine.
    """
    samples: list[list[float]] = [[] for _ in fns]
    for round_index in range(warmup + repeat):
        for fn, times in zip(fns, samples, strict=True):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_index >= warmup:
                times.append(time.perf_counter() - start)
    return [Timing(statistics.median(t), min(t)) for t in samples]


def bench_gatys(size: int, repeat: int, warmup: int, backbone: str | None, device: str | None
                ) -> list[tuple[str, str]]:
    """One Gatys evaluation (all losses + gradient) vs a bare backbone forward + backward."""
    dev = pick_device(device)
    name = backbone or default_backbone()
    content = load_image("tubingen", size, device=dev)
    style = load_image("starry_night", size, device=dev)
    loss = PerceptualLoss(backbone=name, style_weight=10.0).to(dev)
    loss.set_content(content)
    loss.set_style(style)
    layers = [*CONTENT_LAYERS, *STYLE_LAYERS]
    other = FALLBACK if name != FALLBACK else DEFAULT
    networks = [FeatureExtractor(layers, name).to(dev)]
    with suppress(AssetError):  # offline on the fallback: the paper's network cannot be had
        networks.append(FeatureExtractor(layers, other).to(dev))
    image = content.clone().requires_grad_(True)

    def gatys_step() -> None:
        image.grad = None
        loss(image).total.backward()

    def bare_step(network: FeatureExtractor) -> Callable[[], None]:
        def run() -> None:
            image.grad = None
            network(image)[network.layers[-1]].sum().backward()

        return run

    gatys, bare, *others = measure(
        [gatys_step, *(bare_step(network) for network in networks)], repeat, warmup, dev)
    height, width = content.shape[-2:]
    return [
        ("setting", f"{name}, {width}x{height} px, {dev}, {torch.get_num_threads()} threads, "
                    f"median of {repeat} after {warmup} warm-up"),
        ("one Gatys evaluation (losses + gradient)",
         f"{gatys.median * 1e3:.1f} ms (best {gatys.best * 1e3:.1f})"),
        (f"bare {name} forward + backward to relu5_1",
         f"{bare.median * 1e3:.1f} ms (best {bare.best * 1e3:.1f})"),
        *((f"bare {other} forward + backward to relu5_1, for comparison",
           f"{t.median * 1e3:.1f} ms (best {t.best * 1e3:.1f})") for t in others),
        ("ratio (medians; bests)",
         f"{gatys.median / bare.median:.3f}; {gatys.best / bare.best:.3f} (target <= 1.1)"),
    ]


def bench_fast(size: int, repeat: int, warmup: int, backbone: str | None, device: str | None
               ) -> list[tuple[str, str]]:
    """stylize() on one image vs a bare forward of the same network (``backbone`` is unused:
    a trained feed-forward network needs no loss network)."""
    dev = pick_device(device)
    names = bundled.available()
    if names:
        net, what = bundled.load(names[0], dev), f"bundled {names[0]} net"
    else:
        torch.manual_seed(0)
        net, what = TransformerNet().to(dev).eval(), "random weights (no bundled net found)"
    image = load_image("tubingen", size, device=dev)

    def bare_forward() -> None:
        with torch.no_grad():
            net(image)

    styled, bare = measure([lambda: stylize(net, image), bare_forward], repeat, warmup, dev)
    height, width = image.shape[-2:]
    square_512 = styled.median * 512 * 512 / (height * width)
    return [
        ("setting", f"TransformerNet, {what}, {width}x{height} "
                    f"px, {dev}, {torch.get_num_threads()} threads, median of {repeat} after "
                    f"{warmup} warm-up"),
        ("stylize(net, image)", f"{styled.median * 1e3:.1f} ms (best {styled.best * 1e3:.1f})"),
        ("bare net(image) under torch.no_grad()",
         f"{bare.median * 1e3:.1f} ms (best {bare.best * 1e3:.1f})"),
        ("ratio (medians; bests)",
         f"{styled.median / bare.median:.3f}; {styled.best / bare.best:.3f} (target <= 1.1)"),
        ("stylize per 512x512 image (scaled by pixels)",
         f"{square_512:.2f} s (CPU target <= 1.0 s)"),
    ]


def bench_sdedit(size: int, repeat: int, warmup: int, backbone: str | None, device: str | None
                 ) -> list[tuple[str, str]]:
    """SDEdit with the painting prior (strength 0.5 of 20 DDIM steps = 10 UNet calls) vs those
    10 bare UNet calls (``backbone`` is unused). Imported here: diffusers takes seconds to load."""
    from stylelib.diffusion import PaintingPrior, pretrained, prior_path, sdedit

    dev = pick_device(device)
    if prior_path().is_file():
        prior, what = pretrained(str(dev)), f"bundled {prior_path().name}"
    else:
        torch.manual_seed(0)
        prior, what = PaintingPrior().to(dev).eval(), "random weights (no bundled prior found)"
    image = load_image("tubingen", size, device=dev)
    height, width = image.shape[-2:]
    padded = torch.zeros(1, 3, -(-height // prior.multiple) * prior.multiple,
                         -(-width // prior.multiple) * prior.multiple, device=dev)
    t = torch.tensor([499], device=dev)

    def bare_calls() -> None:
        with torch.inference_mode():
            for _ in range(10):
                prior(padded, t)

    edited, bare = measure([lambda: sdedit(prior, image, 0.5, steps=20), bare_calls], repeat,
                           warmup, dev)
    return [
        ("setting", f"PaintingPrior ({what}, {sum(p.numel() for p in prior.parameters())} "
                    f"parameters), {width}x{height} px, {dev}, {torch.get_num_threads()} "
                    f"threads, median of {repeat} after {warmup} warm-up"),
        ("sdedit(prior, image, 0.5, steps=20)",
         f"{edited.median:.2f} s per image (best {edited.best:.2f})"),
        ("10 bare prior(x, t) calls under inference_mode",
         f"{bare.median * 1e3:.1f} ms (best {bare.best * 1e3:.1f})"),
        ("ratio (medians; bests)",
         f"{edited.median / bare.median:.3f}; {edited.best / bare.best:.3f} (target <= 1.1)"),
    ]


def bench_adain(size: int, repeat: int, warmup: int, backbone: str | None, device: str | None
                ) -> list[tuple[str, str]]:
    """AdaIN stylize() vs its bare network work (two encoder passes to relu4_1 and one decoder
    pass), and one new alpha frame of the cached renderer vs one bare decoder pass."""
    dev = pick_device(device)
    path = weights_path()
    if path.is_file():
        model, what = AdaIN(load_decoder(path)).to(dev), f"bundled decoder {path.name}"
    else:
        torch.manual_seed(0)
        model = AdaIN(Decoder(), backbone=backbone).to(dev)
        what = "random decoder weights (no bundled decoder found)"
    content = load_image("tubingen", size, device=dev)
    style = load_image("starry_night", size, device=dev)
    with torch.no_grad():
        target = adain(model.encode(content)[DEEPEST], model.encode(style)[DEEPEST])
    blend = model.prepare(content, style)

    def bare_passes() -> None:
        with torch.no_grad():
            model.encoder(content)
            model.encoder(style)
            model.decoder(target)

    def bare_decoder() -> None:
        with torch.no_grad():
            model.decoder(target)

    styled, bare, frame, decoder = measure(
        [lambda: adain_stylize(model, content, style), bare_passes, lambda: blend.render(0.5),
         bare_decoder], repeat, warmup, dev)
    height, width = content.shape[-2:]
    return [
        ("setting", f"AdaIN, {model.encoder.backbone} encoder, {what}, {width}x{height} px, "
                    f"{dev}, {torch.get_num_threads()} threads, median of {repeat} after "
                    f"{warmup} warm-up"),
        ("stylize(model, content, style)",
         f"{styled.median * 1e3:.1f} ms (best {styled.best * 1e3:.1f})"),
        ("bare: 2 encoder passes to relu4_1 + 1 decoder pass",
         f"{bare.median * 1e3:.1f} ms (best {bare.best * 1e3:.1f})"),
        ("ratio (medians; bests)",
         f"{styled.median / bare.median:.3f}; {styled.best / bare.best:.3f} (target <= 1.1)"),
        ("one new alpha frame (cached renderer)",
         f"{frame.median * 1e3:.1f} ms (best {frame.best * 1e3:.1f})"),
        ("bare decoder pass", f"{decoder.median * 1e3:.1f} ms (best {decoder.best * 1e3:.1f})"),
        ("frame ratio (medians; bests)",
         f"{frame.median / decoder.median:.3f}; {frame.best / decoder.best:.3f} (target <= 1.1)"),
    ]


def _compare(size: int, device: str | None, chosen: Sequence[str] | None,
             photos: Sequence[str], paintings: Sequence[str]) -> str:
    """Chapter 7's table (every method, or ``chosen``, on the given pairs, in the active
    profile), then each method's errors as ratios to Gatys's pair by pair where Gatys ran."""
    dev = pick_device(device)
    measured = comparison.compare(list(chosen or comparison.methods()), photos, paintings,
                                  size=size, device=dev)
    parts = [comparison.table(measured, dev)]
    if "gatys" in measured.methods:
        for name, method in measured.methods.items():
            if name != "gatys":
                parts.append(f"{method.label} against Gatys optimisation, pair by pair:\n\n"
                             + markdown_table(comparison.AGAINST_HEADERS,
                                              comparison.against(measured, name)))
    return "\n\n".join(parts)


BENCHMARKS = {
    "gatys": bench_gatys, "fast": bench_fast, "adain": bench_adain, "sdedit": bench_sdedit,
}


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, run one benchmark and print its table."""
    parser = argparse.ArgumentParser(
        prog="python -m stylelib.bench",
        description="Time a style-transfer method against the network work it cannot avoid.",
        epilog="examples: python -m stylelib.bench gatys --size 256; "
               "STYLELIB_PROFILE=book python -m stylelib.bench compare --size 256",
    )
    parser.add_argument("method", choices=[*sorted(BENCHMARKS), "compare"],
                        help="one method against its floor, or compare: every method on the "
                             "comparison's pairs (chapter 7's table)")
    parser.add_argument("--size", type=int, default=256, help="long side in pixels (256)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (2)")
    parser.add_argument("--backbone", default=None,
                        help="a name in stylelib.backbones.SOURCES (default: the default one)")
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: auto)")
    parser.add_argument("--methods", nargs="+", choices=list(comparison.methods()), default=None,
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
    rows = BENCHMARKS[args.method](args.size, args.repeat, args.warmup, args.backbone, args.device)
    width = max(len(label) for label, _ in rows)
    print(f"{args.method} benchmark")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    main()
