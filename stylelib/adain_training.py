"""Training an AdaIN decoder: the paper's loss, :func:`train_decoder`, and the command that trains
the bundled decoder (``python -m stylelib train adain``). Kept apart from
:mod:`stylelib.adain` so the method reads without the training machinery it never runs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import DataLoader

from stylelib import data
from stylelib.adain import (
    DEEPEST,
    ENCODER_LAYERS,
    KIND,
    AdaIN,
    Decoder,
    adain,
    load_decoder,
    save_decoder,
    weights_path,
)
from stylelib.backbones import FeatureExtractor
from stylelib.data import PhotoCrops, batches_from, default_workers, photo_files
from stylelib.errors import check_int, check_number
from stylelib.images import check_image, check_size
from stylelib.losses import LossTerms, gram_matrix, mean_std_loss, structure_loss, style_loss
from stylelib.profiles import pick_device, seeded
from stylelib.training import Plan, TrainResult, fit
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

PAINTING_REPEATS = 10
"""With photographs among the training styles (``--photo-styles``), each painting stands this
many times in the pool beside each photograph once: about a quarter of the style crops are
paintings, the rest far more textures and palettes than the collection's 32 paintings hold."""

STRUCTURE_LAYERS = ("relu2_1", "relu3_1")
"""Where the optional structure term compares output and photo: shallow enough to hold edges
at the scale SSIM looks at, deep enough to leave the painting's brush marks to the style term."""
GRAM_LAYERS = ENCODER_LAYERS
"""Where the optional Gram term compares output and painting: every layer the encoder has."""


@dataclass
class DecoderTerms(LossTerms):
    """The decoder's training terms: the paper's, plus the optional identity, structure and
    Gram terms."""

    identity: torch.Tensor
    structure: torch.Tensor
    gram: torch.Tensor


def training_loss(
    model: AdaIN, content: torch.Tensor, style: torch.Tensor, content_weight: float = 1.0,
    style_weight: float = 10.0, identity_weight: float = 0.0, structure_weight: float = 0.0,
    gram_weight: float = 0.0,
) -> DecoderTerms:
    """The paper's loss on a batch of photo-painting pairs: the decoded AdaIN target,
    encoded again, should give the target back at relu4_1 (content, mean squared error)
    and the painting's means and standard deviations at relu1_1 … relu4_1 (style).

    ``identity_weight`` adds an identity term (Park & Lee 2019): the photos' own features,
    decoded, should give the photos back (pixel mean squared error). The paper has none; it
    teaches a briefly trained decoder to invert the encoder, colours included, much sooner.

    ``structure_weight`` adds a structure term: at :data:`STRUCTURE_LAYERS`, the output's
    features and the photo's, each normalised per channel (:func:`~stylelib.losses.structure_loss`),
    should agree. The paper's content term compares the output with the AdaIN target at
    relu4_1 only, where a 16 x 16 block of pixels is one position; decoders trained on it alone
    kept too little of the photo's edges (SSIM 0.2 on chapter 5's pairs).

    ``gram_weight`` adds a Gram term: at :data:`GRAM_LAYERS`, the output's Gram matrices should
    be the painting's (relative squared error, :func:`~stylelib.losses.style_loss`, in float32).
    Means and standard deviations leave out how channels vary together, which the Gram matrices
    of Gatys's loss and of the course's metrics count.
    """
    with torch.no_grad():
        style_features = _encoded(model, style)
        photo_features = _encoded(model, content)
        content_features = photo_features[DEEPEST]
        target = adain(content_features, style_features[DEEPEST])
    features = _encoded(model, model.decoder(target))
    content_term = F.mse_loss(features[DEEPEST], target)
    style_term = torch.stack(
        [mean_std_loss(features[layer], style_features[layer]) for layer in ENCODER_LAYERS]
    ).sum()
    identity_term = content_term.new_zeros(())
    if identity_weight > 0:
        height, width = content.shape[-2:]
        rebuilt = model.decoder(content_features)[..., :height, :width]
        identity_term = F.mse_loss(rebuilt, content)
    structure_term = content_term.new_zeros(())
    if structure_weight > 0:
        structure_term = torch.stack([structure_loss(features[layer], photo_features[layer])
                                      for layer in STRUCTURE_LAYERS]).sum()
    gram_term = content_term.new_zeros(())
    if gram_weight > 0:
        with torch.autocast(content.device.type, enabled=False):
            gram_term = torch.stack([
                style_loss(features[layer], gram_matrix(style_features[layer]))
                for layer in GRAM_LAYERS]).sum()
    total = (content_weight * content_term + style_weight * style_term
             + identity_weight * identity_term + structure_weight * structure_term
             + gram_weight * gram_term)
    return DecoderTerms(total, content_term, style_term, total.new_zeros(()), identity_term,
                        structure_term, gram_term)


