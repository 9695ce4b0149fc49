"""Training the painting prior of :mod:`stylelib.diffusion` (DDPM's noise-prediction loss on
painting crops, resumable) and its command, ``python -m stylelib train prior``; apart so that
SDEdit loads no training code.
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

from stylelib import assets
from stylelib.data import PhotoCrops, batches_from, default_workers, photo_files
from stylelib.diffusion import (
    KIND,
    PRIOR_CHANNELS,
    PRIOR_PAINTING,
    PRIOR_STEPS,
    PaintingPrior,
    as_timesteps,
    check_side,
    config_json,
    draw_noise,
    load_prior,
    prior_path,
    prior_unet,
    sample,
    save_prior,
    to_model,
)
from stylelib.distributed import rank_part, world
from stylelib.errors import StylelibError, check_int, check_number
from stylelib.images import check_size
from stylelib.profiles import pick_device, seeded
from stylelib.training import Plan, TrainResult, fit, step_seed
from stylelib.training_commands import (
    add_training_arguments,
    final_losses,
    publish,
    run_fields,
    weights_output,
)


def denoising_loss(prior: PaintingPrior, images: torch.Tensor, seed: int) -> torch.Tensor:
    """DDPM's simple objective on ``[B, 3, H, W]`` images in [0, 1]: the mean squared error of
    the predicted noise, at a uniformly random timestep per image (drawn from ``seed``).
    Under ``torchrun`` ``images`` is this rank's share of the global batch: timesteps and noise
    are drawn for the whole batch and each rank keeps the rows of its images, so the run equals
    one process's on any number of ranks."""
    generator = torch.Generator().manual_seed(seed)
    total = len(prior.schedule.alphas_cumprod)
    whole = images.shape[0] * world().size
    drawn = torch.randint(total, (whole,), generator=generator)
    t = as_timesteps(rank_part(drawn).to(images.device))
    x0 = to_model(images)
    noise = rank_part(draw_noise(x0.new_empty((whole, *x0.shape[1:])), generator))
    return F.mse_loss(prior(prior.schedule.add_noise(x0, noise, t), t), noise)


def train_prior(
    paintings: Sequence[str | Path] | str | Path,
    *,
    steps: int,
    prior: PaintingPrior | None = None,
    size: int = 32,
    scale: int | None = 256,
    batch_size: int = 16,
    lr: float = 2e-4,
    warmup: int = 100,
    device: str | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 200,
    seed: int = 0,
    progress: bool = True,
    minutes: float | None = None,
    preview: int = 0,
    preview_every: int = 100,
    preview_steps: int = 25,
    workers: int | None = None,
) -> TrainResult[PaintingPrior]:
    """Train a :class:`PaintingPrior` with DDPM's noise-prediction objective on painting crops.

    Each step draws ``batch_size`` random ``size``-pixel crops of ``paintings`` (a folder or a
    list of files) after resizing each painting to a long side of ``scale``, so the prior
    learns brush strokes at the scale it will later paint photos at. ``prior`` defaults to
    ``PaintingPrior()`` initialised from ``seed``. With ``checkpoint``, the state is saved every
    ``checkpoint_every`` steps and at the end, and an existing checkpoint resumes up to
    ``steps`` in total: crops, timesteps and noise depend only on ``(seed, step)``, so a resumed
    run equals an uninterrupted one. ``minutes`` ends this call early once that much time has
    passed, with a checkpoint at the step reached (pass ``checkpoint``; the same call again
    goes on from there). ``workers`` processes decode the paintings (default
    :func:`~stylelib.data.default_workers`); under ``torchrun`` each process takes its share
    of every batch (:mod:`stylelib.distributed`). ``preview`` > 0 draws that many samples
    from fixed noise every ``preview_every`` steps and at the end. The learning rate rises over
    ``warmup`` steps.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("checkpoint_every", checkpoint_every), ("preview_every", preview_every),
                        ("preview_steps", preview_steps)):
        check_int(value, name)
    check_int(warmup, "warmup", minimum=0)
    check_int(preview, "preview", minimum=0)
    check_int(seed, "seed", minimum=0)
    check_size(scale, "scale")
    check_number(lr, "lr", strict=True)
    files = photo_files(paintings)
    dev = pick_device(device)
    if prior is None:
        prior = seeded(PaintingPrior, seed)
    check_side(size, prior)
    net = prior.to(dev)
    unet_config, schedule_config = config_json(net)
    plan = Plan(
        steps, lr, warmup, Path(checkpoint).expanduser() if checkpoint is not None else None,
        checkpoint_every, {
            "batch_size": batch_size, "size": size, "scale": scale, "lr": lr, "warmup": warmup,
            "seed": seed, "paintings": len(files), "unet": unet_config,
            "schedule": schedule_config,
        }, KIND, preview_every, progress, minutes,
    )
    crops = PhotoCrops(files, size, seed, scale)

    def batches(done: int) -> Iterable[tuple[int, torch.Tensor]]:
        return zip(itertools.count(done),
                   batches_from(crops, batch_size, done, steps,
                                default_workers(dev, workers)),
                   strict=False)

    def step(batch: tuple[int, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        index, images = batch
        loss = denoising_loss(net, images.to(dev), step_seed(seed, index))
        return loss, {"loss": loss.item()}

    def draw() -> torch.Tensor:
        return sample(net, preview, preview_steps, seed, size)

    return fit(net, torch.optim.Adam(net.parameters(), lr=lr), plan, batches, step,
               preview=draw if preview else None)


# --------------------------------------------------------------------------- training command


def _parser() -> argparse.ArgumentParser:
    """The command's options: the painting, the options every training command shares, and the
    UNet's widths."""
    parser = argparse.ArgumentParser(
        prog="python -m stylelib train prior",
        description="Train a small pixel-space diffusion prior on crops of one painting.",
        epilog=f"example: python -m stylelib train prior {PRIOR_PAINTING} "
               f"--steps {PRIOR_STEPS}",
    )
    parser.add_argument("painting", nargs="?", default=None,
                        help=f"painting: a book image name ({PRIOR_PAINTING}) or an image file "
                             "(its prior is then written beside the current folder's files); "
                             "--paintings DIR trains on a whole folder instead")
    add_training_arguments(parser, steps=PRIOR_STEPS, size=32, batch_size=32, lr=2e-4,
                           what="prior", reads=("paintings",))
    parser.add_argument("--channels", default=",".join(map(str, PRIOR_CHANNELS)),
                        help=argparse.SUPPRESS)  # UNet widths; tests train a tiny one
    return parser


