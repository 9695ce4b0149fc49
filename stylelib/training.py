"""The training loop the fast nets, the AdaIN decoder and the painting prior are trained with
(chapter 1's GAN keeps its own, two networks in one step): :func:`fit` follows a
:class:`Plan` (learning-rate schedule, time limit), saves a checkpoint every few steps (fp32
safetensors plus the optimiser's state), stops cleanly on Ctrl-C, and, called again, resumes
bit for bit.
"""

from __future__ import annotations

import glob
import json
import math
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from stylelib.distributed import agree, average_gradients, join, same_start, wait, world
from stylelib.errors import StoppedError, StylelibError, check_number
from stylelib.files import save_safetensors, write_atomically
from stylelib.weight_files import Net, WeightKind, cpu_state, load_state, read_safetensors

Batch = TypeVar("Batch")


def step_seed(seed: int, step: int) -> int:
    """A well-mixed 63-bit seed for training step ``step`` of the run seeded ``seed``: what a
    step draws from it is the same on a resumed run as on an uninterrupted one."""
    return int(np.random.SeedSequence([seed, step]).generate_state(2, np.uint64)[0] >> 1)


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


@dataclass
class _Progress:
    """Where a call of :func:`fit` stands: steps done and their losses, the training time of the
    earlier calls it resumed, the step the checkpoint file holds, and this call's previews."""

    done: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    saved_at: int | None = None
    previews: dict[int, torch.Tensor] = field(default_factory=dict)


def _start(net: nn.Module, optimizer: torch.optim.Optimizer, plan: Plan) -> _Progress:
    """Check ``plan`` before any training, then resume its checkpoint if it exists."""
    if plan.minutes is not None:
        check_number(plan.minutes, "minutes")
    path = plan.checkpoint
    if path is not None and not path.parent.is_dir():
        raise StylelibError(
            f"Folder {path.parent} does not exist, so checkpoint {path.name} cannot be saved "
            "there: create it or pick another path (before hours of training are lost)."
        )
    if path is None or not path.exists():
        return _Progress()
    done, history, seconds = resume(path, net, optimizer, plan.settings, plan.kind)
    return _Progress(done, history, seconds, saved_at=done)


def _optimise(
    net: nn.Module, optimizer: torch.optim.Optimizer, plan: Plan, progress: _Progress,
    step: Callable[[Batch], tuple[torch.Tensor, dict[str, float]]], batch: Batch,
) -> float:
    """One optimiser step on ``batch`` (this rank's share of the global batch, the gradients
    averaged over the ranks) at the planned learning rate; its loss, averaged over the ranks.
    A loss that is not finite stops the run before the step can spoil the weights."""
    optimizer.zero_grad()
    total, parts = step(batch)
    total.backward()  # type: ignore[no-untyped-call]
    average_gradients(net)
    loss, *values = agree([float(total.detach()), *parts.values()])
    progress.history.append(dict(zip(parts, values, strict=True)))
    if not math.isfinite(loss):
        raise _diverged(progress.done + 1, "loss", plan.checkpoint, progress.saved_at)
    for group in optimizer.param_groups:
        group["lr"] = plan.lr_at(progress.done + 1)
    optimizer.step()
    progress.done += 1
    return loss


def _save(path: Path, net: nn.Module, optimizer: torch.optim.Optimizer, plan: Plan,
          progress: _Progress, started: float) -> None:
    """Checkpoint the step reached (this call began at ``started``), unless the weights have
    diverged: a diverged network is never saved over a good checkpoint. Rank 0 writes it while
    the other ranks (whose weights are the same) wait."""
    if not finite(net):
        raise _diverged(progress.done, "weights", path, progress.saved_at)
    elapsed = progress.seconds + time.perf_counter() - started
    if world().main:
        save_checkpoint(path, net, optimizer, progress.done, progress.history, elapsed,
                        plan.settings)
    wait()
    progress.saved_at = progress.done


def _stopped(signum: int, done: int, plan: Plan) -> StoppedError:
    """The error for a run stopped by signal ``signum`` after step ``done``."""
    saved = (f"checkpoint {plan.checkpoint} saved at that step: run the same command again to "
             "go on from there" if plan.checkpoint is not None else
             "nothing was saved (no checkpoint path was given)")
    name = signal.Signals(signum).name
    return StoppedError(f"{name}: stopped after step {done} of {plan.steps}; {saved}.", signum)


def _same_checkpoint(done: int, path: Path | None) -> None:
    """Refuse, on every rank alike, a start where the ranks resumed different steps: each reads
    the checkpoint itself, so on several machines it must be on a filesystem they share."""
    if agree([float(done)]) != agree([float(done)], largest=True):
        raise StylelibError(
            f"The training processes found different checkpoints at {path} (this one: step "
            f"{done}): put the checkpoint on a filesystem every machine shares, or copy it to "
            "each, and run the same command again.")


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
    Under ``torchrun`` every rank runs this with its share of each batch
    (:mod:`stylelib.distributed`); the history holds the losses averaged over the ranks.
    """
    join(next(net.parameters()).device)
    progress = _start(net, optimizer, plan)
    _same_checkpoint(progress.done, plan.checkpoint)
    same_start(net)
    path = plan.checkpoint
    started = time.perf_counter()
    net.train()
    main = world().main
    with tqdm(total=plan.steps, initial=progress.done, desc=plan.kind.network,
              disable=not plan.progress or not main, leave=False) as bar, \
            stop_at_step_end() as interrupt:
        for batch in batches(progress.done):
            total = _optimise(net, optimizer, plan, progress, step, batch)
            losses = progress.history[-1]
            done = progress.done
            # Read once, and agreed by all ranks: the checkpoint below must cover it.
            late, signum = agree([float(plan.minutes is not None and time.perf_counter()
                                        - started >= plan.minutes * 60),
                                  float(interrupt.signum or 0)], largest=True)
            out_of_time, interrupted = late > 0, int(signum) or None
            stop = out_of_time or interrupted is not None
            last = done == plan.steps or stop
            if path is not None and (done % plan.checkpoint_every == 0 or last):
                _save(path, net, optimizer, plan, progress, started)
            if main and preview is not None and (done % plan.preview_every == 0 or last):
                with torch.no_grad():
                    progress.previews[done] = preview()
            bar.update()
            bar.set_postfix(loss=f"{total:.4g}")
            if callback is not None:
                callback(done, losses, net)
            if interrupted is not None and done < plan.steps:
                raise _stopped(interrupted, done, plan)
            if stop:
                break
    return TrainResult(net.eval(), progress.history,
                       progress.seconds + time.perf_counter() - started, progress.done,
                       progress.previews)
