"""``python -m stylelib``: stylise an image from the shell with any of the book's methods, or run
a benchmark.

Every argument is checked before any work starts; a bad one ends the command with one line on
stderr (exit status 2) and no output file.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from stylelib import adain, assets, bench, bundled, fast, gatys
from stylelib.errors import StylelibError, command
from stylelib.files import same_file
from stylelib.images import check_output, load_image, save_image
from stylelib.profiles import get_profile, pick_device

EXAMPLES = """examples:
  python -m stylelib stylize photo.jpg starry_night -o out.png
  python -m stylelib stylize photo.jpg the_scream -o out.png --method fast --size 1024
  python -m stylelib stylize photo.jpg my_painting.jpg -o out.png --steps 300 --style-weight 30
  python -m stylelib stylize photo.jpg my_painting.jpg -o out.png --method adain --alpha 0.7
  python -m stylelib stylize photo.jpg starry_night -o out.png --method sdedit --strength 0.4
  python -m stylelib bench gatys --size 256

CONTENT and STYLE are image files or names of the book's images (e.g. tubingen, starry_night);
for --method fast, STYLE is a bundled network's painting or a .safetensors file it trained;
for --method sdedit, STYLE is starry_night (the bundled prior) or a prior's .safetensors file
(python -m stylelib.diffusion trains one)."""

Method = Callable[[argparse.Namespace, torch.Tensor, torch.device], torch.Tensor]


def _gatys(args: argparse.Namespace, content: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Optimise the image (chapter 3)."""
    style = load_image(args.style, args.size, device=device)
    return gatys.stylize(content, style, steps=args.steps or 100,
                         style_weight=args.style_weight, scales=args.scales).image


