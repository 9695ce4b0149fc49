"""Weight files and resumable training for any network the library trains.

Finished weights are fp16 safetensors with a model card as metadata; nothing is ever unpickled.
A checkpoint is fp32 safetensors plus the optimiser's state, and :func:`fit` runs a training
loop that saves one every few steps and, called again, resumes it bit for bit.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from tqdm import tqdm

from stylelib.errors import StoppedError, StylelibError, check_number
from stylelib.files import StateDict, save_safetensors, write_atomically
from stylelib.profiles import device_name, pick_device

Net = TypeVar("Net", bound=nn.Module)
Batch = TypeVar("Batch")


@dataclass(frozen=True)
class WeightKind:
    """What a network is called and which functions write and read its files (for messages)."""

    network: str
    save: str
    load: str
    train: str


def cpu_state(net: nn.Module, dtype: torch.dtype) -> StateDict:
    """The network's tensors on the CPU, contiguous, in ``dtype`` (what safetensors stores)."""
    return {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}


def read_safetensors(path: Path, kind: WeightKind, fix: str | None = None
                     ) -> tuple[StateDict, dict[str, str]]:
    """Tensors and metadata of a safetensors file; anything else is refused, never unpickled.
    ``fix`` replaces the advice for a damaged file (a checkpoint is not downloaded again)."""
    if not path.is_file():
        raise StylelibError(f"No weights file at {path}: check the path.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        advice = fix or (f"download the file again, or save it with {kind.save}")
        raise StylelibError(
            f"{path} is not a readable safetensors file ({error}). stylelib reads weights only "
            f"from safetensors and never unpickles .pt/.pth files, which can run code: {advice}."
        ) from None
    return state, metadata


def load_state(net: nn.Module, state: StateDict, path: Path, kind: WeightKind) -> None:
    """Copy ``state`` into ``net``, with one clear error when it is not this network's."""
    if not all(torch.isfinite(tensor).all() for tensor in state.values()):
        raise StylelibError(
            f"{path} contains NaN or infinite weights: the file is damaged or the training "
            "diverged; use another file."
        )
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        detail = str(error).splitlines()[1].strip()[:200]
        raise StylelibError(
            f"{path} does not hold {kind.network} weights ({detail}): use a file written by "
            f"{kind.save} or {kind.train}."
        ) from None


def save_weights(net: nn.Module, path: str | Path, card: Mapping[str, str]) -> Path:
    """Save ``net`` as fp16 safetensors (half the size) with the model card as metadata."""
    target = Path(path).expanduser()
    not_text = [k for k, v in card.items() if not (isinstance(k, str) and isinstance(v, str))]
    if not_text:
        raise StylelibError(
            f"Model card fields must be strings; {not_text} are not: format them with str()."
        )
    state = cpu_state(net, torch.float16)
    if not all(torch.isfinite(tensor).all() for tensor in state.values()):
        raise StylelibError(
            "Some weights are NaN or too large for fp16 (|w| > 65504): the training diverged; "
            "retrain with a lower lr or lower loss weights."
        )
    save_safetensors(state, target, dict(card))
    return target


def add_training_arguments(parser: argparse.ArgumentParser, *, steps: int, size: int,
                           batch_size: int, lr: float, what: str) -> None:
    """The options every training command shares (``python -m stylelib train
    fast|adain|prior``), each with that command's defaults; ``what`` names the network trained."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--size", type=int, default=size, help=f"crop side ({size})")
    parser.add_argument("--scale", type=int, default=256,
                        help="long side images are resized to before cropping (256)")
    parser.add_argument("--batch-size", type=int, default=batch_size)
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
    hardware = device_name(pick_device(device))
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


def publish(weights: Path, card: Mapping[str, str]) -> None:
    """Write ``card`` as a Markdown model card beside ``weights`` (same name, ``.md``) and
    print both: the training commands store the same fields in the weights' metadata."""
    bullets = "".join(f"- **{key}**: {value}\n" for key, value in card.items())
    weights.with_suffix(".md").write_text(
        f"# Model card: {weights.name}\n\nThe same fields are stored in the file's metadata."
        f"\n\n{bullets}", encoding="utf-8")
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and its model card")
    print(bullets, end="")


def load_weights(net: Net, path: str | Path, kind: WeightKind) -> tuple[Net, dict[str, str]]:
    """Fill ``net`` (float32, eval mode) from a safetensors file; also return its model card."""
    source = Path(path).expanduser()
    state, card = read_safetensors(source, kind)
    load_state(net, state, source, kind)
    return net.eval(), card


def save_checkpoint(
    path: Path, net: nn.Module, optimizer: torch.optim.Optimizer, step: int,
    history: list[dict[str, float]], seconds: float, settings: dict[str, object],
) -> None:
    """Write the optimiser state under a new name, then commit by renaming the weights file.

    The weights' metadata names the optimiser file, so a crash at any point leaves the last
    complete checkpoint intact; superseded optimiser files are deleted afterwards.
    """
    extra = path.with_name(f"{path.stem}.optim-{step}.pt")
    state = {"optimizer": optimizer.state_dict(), "history": history}
    write_atomically(extra, lambda temporary: torch.save(state, temporary))
    metadata = {"step": str(step), "seconds": repr(seconds), "optimizer": extra.name,
                "settings": json.dumps(settings, sort_keys=True)}
    save_safetensors(cpu_state(net, torch.float32), path, metadata)
    for stale in path.parent.glob(f"{glob.escape(path.stem)}.optim-*.pt"):
        if stale != extra:
            stale.unlink(missing_ok=True)


def resume(
    path: Path, net: nn.Module, optimizer: torch.optim.Optimizer, settings: dict[str, object],
    kind: WeightKind,
) -> tuple[int, list[dict[str, float]], float]:
    """Load a checkpoint into ``net`` and ``optimizer``: its step, history and seconds."""
    start_over = (f"the checkpoint is damaged (an interrupted copy?); delete {path.name} and its "
                  f"{path.stem}.optim-*.pt files to start this run over, or pass another "
                  "checkpoint path")
    state, metadata = read_safetensors(path, kind, start_over)
    if not {"step", "seconds", "optimizer", "settings"} <= metadata.keys():
        raise StylelibError(
            f"{path} holds weights but is not a checkpoint of {kind.train}: pass a new "
            f"checkpoint path (load finished weights with {kind.load})."
        )
    saved = json.loads(metadata["settings"])
    changed = sorted(k for k in settings.keys() | saved.keys() if saved.get(k) != settings.get(k))
    if changed:
        before = ", ".join(f"{k}={saved.get(k)!r}" for k in changed)
        now = ", ".join(f"{k}={settings.get(k)!r}" for k in changed)
        raise StylelibError(
            f"{path} was trained with {before}, but this call has {now}: pass the same settings "
            "to resume it, or a new checkpoint path to start over."
        )
    load_state(net, state, path, kind)
    extra = path.with_name(metadata["optimizer"])
    try:
        saved_extra = torch.load(extra, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as error:
        raise StylelibError(
            f"Cannot read {extra}, the optimiser state of checkpoint {path} "
            f"({type(error).__name__}): restore it, or delete {path} to start over."
        ) from None
    optimizer.load_state_dict(saved_extra["optimizer"])
    history: list[dict[str, float]] = saved_extra["history"]
    return int(metadata["step"]), history, float(metadata["seconds"])


@dataclass
class TrainResult(Generic[Net]):
    """The trained network, the losses after every step, the training time of all runs, and the
    preview image rendered every ``preview_every`` steps of this run (by step)."""

    net: Net
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps_done: int = 0
    previews: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """How long and how fast to train, and where and how often to save (one run's settings)."""

    steps: int
    lr: float
    warmup: int
    checkpoint: Path | None
    checkpoint_every: int
    settings: dict[str, object]
    """Everything that must match for a checkpoint to be resumed."""
    kind: WeightKind
    preview_every: int = 50
    progress: bool = True
    minutes: float | None = None
    """Stop after this many minutes of this call (at a step's end, saving a checkpoint)."""
    cooldown: int = 0
    """Over the last this many of ``steps`` the learning rate falls linearly towards 0."""

    def lr_at(self, step: int) -> float:
        """The learning rate of step number ``step`` (counting from 1): warm-up, then ``lr``,
        then the cool-down, which averages out the noise of the last constant-rate steps."""
        warm = min(1.0, step / (self.warmup + 1))
        cool = min(1.0, (self.steps - step + 1) / (self.cooldown + 1))
        return self.lr * warm * cool


def finite(net: nn.Module) -> bool:
    """Whether every weight of ``net`` is finite (one device sync, however many tensors)."""
    return bool(torch.stack([torch.isfinite(p).all() for p in net.parameters()]).all())


def _diverged(step: int, what: str, path: Path | None, saved_at: int | None) -> StylelibError:
    """The error for a run whose loss or weights stopped being finite: nothing diverged is ever
    saved, and the advice works (a resume with another lr is refused, so it names a new path)."""
    kept = (f"checkpoint {path} still holds step {saved_at}, from before it diverged; "
            if path is not None and saved_at is not None else "nothing diverged was saved; ")
    fresh = (f"delete {path.name} and its {path.stem}.optim-*.pt files, or train into another "
             "checkpoint path" if path is not None and saved_at is not None else "train again")
    return StylelibError(
        f"The training diverged at step {step} (the {what} became NaN or infinite): {kept}"
        f"lower lr or the loss weights and {fresh}."
    )


@dataclass
class StopRequest:
    """Set by the first SIGINT or SIGTERM of a training run: which signal, if any."""

    signum: int | None = None


@contextmanager
def stop_at_step_end() -> Iterator[StopRequest]:
    """Turn the first Ctrl-C (or SIGTERM, as a job scheduler sends) into a request that the
    training loop reads at the end of its step, so it saves a checkpoint of a complete step; a
    second Ctrl-C stops at once (a second SIGTERM is absorbed: the step ends anyway). Signals
    set to be ignored stay ignored; outside the main thread nothing is requested."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def first(signum: int, frame: object) -> None:
        request.signum = signum  # only a flag: printing here could collide with tqdm's writes
        signal.signal(signal.SIGINT, signal.default_int_handler)

    caught = [s for s in (signal.SIGINT, signal.SIGTERM)
              if signal.getsignal(s) is not signal.SIG_IGN]  # nohup'd runs stay immune
    previous = {s: signal.signal(s, first) for s in caught}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def fit(
    net: Net,
    optimizer: torch.optim.Optimizer,
    plan: Plan,
    batches: Callable[[int], Iterable[Batch]],
    step: Callable[[Batch], tuple[torch.Tensor, dict[str, float]]],
    *,
    preview: Callable[[], torch.Tensor] | None = None,
    callback: Callable[[int, dict[str, float], Net], None] | None = None,
) -> TrainResult[Net]:
    """Train ``net`` for ``plan.steps`` steps in all, resuming ``plan.checkpoint`` if it exists.

    ``batches(done)`` yields the batches from step ``done`` on; ``step(batch)`` returns the loss
    to minimise and its parts as numbers. The learning rate follows :meth:`Plan.lr_at`: it rises
    over the first ``plan.warmup`` steps (Adam's first step moves every weight by ``lr`` at once
    and overshoots) and falls over the last ``plan.cooldown``.
    ``preview()`` runs without gradients every ``plan.preview_every`` steps and at the end;
    ``callback(step, losses, net)`` after each step, ``step`` counting the steps done. With
    ``plan.minutes`` the call ends early once that much time has passed, with a checkpoint at
    the step it reached, so the next call resumes there (a lent GPU's or Colab's time limit).
    """
    if plan.minutes is not None:
        check_number(plan.minutes, "minutes")
    path = plan.checkpoint
    if path is not None and not path.parent.is_dir():
        raise StylelibError(
            f"Folder {path.parent} does not exist, so checkpoint {path.name} cannot be saved "
            "there: create it or pick another path (before hours of training are lost)."
        )
    done, seconds = 0, 0.0
    history: list[dict[str, float]] = []
    previews: dict[int, torch.Tensor] = {}
    saved_at: int | None = None  # the step the checkpoint file holds
    if path is not None and path.exists():
        done, history, seconds = resume(path, net, optimizer, plan.settings, plan.kind)
        saved_at = done
    started = time.perf_counter()
    net.train()
    with tqdm(total=plan.steps, initial=done, desc=plan.kind.network, disable=not plan.progress,
              leave=False) as bar, stop_at_step_end() as interrupt:
        for batch in batches(done):
            optimizer.zero_grad()
            total, losses = step(batch)
            total.backward()  # type: ignore[no-untyped-call]
            history.append(losses)
            if not math.isfinite(float(total.detach())):
                raise _diverged(done + 1, "loss", path, saved_at)
            for group in optimizer.param_groups:
                group["lr"] = plan.lr_at(done + 1)
            optimizer.step()
            done += 1
            out_of_time = (plan.minutes is not None
                           and time.perf_counter() - started >= plan.minutes * 60)
            interrupted = interrupt.signum  # read once: the checkpoint below must cover it
            stop = out_of_time or interrupted is not None
            last = done == plan.steps or stop
            if path is not None and (done % plan.checkpoint_every == 0 or last):
                if not finite(net):  # never save a diverged network over a good checkpoint
                    raise _diverged(done, "weights", path, saved_at)
                elapsed = seconds + time.perf_counter() - started
                save_checkpoint(path, net, optimizer, done, history, elapsed, plan.settings)
                saved_at = done
            if preview is not None and (done % plan.preview_every == 0 or last):
                with torch.no_grad():
                    previews[done] = preview()
            bar.update()
            bar.set_postfix(loss=f"{float(total.detach()):.4g}")
            if callback is not None:
                callback(done, losses, net)
            if interrupted is not None and done < plan.steps:
                saved = (f"checkpoint {path} saved at that step: run the same command again to "
                         "go on from there" if path is not None else
                         "nothing was saved (no checkpoint path was given)")
                name = signal.Signals(interrupted).name
                raise StoppedError(f"{name}: stopped after step {done} of {plan.steps}; {saved}.",
                                   interrupted)
            if stop:
                break
    return TrainResult(net.eval(), history, seconds + time.perf_counter() - started, done, previews)