def _encoded(model: AdaIN, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """``model.encode(image)`` in float32, whatever precision the encoder ran in: the means,
    standard deviations and squared errors of the loss lose too much in bfloat16."""
    return {layer: feature.float() for layer, feature in model.encode(image).items()}


def train_decoder(
    photos: Sequence[str | Path] | str | Path,
    paintings: Sequence[str | Path] | str | Path,
    *,
    steps: int,
    batch_size: int = 8,
    size: int = 256,
    scale: int | None = None,
    content_weight: float = 1.0,
    style_weight: float = 10.0,
    identity_weight: float = 0.0,
    structure_weight: float = 0.0,
    gram_weight: float = 0.0,
    recolour: bool = False,
    lr: float = 1e-4,
    warmup: int = 100,
    cooldown: int = 0,
    bf16: bool = False,
    workers: int | None = None,
    backbone: str | None = None,
    device: str | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 200,
    seed: int = 0,
    start_from: str | Path | None = None,
    progress: bool = True,
    minutes: float | None = None,
    preview: tuple[torch.Tensor, torch.Tensor] | None = None,
    preview_every: int = 50,
    callback: Callable[[int, dict[str, float], Decoder], None] | None = None,
) -> TrainResult[Decoder]:
    """Train a :class:`~stylelib.adain.Decoder` for ``backbone`` on random crops of photos and
    paintings.

    Each step pairs ``batch_size`` random ``size``-pixel photo crops with as many painting crops
    (:class:`~stylelib.data.PhotoCrops`, a second seed stream) and takes an Adam step on
    :func:`training_loss` (the paper: style weight 10, lr 1e-4, batch 8). ``scale`` is the
    long side images are resized to before cropping. The learning rate warms up over ``warmup``
    steps and falls linearly towards 0 over the last ``cooldown``; ``bf16`` runs the encoder
    and decoder passes in bfloat16 autocast (the loss itself in float32); ``workers`` processes
    decode the images (default :func:`~stylelib.data.default_workers`), and under ``torchrun``
    each process takes its share of every batch (:mod:`stylelib.distributed`). With
    ``checkpoint``, the decoder and Adam's state are saved every ``checkpoint_every`` steps and
    resumed on the next call, ending bit for bit where an uninterrupted run would.
    ``start_from`` (a decoder's weights file) trains that decoder further instead of random
    weights, e.g. with another style weight (a fresh optimiser; pick a new ``seed`` so the crops
    differ). ``recolour`` turns each style crop's hue by a random
    angle, so that the decoder meets many more palettes than the collection has paintings; most
    are greens, blues and purples that no training painting has, and decoders trained on them
    drew a magenta-green cast that a few hundred steps without it removed (chapter 5).
    ``minutes`` ends this call early once that much time has passed, with a checkpoint at the
    step reached (pass ``checkpoint``; the same call again goes on from there).
    ``preview`` (content, style) is stylised every ``preview_every`` steps and at the end;
    ``callback(step, losses, decoder)`` runs after each step.
    """
    _check_numbers({"steps": steps, "batch_size": batch_size, "checkpoint_every": checkpoint_every,
                    "preview_every": preview_every}, warmup, cooldown, size, scale, lr,
                   {"content_weight": content_weight, "style_weight": style_weight,
                    "identity_weight": identity_weight, "structure_weight": structure_weight,
                    "gram_weight": gram_weight},
                   seed)
    if preview is not None:
        preview = (check_image(preview[0], "preview content"),
                   check_image(preview[1], "preview style"))
    photo_list = photo_files(photos)
    painting_list = photo_files(paintings, "paintings")
    dev = pick_device(device)
    model = _model_to_train(backbone, dev, start_from, seed)
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=lr)
    settings: dict[str, object] = {
        "batch_size": batch_size, "size": size, "scale": scale, "content_weight": content_weight,
        "style_weight": style_weight, "identity_weight": identity_weight,
        "structure_weight": structure_weight, "gram_weight": gram_weight,
        "recolour": recolour, "lr": lr,
        "warmup": warmup, "cooldown": cooldown, "bf16": bf16, "seed": seed,
        "backbone": model.encoder.backbone, "photos": len(photo_list),
        "paintings": len(painting_list),
        "start_from": None if start_from is None else Path(start_from).name,
    }
    plan = Plan(steps, lr, warmup, Path(checkpoint).expanduser() if checkpoint else None,
                checkpoint_every, settings, KIND, preview_every, progress, minutes, cooldown)
    batches = _crop_pairs(photo_list, painting_list, size=size, scale=scale,
                          batch_size=batch_size, steps=steps, seed=seed, recolour=recolour,
                          workers=default_workers(dev, workers))

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            terms = training_loss(model, batch[0].to(dev), batch[1].to(dev), content_weight,
                                  style_weight, identity_weight, structure_weight, gram_weight)
        return terms.total, terms.as_floats()

    shown = preview
    return fit(model.decoder, optimizer, plan, batches, step, callback=callback,
               preview=None if shown is None else lambda: model.prepare(*shown).render())


