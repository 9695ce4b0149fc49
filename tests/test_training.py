"""Tests for stylelib.training: the learning-rate schedule, and checkpoints that resume bit for
bit, stop at a step's end on Ctrl-C, SIGTERM or a time limit, and refuse what they cannot resume.

The loop runs under :func:`stylelib.fast.train`, a dozen steps on 32 px crops of four photos from
the training collection (enough to compare an interrupted run with an uninterrupted one, in
seconds), and on a toy network where a test needs the loop alone.
"""

from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from bait import Bait
from safetensors.torch import load_file
from torch import nn

from stylelib.errors import StoppedError, StylelibError
from stylelib.fast import KIND, TrainResult, TransformerNet, train
from stylelib.training import Plan, fit

HED = "vgg16-hed"


@pytest.fixture(scope="module")
def photos(mirror_dir: Path) -> list[Path]:
    """Four photographs of the training collection."""
    return sorted((mirror_dir / "training" / "photos").glob("*.jpg"))[:4]


def test_learning_rate_warms_up_then_cools_down() -> None:
    plan = Plan(10, 1.0, 1, None, 5, {}, KIND, cooldown=4)
    rates = [plan.lr_at(step) for step in range(1, 11)]
    assert rates == pytest.approx([0.5, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])
    assert Plan(3, 0.1, 0, None, 5, {}, KIND).lr_at(3) == pytest.approx(0.1)


@dataclass
class Runs:
    """An uninterrupted 6-step run and one interrupted after step 4 and resumed."""

    whole: TrainResult
    resumed: TrainResult
    resumed_steps: list[int]
    checkpoint: Path
    settings: dict[str, object]


class SimulatedCrashError(Exception):
    """Stands for a crash or Ctrl-C in the middle of training."""


@pytest.fixture(scope="module")
def runs(photos: list[Path], painting: torch.Tensor, tmp_path_factory: pytest.TempPathFactory
         ) -> Runs:
    folder = tmp_path_factory.mktemp("checkpoints")
    settings: dict[str, object] = {"steps": 6, "batch_size": 2, "size": 32, "backbone": HED,
                                   "checkpoint_every": 3, "progress": False}
    whole = train(painting, photos, checkpoint=folder / "whole.safetensors", **settings)

    def crash_after_step_4(step: int, losses: dict[str, float], net: TransformerNet) -> None:
        if step == 4:
            raise SimulatedCrashError

    checkpoint = folder / "cut.safetensors"
    with pytest.raises(SimulatedCrashError):
        train(painting, photos, checkpoint=checkpoint, callback=crash_after_step_4, **settings)
    seen: list[int] = []
    resumed = train(painting, photos, checkpoint=checkpoint,
                    callback=lambda step, losses, net: seen.append(step), **settings)
    return Runs(whole, resumed, seen, checkpoint, settings)


def test_resume_continues_from_the_last_checkpoint(runs: Runs) -> None:
    """The crash lost step 4; the checkpoint of step 3 is where the second call starts."""
    assert runs.resumed_steps == [4, 5, 6]
    assert runs.resumed.steps_done == 6
    assert runs.resumed.history[:3] == runs.whole.history[:3]
    assert [h["total"] for h in runs.resumed.history] == pytest.approx(
        [h["total"] for h in runs.whole.history], rel=1e-5)


def test_resumed_run_ends_with_the_uninterrupted_weights(runs: Runs) -> None:
    """Bit for bit: the checkpoint holds fp32 weights and Adam's state, and the crops of every
    step depend only on the seed and the step."""
    whole, resumed = runs.whole.net.state_dict(), runs.resumed.net.state_dict()
    assert whole.keys() == resumed.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0, msg=name)


def test_checkpoint_keeps_one_optimiser_file(runs: Runs) -> None:
    names = sorted(p.name for p in runs.checkpoint.parent.glob("cut*"))
    assert names == ["cut.optim-6.pt", "cut.safetensors"]


def test_finished_checkpoint_is_not_trained_again(runs: Runs, photos: list[Path],
                                                 painting: torch.Tensor) -> None:
    """It returns the stored network, history and training time at once."""
    again = train(painting, photos, checkpoint=runs.checkpoint, **runs.settings)
    assert again.steps_done == 6
    assert again.history == runs.resumed.history
    assert again.seconds == pytest.approx(runs.resumed.seconds, abs=1.0)


def test_a_time_limit_stops_at_a_checkpoint_that_the_next_call_goes_on_from(
        runs: Runs, photos: list[Path], painting: torch.Tensor, tmp_path: Path) -> None:
    """``minutes=0`` is out of time after the first step: it saves step 1 (not a multiple of
    checkpoint_every) and stops; the next call without a limit ends with the whole run's
    weights."""
    checkpoint = tmp_path / "timed.safetensors"
    cut = train(painting, photos, checkpoint=checkpoint, minutes=0, **runs.settings)
    assert cut.steps_done == 1 and len(cut.history) == 1
    rest = train(painting, photos, checkpoint=checkpoint, **runs.settings)
    assert rest.steps_done == 6
    whole, resumed = runs.whole.net.state_dict(), rest.net.state_dict()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0, msg=name)
    with pytest.raises(StylelibError, match="minutes must be a finite number >= 0"):
        train(painting, photos, checkpoint=checkpoint, minutes=-1.0, **runs.settings)


@pytest.mark.parametrize(("at_step", "signum"), [(2, signal.SIGINT), (5, signal.SIGINT),
                                               (4, signal.SIGTERM)])