def _fast(args: argparse.Namespace, content: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One pass of a feed-forward network (chapter 4): bundled, or a trained weights file."""
    is_file = Path(args.style).suffix == ".safetensors"
    net = fast.load_weights(args.style).to(device) if is_file else bundled.load(args.style, device)
    return fast.stylize(net, content)


def _adain(args: argparse.Namespace, content: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One AdaIN pass with the bundled decoder (chapter 5), any style."""
    model = adain.pretrained(device)
    style = load_image(args.style, args.size, device=device)
    return adain.stylize(model, content, style, alpha=args.alpha)


def _sdedit(args: argparse.Namespace, content: torch.Tensor, device: torch.device) -> torch.Tensor:
    """SDEdit with a painting prior (chapter 6): the bundled one by its painting's name, or a
    prior's weights file."""
    from stylelib import diffusion  # diffusers takes seconds to import: only when asked for

    if Path(args.style).suffix == ".safetensors":
        prior = diffusion.load_prior(args.style, str(device))
    elif Path(args.style).stem == diffusion.PRIOR_PAINTING:
        prior = diffusion.pretrained(str(device))
    else:
        stem = Path(args.style).stem
        raise StylelibError(
            f"No bundled painting prior for {args.style!r}: the book ships one for "
            f"{diffusion.PRIOR_PAINTING}. Train one with `python -m stylelib.diffusion "
            f"{shlex.quote(args.style)} --out {shlex.quote(f'prior_{stem}.safetensors')}`, then "
            f"pass prior_{stem}.safetensors as STYLE."
        )
    return diffusion.sdedit(prior, content, args.strength, steps=args.steps or 50)


def _magenta(args: argparse.Namespace, content: torch.Tensor, device: torch.device
             ) -> torch.Tensor:
    """One pass of the pretrained Magenta arbitrary network (chapter 7), any style."""
    from stylelib import magenta  # onnxruntime: only when asked for

    return magenta.stylize(content, load_image(args.style, args.size, device=device))


KNOBS: dict[str, tuple[str, ...]] = {
    "steps": ("gatys", "sdedit"), "style_weight": ("gatys",), "scales": ("gatys",),
    "alpha": ("adain",), "strength": ("sdedit",),
}
"""Which methods each method-specific option applies to: any other method refuses it."""
DEFAULTS = {"style_weight": 10.0, "alpha": 1.0, "strength": 0.5}
"""Values of the options the parser leaves unset (so that a given one can be told apart)."""


def _check_knobs(args: argparse.Namespace) -> None:
    """Reject options the chosen method would ignore, and out-of-range numbers, before loading
    anything."""
    for name, methods in KNOBS.items():
        if getattr(args, name) is not None and args.method not in methods:
            option = "--" + name.replace("_", "-")
            raise StylelibError(
                f"{option} does not apply to --method {args.method} (only to "
                f"{' and '.join(methods)}): drop it, or choose that method."
            )
        if getattr(args, name) is None and name in DEFAULTS:
            setattr(args, name, DEFAULTS[name])
    for name in ("size", "steps", "scales"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise StylelibError(f"--{name} must be a positive integer, got {value}.")
    if args.method == "adain":
        adain.check_alpha(args.alpha)
    if args.method == "sdedit":
        from stylelib import diffusion

        diffusion.check_strength(args.steps or 50, args.strength)


METHODS: dict[str, Method] = {"gatys": _gatys, "fast": _fast, "adain": _adain, "sdedit": _sdedit,
                              "magenta": _magenta}


def _where(source: str) -> list[Path]:
    """The files an input argument may be read from: the path itself, or for a book image name
    its local copies (mirror, download cache)."""
    if Path(source).expanduser().exists():
        return [Path(source).expanduser()]
    try:
        return assets.local_copies(source)
    except StylelibError:
        return []


def _stylize(args: argparse.Namespace) -> None:
    """Check the output path and arguments, stylise, save atomically, report the time."""
    get_profile()  # an unknown $STYLELIB_PROFILE is an error here as in the notebooks
    out = check_output(args.output)
    for role in ("content", "style"):
        given = getattr(args, role)
        if any(same_file(source, out) for source in _where(given)):
            raise StylelibError(
                f"-o {args.output} is the {role} image {given}: writing there would replace "
                "it. Pick another output file name."
            )
    _check_knobs(args)
    device = pick_device(args.device)
    content = load_image(args.content, args.size, device=device)
    started = time.perf_counter()
    result = METHODS[args.method](args, content, device)
    save_image(result, out)
    height, width = result.shape[-2:]
    print(f"{args.method}: wrote {out} ({width}x{height}) in {time.perf_counter() - started:.1f} s"
          f" on {device}")


def parser() -> argparse.ArgumentParser:
    """The command line: ``stylize`` and ``bench`` subcommands."""
    main = argparse.ArgumentParser(
        prog="python -m stylelib", description="Neural style transfer from the shell.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = main.add_subparsers(dest="command", required=True)
    stylize = commands.add_parser(
        "stylize", help="stylise one image", description="Stylise CONTENT like STYLE.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stylize.add_argument("content", help="photo: file or book image name")
    stylize.add_argument("style", help="painting: file or book image name (see --method)")
    stylize.add_argument("-o", "--output", required=True, help="output .png, .jpg or .webp")
    stylize.add_argument("--method", choices=sorted(METHODS), default="gatys",
                         help="gatys (optimise, slow, any style), fast (one pass, bundled "
                              "styles), adain (one pass, any style), sdedit (a painting prior), "
                              "magenta (pretrained, one pass, any style); default gatys")
    stylize.add_argument("--size", type=int, default=512, help="long side in pixels (512)")
    stylize.add_argument("--steps", type=int, default=None,
                         help="gatys: L-BFGS steps (100); sdedit: denoising schedule (50)")
    stylize.add_argument("--style-weight", type=float, default=None,
                         help="gatys: style weight (10)")
    stylize.add_argument("--scales", type=int, default=None,
                         help="gatys: coarse-to-fine levels, each twice the last (default: 1 up "
                              "to 256 px, else from 128-255 px up: 3 at 512 px)")
    stylize.add_argument("--alpha", type=float, default=None,
                         help="adain: 0 keeps the photo, 1 full style (1)")
    stylize.add_argument("--strength", type=float, default=None,
                         help="sdedit: 0 keeps the photo, 1 starts from noise (0.5)")
    stylize.add_argument("--device", default=None, help="cpu, cuda, mps (default: best)")
    stylize.set_defaults(run=_stylize)
    benchmark = commands.add_parser("bench", help="time a method (python -m stylelib.bench)",
                                    add_help=False)
    benchmark.add_argument("rest", nargs=argparse.REMAINDER)
    benchmark.set_defaults(run=lambda args: bench.main(args.rest))
    return main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; bad input prints one ``error:`` line and returns 2."""
    args = parser().parse_args(argv)
    return command(lambda: args.run(args))