def _check_numbers(counts: Mapping[str, int], warmup: int, cooldown: int, size: int,
                   scale: int | None, lr: float, weights: Mapping[str, float], seed: int) -> None:
    """Refuse the first bad number among :func:`train_decoder`'s arguments with one clear
    error: ``counts`` must be positive integers, ``weights`` non-negative numbers."""
    for name, value in counts.items():
        check_int(value, name)
    check_int(warmup, "warmup", minimum=0)
    check_int(cooldown, "cooldown", minimum=0)
    check_size(size)
    check_size(scale, "scale")
    check_number(lr, "lr", strict=True)
    for name, weight in weights.items():
        check_number(weight, name)
    check_int(seed, "seed", minimum=0)


def _model_to_train(backbone: str | None, device: torch.device, start_from: str | Path | None,
                    seed: int) -> AdaIN:
    """The frozen encoder for ``backbone`` and the decoder to train, both on ``device``: the
    weights of ``start_from``, else random ones drawn from ``seed``. Its card names the
    backbone."""
    encoder = FeatureExtractor(ENCODER_LAYERS, backbone).to(device)
    decoder = (load_decoder(start_from) if start_from is not None
               else seeded(Decoder, seed)).to(device)
    decoder.card = {"backbone": encoder.backbone}
    return AdaIN(decoder, encoder)