def test_ctrl_c_saves_the_step_it_ends_and_the_rerun_ends_bit_exact(
        runs: Runs, photos: list[Path], painting: torch.Tensor, tmp_path: Path,
        at_step: int, signum: signal.Signals) -> None:
    """A real SIGINT in the middle of a run (between checkpoints, at steps 2 and 5 of 6 with
    checkpoints every 3): the run finishes that step, saves it and stops with one message; the
    same call again ends with the uninterrupted run's weights, bit for bit."""
    checkpoint = tmp_path / "ctrl_c.safetensors"

    def press_ctrl_c(step: int, losses: dict[str, float], net: TransformerNet) -> None:
        if step == at_step - 1:
            signal.raise_signal(signum)  # arrives during the next step's work

    with pytest.raises(StoppedError, match=f"{signum.name}: stopped after step {at_step} of 6; "
                                           "checkpoint ") as stopped:
        train(painting, photos, checkpoint=checkpoint, callback=press_ctrl_c, **runs.settings)
    assert stopped.value.status == 128 + signum  # 130 for Ctrl-C, 143 for SIGTERM
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    seen: list[int] = []
    rest = train(painting, photos, checkpoint=checkpoint,
                 callback=lambda step, losses, net: seen.append(step), **runs.settings)
    assert seen == list(range(at_step + 1, 7))
    whole, resumed = runs.whole.net.state_dict(), rest.net.state_dict()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0, msg=name)


def test_a_damaged_checkpoint_says_start_over_not_download_again(
        runs: Runs, photos: list[Path], painting: torch.Tensor, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(runs.checkpoint.read_bytes()[:100])  # a copy cut short
    message = r"the checkpoint is damaged .*; delete damaged\.safetensors and its damaged\.optim"
    with pytest.raises(StylelibError, match=message) as info:
        train(painting, photos, checkpoint=damaged, **runs.settings)
    assert "download" not in str(info.value)


def test_a_diverging_run_keeps_its_last_good_checkpoint_and_says_how_to_retry(
        runs: Runs, photos: list[Path], painting: torch.Tensor, tmp_path: Path) -> None:
    checkpoint = tmp_path / "diverged.safetensors"
    settings = {**runs.settings, "checkpoint_every": 1}

    def blow_up_after_step_2(step: int, losses: dict[str, float], net: TransformerNet) -> None:
        if step == 2:
            with torch.no_grad():
                next(net.parameters()).fill_(float("inf"))

    with pytest.raises(StylelibError, match=r"diverged at step 3 .*: checkpoint .* still holds "
                                            r"step 2, from before it diverged; lower lr .* delete "
                                            r"diverged\.safetensors"):
        train(painting, photos, checkpoint=checkpoint, callback=blow_up_after_step_2, **settings)
    rest = train(painting, photos, checkpoint=checkpoint, **settings)  # resumable, finite
    assert rest.steps_done == 6
    assert all(torch.isfinite(p).all() for p in rest.net.parameters())


def test_resume_with_other_settings_is_refused(runs: Runs, photos: list[Path],
                                               painting: torch.Tensor) -> None:
    settings = {**runs.settings, "batch_size": 4}
    with pytest.raises(StylelibError, match=r"batch_size=2.*batch_size=4.*new checkpoint path"):
        train(painting, photos, checkpoint=runs.checkpoint, **settings)


def test_missing_optimiser_state_is_a_clear_error(runs: Runs, photos: list[Path],
                                                  painting: torch.Tensor, tmp_path: Path) -> None:
    lonely = tmp_path / "cut.safetensors"
    shutil.copy(runs.checkpoint, lonely)
    with pytest.raises(StylelibError, match=r"cut\.optim-6\.pt, the optimiser state"):
        train(painting, photos, checkpoint=lonely, **runs.settings)


def test_a_pickled_optimiser_state_is_never_run(runs: Runs, photos: list[Path],
                                                painting: torch.Tensor, tmp_path: Path) -> None:
    """Resuming reads the optimiser file with ``weights_only``: arbitrary objects are refused."""
    checkpoint = tmp_path / "cut.safetensors"
    shutil.copy(runs.checkpoint, checkpoint)
    marker = tmp_path / "payload-ran"
    torch.save({"optimizer": Bait(marker), "history": []}, tmp_path / "cut.optim-6.pt")
    with pytest.raises(StylelibError, match="UnpicklingError"):
        train(painting, photos, checkpoint=checkpoint, **runs.settings)
    assert not marker.exists()


def test_a_diverged_network_is_never_saved_over_a_good_checkpoint(tmp_path: Path) -> None:
    """The loss stays finite while the update itself makes a weight infinite: the check before
    each save stops the run and leaves the step-1 checkpoint as it was."""
    net = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    path = tmp_path / "toy.safetensors"
    plan = Plan(3, 0.1, 0, path, 1, {}, KIND, progress=False)

    def step(batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        total = net(batch).pow(2).mean()
        if len(list(tmp_path.glob("*.optim-*.pt"))) == 1:  # after step 1 was saved
            with torch.no_grad():
                net.bias.fill_(float("inf"))  # the loss above was computed before this
        return total, {"total": float(total.detach())}

    with pytest.raises(StylelibError, match=r"diverged at step 2 \(the weights became NaN or "
                                            r"infinite\): checkpoint .* still holds step 1"):
        fit(net, optimizer, plan, lambda done: [torch.ones(1, 2)] * (3 - done), step)
    state = load_file(str(path))
    assert all(torch.isfinite(t).all() for t in state.values())