def _paintings(name: str | None, folder: Path | None) -> tuple[list[Path], str, Path]:
    """The painting files, their credit line, and where their prior goes by default (the
    current folder for a reader's own file or ``--paintings`` folder, ``stylelib/weights`` for
    a book image)."""
    if folder is not None:
        if name is not None:
            raise StylelibError(f"Give one painting ({name}) or --paintings {folder}, not both.")
        files = photo_files(folder, "paintings")
        called = folder.expanduser().resolve().name
        return (files, f"{len(files)} paintings of the folder {called}: the reader's own",
                Path(f"prior_{called}.safetensors"))
    name = name or PRIOR_PAINTING
    own = Path(name).expanduser()
    if own.is_file():
        return ([own], f"{own.name}: the reader's own painting",
                Path(f"prior_{own.stem}.safetensors"))
    asset = assets.resolve(name)
    return ([assets.fetch(name)], f"{asset.name}: {asset.credit} ({asset.licence})",
            prior_path(Path(asset.name).stem))


def _card(result: TrainResult[PaintingPrior], args: argparse.Namespace, credit: str,
          earlier: dict[str, str]) -> dict[str, str]:
    """The model card of a finished run (``earlier``: the card of the weights it started from)."""
    config = result.net.unet.config
    parameters = sum(p.numel() for p in result.net.parameters())
    return {
        "model": f"DDPM noise-prediction UNet (diffusers UNet2DModel, no attention, channels "
                 f"{tuple(config['block_out_channels'])}, {config['layers_per_block']} layers "
                 f"per block, {parameters / 1e6:.2f} M parameters), linear 1000-step schedule; "
                 "stylelib.diffusion.PaintingPrior, fp16",
        "painting": credit,
        "data": f"random {args.size} px crops of "
                + ("these paintings, each" if args.paintings else "this one painting")
                + f" resized to a long side of {args.scale} px",
        **run_fields(result, f"batch {args.batch_size}, lr {args.lr} (warm-up 100), seed "
                     f"{args.seed}", earlier, args.device),
        "loss": f"{final_losses(result.history, ['loss'], 100)['loss']:.4f} (noise-prediction "
                "MSE, mean of the last 100 steps)",
        "licence": "weights: MIT, like the code; the painting's own licence is in 'painting'",
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Train (or resume) a painting prior on one painting and write its weights and model card."""
    args = _parser().parse_args(argv)
    files, credit, default_out = _paintings(args.painting, args.paintings)
    out = weights_output(args.out, default_out)
    checkpoint = out.with_name(f"{out.stem}.checkpoint.safetensors")
    channels = tuple(int(c) for c in args.channels.split(","))
    earlier: dict[str, str] = {}
    if args.start_from:
        prior = load_prior(args.start_from, "cpu")
        earlier = prior.card
    else:
        prior = seeded(lambda: PaintingPrior(prior_unet(channels, 2, args.size,
                                                        math.gcd(32, *channels))), args.seed)
    result = train_prior(
        files, steps=args.steps, prior=prior, size=args.size,
        scale=args.scale, batch_size=args.batch_size, lr=args.lr, device=args.device,
        checkpoint=checkpoint, checkpoint_every=250, seed=args.seed, minutes=args.minutes,
        workers=args.workers,
    )
    card = _card(result, args, credit, earlier)
    publish(lambda fields: save_prior(result.net, out, dict(fields)), card)