def _crop_pairs(
    photos: list[Path], paintings: list[Path], *, size: int, scale: int | None, batch_size: int,
    steps: int, seed: int, recolour: bool, workers: int,
) -> Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """``batches(done)`` for :func:`~stylelib.training.fit`: from step ``done`` on, batches of
    photo crops (seed stream ``seed``) beside as many painting crops (stream ``(seed, 1)``, hues
    turned at random with ``recolour``), the same crops for the same step on every run."""

    def batches(done: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        def crops(files: list[Path], stream: int | tuple[int, ...], recoloured: bool = False
                  ) -> DataLoader[torch.Tensor]:
            return batches_from(PhotoCrops(files, size, stream, scale, recolour=recoloured),
                                batch_size, done, steps, workers)

        return zip(crops(photos, seed), crops(paintings, (seed, 1), recolour), strict=True)

    return batches


# --------------------------------------------------------------------------- training command


def main(argv: Sequence[str] | None = None) -> None:
    """Train (or resume) the bundled decoder on the training collection; write it with a card."""
    args = _parser().parse_args(argv)
    out = weights_output(args.out, weights_path())
    photos = images(args.photos, data.training_photos, "photos")
    paintings = images(args.paintings, data.training_paintings, "paintings")
    styles = paintings * PAINTING_REPEATS + photos if args.photo_styles else paintings
    earlier = load_decoder(args.start_from).card if args.start_from else {}
    result = train_decoder(
        photos, styles, steps=args.steps, batch_size=args.batch_size, size=args.size,
        scale=args.scale, style_weight=args.style_weight,
        identity_weight=args.identity_weight, structure_weight=args.structure_weight,
        gram_weight=args.gram_weight,
        recolour=args.recolour, lr=args.lr,
        cooldown=args.cooldown, bf16=args.bf16, workers=args.workers,
        backbone=args.backbone, device=args.device,
        checkpoint=out.with_name(f"{out.stem}.checkpoint.safetensors"), seed=args.seed,
        start_from=args.start_from, minutes=args.minutes,
    )
    card = _card(args, result, len(photos), len(paintings), earlier)
    publish(lambda fields: save_decoder(result.net, out, fields), card)


def _parser() -> argparse.ArgumentParser:
    """The training command's options: the shared ones, then the decoder's own."""
    parser = argparse.ArgumentParser(
        prog="python -m stylelib train adain",
        description="Train an AdaIN decoder on the book's photo and painting collection.",
        epilog="example: python -m stylelib train adain --steps 3000 --size 128",
    )
    add_training_arguments(parser, steps=3000, size=128, batch_size=8, lr=5e-4, what="decoder",
                           reads=("photos", "paintings"))
    add_schedule_arguments(parser)
    parser.add_argument("--style-weight", type=float, default=10.0)
    parser.add_argument("--identity-weight", type=float, default=0.0,
                        help="weight of the pixel identity term (0: the paper's loss)")
    parser.add_argument("--structure-weight", type=float, default=0.0,
                        help="weight of the structure term: output and photo features "
                             f"normalised per channel at {'+'.join(STRUCTURE_LAYERS)} "
                             "(0: the paper's loss)")
    parser.add_argument("--gram-weight", type=float, default=0.0,
                        help="weight of the Gram term: output and painting Gram matrices at "
                             f"{GRAM_LAYERS[0]}-{GRAM_LAYERS[-1]} (0: the paper's loss)")
    parser.add_argument("--recolour", action="store_true",
                        help="turn each style crop's hue by a random angle: more palettes, "
                             "mostly ones no painting has, which gave decoders a colour cast")
    parser.add_argument("--photo-styles", action="store_true",
                        help="take style crops from the photos too, beside the paintings "
                             f"(each painting counted {PAINTING_REPEATS} times)")
    parser.add_argument("--backbone", default="vgg19-caffe-normalised",
                        help="the encoder (default: the paper's normalised VGG-19, as the "
                             "bundled decoder)")
    return parser


def _card(args: argparse.Namespace, result: TrainResult[Decoder], photos: int, paintings: int,
          earlier: Mapping[str, str]) -> dict[str, str]:
    """The trained decoder's model card: what it learnt from (``photos`` and ``paintings``
    counted), how (the command's ``args``), for how long and to what losses; a run that went on
    from ``earlier``'s weights adds its own to that card's."""
    return {
        "model": "AdaIN decoder (Huang & Belongie 2017; stylelib.adain.Decoder), fp16",
        "backbone": result.net.card["backbone"],
        "data": described(args.photos, photos, f"{photos} photos of the book's training "
                          "collection (ImageNet samples, BSD, Urban100, Kodak, Set5/14, ...; "
                          "research licences) without the book's content photos", "photos")
                + ", and " + described(args.paintings, paintings, f"the collection's "
                                       f"{paintings} public-domain paintings (none of "
                                       f"{', '.join(data.HELD_OUT_STYLES)})", "paintings")
                + (f"; style crops from the paintings (each counted {PAINTING_REPEATS} times) "
                   "and the photos" if args.photo_styles else "")
                + f"; random {args.size} px crops of images resized to {args.scale} px",
        **run_fields(
            result, f"batch {args.batch_size} photo-painting pairs, {schedule(args)}, content "
            f"weight 1, style weight {args.style_weight}"
            + (f", identity weight {args.identity_weight}" if args.identity_weight else "")
            + (f", structure weight {args.structure_weight} at {'+'.join(STRUCTURE_LAYERS)}"
               if args.structure_weight else "")
            + (f", Gram weight {args.gram_weight} at {GRAM_LAYERS[0]}-{GRAM_LAYERS[-1]}"
               if args.gram_weight else "")
            + (", painting hues turned at random" if args.recolour else "")
            + (", photos among the styles" if args.photo_styles else ""),
            earlier, args.device),
        "losses": json.dumps(final_losses(result.history, _reported_terms(args)))
                  + " (content: MSE at relu4_1; style: mean/std error over relu1_1-relu4_1; "
                  "identity: pixel MSE of the rebuilt photos; structure: MSE of normalised "
                  "features; gram: relative Gram error; mean of the last 50 steps)",
        "licence": "weights: MIT, like the code",
    }


def _reported_terms(args: argparse.Namespace) -> tuple[str, ...]:
    """The loss terms a card reports: the paper's two and each optional one that was on."""
    optional = (("identity", args.identity_weight), ("structure", args.structure_weight),
                ("gram", args.gram_weight))
    return ("content", "style", *(name for name, weight in optional if weight))
