"""The feed-forward style networks this project trained and ships in ``stylelib/weights/``.

:func:`load` returns one ready to stylise. They were trained on
:func:`stylelib.data.training_photos` (the shared training collection minus every photo the
book uses as a content image, so the chapters always show them photos they never saw).
``python -m stylelib train fast STYLE`` trains one more, resumably, and writes its fp16
weights with a model card.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from stylelib import assets, data, fast
from stylelib.backbones import default_backbone
from stylelib.errors import StylelibError
from stylelib.images import load_image
from stylelib.losses import CONTENT_LAYERS, STYLE_LAYERS
from stylelib.training import TrainResult
from stylelib.training_commands import (
    add_schedule_arguments,
    add_training_arguments,
    described,
    final_losses,
    images,
    publish,
    run_fields,
    schedule,
    weights_output,
)

WEIGHTS_DIR = Path(__file__).parent / "weights"
STYLES = ("starry_night", "the_scream", "great_wave")
"""The paintings with a bundled network (all public domain; see each model card)."""


def weights_path(style: str) -> Path:
    """Where the bundled network for ``style`` is stored."""
    return WEIGHTS_DIR / f"fast_{style}.safetensors"


def available() -> list[str]:
    """The styles whose bundled network is present, in :data:`STYLES` order."""
    return [style for style in STYLES if weights_path(style).is_file()]


def load(style: str, device: str | torch.device = "cpu") -> fast.TransformerNet:
    """The bundled network for ``style`` (float32, eval mode, model card in ``net.card``)."""
    if style not in STYLES:
        raise StylelibError(
            f"No bundled network for style {style!r}: choose one of {', '.join(STYLES)}, or "
            "train your own with stylelib.fast.train."
        )
    return fast.load_weights(weights_path(style)).to(device)


def main(argv: Sequence[str] | None = None) -> None:
    """Train (or resume) one bundled network and write its weights and model card."""
    args = _parser().parse_args(argv)
    own = Path(args.style).expanduser()
    out = weights_output(args.out, Path(f"fast_{own.stem}.safetensors") if own.is_file()
                         else weights_path(args.style))
    checkpoint = out.with_name(f"{out.stem}.checkpoint.safetensors")
    photos = images(args.photos, data.training_photos, "photos")
    earlier = fast.load_weights(args.start_from).card if args.start_from else {}
    style_side = max(args.scales) if args.scales else args.style_size
    result = fast.train(
        load_image(args.style, style_side), photos, steps=args.steps,
        batch_size=args.batch_size, size=args.size,
        scale=None if args.scales else args.scale, scales=args.scales or (),
        style_weight=args.style_weight, tv_weight=args.tv_weight,
        temporal_weight=args.temporal_weight, content_layers=args.content_layers,
        style_layers=args.style_layers,
        backbone=args.backbone, lr=args.lr, cooldown=args.cooldown, bf16=args.bf16,
        device=args.device, checkpoint=checkpoint, seed=args.seed, start_from=args.start_from,
        workers=args.workers,
        minutes=args.minutes,
    )
    card = _card(args, result, len(photos), earlier, style_side)
    publish(lambda fields: fast.save_weights(result.net, out, fields), card)


def _carried(before: str | None, now: str, change: str, unchanged_ends: tuple[str, ...]) -> str:
    """A card field after a run that went on from earlier weights: the earlier card's text where
    the run changed nothing it says (it equals ``now`` or ends with one of ``unchanged_ends``),
    else that text followed by ``change``; ``now`` for a first run."""
    if before is None or before == now or before.endswith(unchanged_ends):
        return before or now
    return f"{before}; then {change}"


def _card(args: argparse.Namespace, result: TrainResult[fast.TransformerNet], photos: int,
          earlier: Mapping[str, str], style_side: int) -> dict[str, str]:
    """The trained network's model card: the painting, the photos, how (``args``), for how
    long and to what losses; a run that went on from ``earlier``'s weights adds to its card
    (the photo and painting sizes too, where they changed)."""
    own = Path(args.style).expanduser()
    if own.is_file():
        credit = f"{own.name}: the reader's own painting"
    else:
        asset = assets.resolve(args.style)
        credit = f"{asset.name}: {asset.credit} ({asset.licence})"
    sides = (f"long sides {', '.join(map(str, args.scales))} px in turn, batch by batch, each "
             "batch against the painting at the same long side" if args.scales
             else f"a long side of {args.scale} px")
    collection = described(args.photos, photos, f"{photos} photos of the book's training "
                           "collection (ImageNet samples, BSD, Urban100, Kodak, Set5/14, ...; "
                           "research licences) without the book's content photos", "photos")
    trained_on = f"{collection}, resized to {sides}; random crops (their size is under 'training')"
    painting_sides = ", ".join(map(str, args.scales)) if args.scales else str(style_side)
    painting = f"{credit}, long side{'s' if args.scales else ''} {painting_sides} px"
    return {
        "model": "Johnson et al. 2016 TransformerNet (stylelib.fast), fp16",
        "style": _carried(earlier.get("style"), painting, f"{painting_sides} px",
                          tuple(f"{lead} {painting_sides} px"
                                for lead in ("long side", "long sides", "then"))),
        "data": _carried(earlier.get("data"), trained_on, f"{photos} photos, resized to {sides}",
                         (f"resized to {sides}",)),
        **run_fields(result, f"batch {args.batch_size} of {args.size} px crops, {schedule(args)}, "
                     f"content weight 1 at {'+'.join(args.content_layers)}, style weight "
                     f"{args.style_weight} at {'+'.join(args.style_layers)}"
                     + (f", total variation {args.tv_weight}" if args.tv_weight else "")
                     + (f", temporal weight {args.temporal_weight} (made camera motion)"
                        if args.temporal_weight else "")
                     + f", loss network {args.backbone or default_backbone()}",
                     earlier, args.device),
        "style_weight": str(args.style_weight),
        "losses": json.dumps(final_losses(
            result.history, ("content", "style", "temporal")[:3 if args.temporal_weight else 2]))
                  + " (relative errors, mean of the last 50 steps)",
        "licence": "weights: MIT, like the code; the style image's own licence is in 'style'",
    }


def _parser() -> argparse.ArgumentParser:
    """The command's options: the painting, the options every training command shares, and
    the perceptual loss's weights and layers."""
    parser = argparse.ArgumentParser(
        prog="python -m stylelib train fast",
        description="Train a feed-forward style network on the training collection.",
        epilog="example: python -m stylelib train fast starry_night --steps 2000",
    )
    parser.add_argument("style", help="the painting: a book image name, e.g. starry_night, or an "
                                      "image file (its network is then written to the current "
                                      "folder)")
    add_training_arguments(parser, steps=2000, size=192, batch_size=4, lr=1e-3,
                           what="network", reads=("photos",))
    parser.add_argument("--style-size", type=int, default=256, help="style image long side")
    parser.add_argument("--scales", type=int, nargs="+", default=None,
                        help="train at several photo sizes batch by batch, each against the "
                             "painting at the same size (instead of --scale and --style-size)")
    parser.add_argument("--style-weight", type=float, default=10.0)
    add_schedule_arguments(parser)
    parser.add_argument("--tv-weight", type=float, default=0.0,
                        help="total-variation weight, against high-frequency noise (0)")
    parser.add_argument("--temporal-weight", type=float, default=0.0,
                        help="weight of the temporal term: the network's picture of a crop moved "
                             "by a made camera motion should be its picture moved (0; video)")
    parser.add_argument("--content-layers", nargs="+", default=list(CONTENT_LAYERS),
                        help=f"({' '.join(CONTENT_LAYERS)}; Johnson et al.: relu2_2)")
    parser.add_argument("--style-layers", nargs="+", default=list(STYLE_LAYERS),
                        help=f"({' '.join(STYLE_LAYERS)})")
    parser.add_argument("--backbone", default=None,
                        help="loss network (default: the default backbone)")
    return parser
