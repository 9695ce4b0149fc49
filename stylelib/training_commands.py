"""What the three training commands (``python -m stylelib train fast|adain|prior``) share:
their common options, the check of ``--out`` before any training, and the model-card fields
and Markdown card they publish beside the weights.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stylelib.data import photo_files
from stylelib.distributed import world
from stylelib.errors import StylelibError
from stylelib.profiles import device_name, pick_device
from stylelib.training import TrainResult


def add_training_arguments(parser: argparse.ArgumentParser, *, steps: int, size: int,
                           batch_size: int, lr: float, what: str,
                           reads: Sequence[str] = ()) -> None:
    """The options every training command shares (``python -m stylelib train
    fast|adain|prior``), each with that command's defaults; ``what`` names the network trained,
    ``reads`` the folders a reader may give instead of the course's collection ("photos",
    "paintings")."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--size", type=int, default=size, help=f"crop side ({size})")
    parser.add_argument("--scale", type=int, default=256,
                        help="long side images are resized to before cropping (256)")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"the global batch: under torchrun it is split over the processes "
                             f"({batch_size})")
    for folder in reads:
        parser.add_argument(f"--{folder}", type=Path, default=None, metavar="DIR",
                            help=f"a folder of your own {folder}, searched with its subfolders "
                                 f"(JPEG, PNG, WebP; default: the course's collection)")
    parser.add_argument("--workers", type=_workers, default=None,
                        help="processes decoding each stream of images beside the training "
                             "(default: 0 on the CPU, 4 on a GPU)")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--seed", type=int, default=0,
                        help="crop order, noise and initial weights (0)")
    parser.add_argument("--start-from", type=Path, default=None,
                        help=f"{what} weights file to train further (its card is carried over)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop after this many minutes with a checkpoint; run the same "
                             "command again to go on")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=None, help="weights file (bundled path)")


def _workers(text: str) -> int:
    """``--workers``: a whole number from 0 up, refused when the command line is parsed."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return int(text)


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the commands whose training ends in a learning-rate cool-down and may run
    in bfloat16 (``train fast`` and ``train adain``)."""
    parser.add_argument("--cooldown", type=int, default=0,
                        help="steps at the end over which the lr falls linearly to 0 (0)")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast: faster on GPUs and CPUs with AVX-512 BF16")


def images(folder: Path | None, collection: Callable[[], list[Path]], what: str) -> list[Path]:
    """The images a command trains on: the reader's ``folder`` (``--photos``, ``--paintings``),
    else the course's ``collection``."""
    return photo_files(folder, what) if folder is not None else collection()


def described(folder: Path | None, count: int, course: str, what: str) -> str:
    """How a model card names the images a run read: the ``course`` collection's words, or the
    reader's folder with the number of images found in it."""
    return (course if folder is None
            else f"{count} {what} of the folder {folder.expanduser().resolve().name}")


def schedule(args: argparse.Namespace) -> str:
    """How :func:`add_schedule_arguments`' options ran, in a model card's words."""
    return (f"lr {args.lr} (warm-up 100"
            + (f", linear cool-down to 0 over the last {args.cooldown} steps"
               if args.cooldown else "") + ")" + (", bfloat16 autocast" if args.bf16 else ""))


def weights_output(path: Path | None, default: Path) -> Path:
    """The ``--out`` of a training command, checked before any training: a ``.safetensors``
    file in an existing folder (weights are never written under another format's name)."""
    out = (path or default).expanduser()
    if out.suffix.lower() != ".safetensors":
        raise StylelibError(
            f"--out {out} would hold weights under a {out.suffix or 'missing'!r} extension: "
            f"name it {out.with_suffix('.safetensors').name} instead."
        )
    if not out.parent.is_dir():
        raise StylelibError(f"--out {out}: folder {out.parent} does not exist; create it first.")
    return out


def run_fields(result: TrainResult[Any], how: str, earlier: Mapping[str, str],
               device: str | None) -> dict[str, str]:
    """The model-card fields every training command writes: what ran (after what the card of
    an ``earlier`` run it started from says), on what hardware, for how long."""
    ranks = world().size
    hardware = device_name(pick_device(device)) + (
        f" x {ranks} processes (torchrun), each with 1/{ranks} of every batch" if ranks > 1
        else "")
    before = earlier.get("hardware", hardware)
    return {
        "training": (f"{earlier['training']}; then " if earlier else "")
                    + f"{result.steps_done} Adam steps, {how}",
        "hardware": before if before.rsplit("; then ", 1)[-1] == hardware
                    else f"{before}; then {hardware}",
        "time": (f"{earlier['time']} + " if earlier else "") + f"{result.seconds / 60:.1f} min",
    }


def final_losses(history: list[dict[str, float]], keys: Iterable[str], last: int = 50
                 ) -> dict[str, float]:
    """The mean of each loss over the last ``last`` training steps (rounded for a card)."""
    tail = history[-last:]
    return {key: round(sum(step[key] for step in tail) / len(tail), 4) for key in keys}


def publish(write: Callable[[Mapping[str, str]], Path], card: Mapping[str, str]) -> None:
    """On rank 0 only (one file however many ``torchrun`` processes trained): write the weights
    with ``write(card)``, which returns their path, then ``card`` as a Markdown model card beside
    them (same name, ``.md``), and print both; the weights' metadata holds the same fields."""
    if not world().main:
        return
    weights = write(card)
    bullets = "".join(f"- **{key}**: {value}\n" for key, value in card.items())
    weights.with_suffix(".md").write_text(
        f"# Model card: {weights.name}\n\nThe same fields are stored in the file's metadata."
        f"\n\n{bullets}", encoding="utf-8")
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and its model card")
    print(bullets, end="")
