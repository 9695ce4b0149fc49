"""Tests for stylelib.fast: the network's shapes and upsampling, training and resuming, weight
files and ONNX export.

Training runs a dozen steps on 32 px crops of four photos from the training collection: enough
for the loss to fall and to compare an interrupted run with an uninterrupted one, in seconds.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from safetensors.torch import load_file, save_file
from torch import nn

from stylelib.checkpoints import Plan
from stylelib.errors import ImageError, StoppedError, StylelibError
from stylelib.fast import (
    KIND,
    ResizeConv,
    TrainResult,
    TransformerNet,
    export_onnx,
    load_weights,
    save_weights,
    stylize,
    train,
)
from stylelib.images import load_image

HED = "vgg16-hed"


@pytest.fixture(scope="module")
def net() -> TransformerNet:
    """Seeded random weights: shapes, upsampling and file formats need no training."""
    torch.manual_seed(0)
    return TransformerNet().eval()


@pytest.fixture(scope="module")
def photos(mirror_dir: Path) -> list[Path]:
    """Four photographs of the training collection."""
    return sorted((mirror_dir / "training" / "photos").glob("*.jpg"))[:4]


def checkerboard_share(image: torch.Tensor) -> float:
    """Share of the image's (non-constant) power at the Nyquist row and column of its spectrum:
    where a pattern that alternates every pixel, a checkerboard, puts its energy."""
    centred = image - image.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(centred).abs().pow(2)
    height, width = image.shape[-2:]
    nyquist = power[..., height // 2, :].sum() + power[..., :, width // 2].sum()
    return float(nyquist / power.sum())


# --------------------------------------------------------------------------- the network


@pytest.mark.parametrize("size", [(33, 47), (64, 64), (17, 90)])
def test_output_has_the_input_size_and_is_an_image(net: TransformerNet, size: tuple[int, int]
                                                   ) -> None:
    """Odd sizes are padded to a multiple of 4 inside and cropped back."""
    with torch.no_grad():
        output = net(torch.rand(2, 3, *size))
    assert output.shape == (2, 3, *size)
    assert output.min() >= 0 and output.max() <= 1


@pytest.mark.parametrize("size", [(5, 7), (6, 6), (1, 3)])
def test_resize_convolution_equals_upsampling_then_convolving(size: tuple[int, int]) -> None:
    """The phase-wise computation gives what nearest upsampling + reflection padding + the 3x3
    convolution give, on odd and even sizes."""
    torch.manual_seed(0)
    layer = ResizeConv(4, 5)
    x = torch.rand(2, 4, *size)
    enlarged = F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1),
                     mode="reflect")
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer.conv(enlarged), rtol=0, atol=1e-5)


def test_no_checkerboard_artefacts(net: TransformerNet, mirror_dir: Path) -> None:
    """Even untrained, the network puts almost none of its output's energy at the checkerboard
    frequency; the same network with stride-2 transposed convolutions puts a large share there
    (measured on this photo over 10 seeds: at most 0.003 against at least 0.11)."""
    photo = load_image(mirror_dir / "content" / "tubingen.jpg", size=64)
    transposed = TransformerNet().eval()
    transposed.load_state_dict(net.state_dict())
    for index, channels in ((0, 64), (3, 32)):
        in_channels = transposed.decoder[index].conv.in_channels
        transposed.decoder[index] = nn.ConvTranspose2d(in_channels, channels, 3, 2, padding=1,
                                                       output_padding=1, bias=False)
    with torch.no_grad():
        assert checkerboard_share(net(photo)) < 0.02
        assert checkerboard_share(transposed(photo)) > 0.05


# --------------------------------------------------------------------------- training


def test_training_reduces_the_loss(photos: list[Path], painting: torch.Tensor) -> None:
    steps: list[int] = []
    preview = torch.rand(1, 3, 20, 28)
    result = train(painting, photos, steps=12, size=32, backbone=HED, progress=False,
                   callback=lambda step, losses, net: steps.append(step), preview=preview,
                   preview_every=5)
    totals = [h["total"] for h in result.history]
    assert result.steps_done == len(totals) == 12
    assert steps == list(range(1, 13))
    assert np.mean(totals[-2:]) < 0.95 * np.mean(totals[:2])
    assert not result.net.training
    assert sorted(result.previews) == [5, 10, 12]
    assert torch.equal(result.previews[12], stylize(result.net, preview))
    assert not torch.equal(result.previews[5], result.previews[12])


def test_learning_rate_warms_up_then_cools_down() -> None:
    plan = Plan(10, 1.0, 1, None, 5, {}, KIND, cooldown=4)
    rates = [plan.lr_at(step) for step in range(1, 11)]
    assert rates == pytest.approx([0.5, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])
    assert Plan(3, 0.1, 0, None, 5, {}, KIND).lr_at(3) == pytest.approx(0.1)


def test_bf16_training_follows_float32(photos: list[Path], painting: torch.Tensor) -> None:
    """Autocast changes the numbers a little (it ran), not the loss the network learns from."""
    runs = [train(painting, photos, steps=2, size=32, backbone=HED, progress=False, bf16=bf16)
            for bf16 in (False, True)]
    full, half = (run.history[0]["total"] for run in runs)
    assert full != half
    assert half == pytest.approx(full, rel=0.02)
    assert all(p.dtype == torch.float32 for p in runs[1].net.parameters())


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


def test_training_can_start_from_saved_weights(runs: Runs, photos: list[Path],
                                               painting: torch.Tensor, tmp_path: Path) -> None:
    """A second run starting from the first's weights begins where the first ended."""
    saved = save_weights(runs.whole.net, tmp_path / "first.safetensors", {"note": "6 steps"})
    second = train(painting, photos, steps=1, batch_size=2, size=32, backbone=HED, seed=1,
                   progress=False, start_from=saved, lr=1e-12, warmup=0)
    first_weights = load_weights(saved).state_dict()
    for name, tensor in second.net.state_dict().items():
        assert torch.allclose(tensor, first_weights[name], atol=1e-6), name
    with pytest.raises(StylelibError, match="No weights file at"):
        train(painting, photos, steps=1, size=32, backbone=HED, start_from=tmp_path / "none")


def test_missing_optimiser_state_is_a_clear_error(runs: Runs, photos: list[Path],
                                                  painting: torch.Tensor, tmp_path: Path) -> None:
    lonely = tmp_path / "cut.safetensors"
    shutil.copy(runs.checkpoint, lonely)
    with pytest.raises(StylelibError, match=r"cut\.optim-6\.pt, the optimiser state"):
        train(painting, photos, checkpoint=lonely, **runs.settings)


@pytest.mark.parametrize(
    ("argument", "value"),
    [("steps", 0), ("batch_size", 0), ("checkpoint_every", 1.5), ("warmup", -1),
     ("cooldown", -1), ("lr", 0.0),
     ("lr", float("nan")), ("seed", -1), ("size", 8)],
)
def test_train_validates_its_arguments(photos: list[Path], painting: torch.Tensor,
                                       argument: str, value: object) -> None:
    settings: dict[str, object] = {"steps": 1, argument: value}
    with pytest.raises(StylelibError, match=argument):
        train(painting, photos, **settings)


# --------------------------------------------------------------------------- inference


def test_stylize_returns_an_ordinary_tensor(net: TransformerNet, photo: torch.Tensor) -> None:
    """Inference mode inside, but callers may modify the result or use it in autograd."""
    result = stylize(net, photo)
    assert result.shape == photo.shape
    assert not result.is_inference()
    result.clamp_(0, 1)
    with pytest.raises(ImageError, match="one RGB image"):
        stylize(net, torch.rand(2, 3, 32, 32))


def test_onnx_export_matches_pytorch(net: TransformerNet, tmp_path: Path) -> None:
    """The exported graph has dynamic height and width: sizes other than the traced one agree."""
    import onnxruntime

    path = export_onnx(net, tmp_path / "net.onnx", size=32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in ((33, 47), (17, 90)):
        image = torch.rand(1, 3, *size)
        (output,) = session.run(None, {"image": image.numpy()})
        assert output.shape == (1, 3, *size)
        assert np.abs(output - stylize(net, image).numpy()).max() < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]


# --------------------------------------------------------------------------- weight files


def test_weights_round_trip_in_fp16(net: TransformerNet, photo: torch.Tensor, tmp_path: Path
                                    ) -> None:
    card = {"style": "The Starry Night", "steps": "12"}
    path = save_weights(net, tmp_path / "net.safetensors", card)
    assert path.stat().st_size < 3_500_000  # 1.68 M parameters at 2 bytes each
    loaded = load_weights(path)
    assert loaded.card == card
    assert not loaded.training
    for name, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, net.state_dict()[name], rtol=1e-3, atol=1e-6)
    assert (stylize(loaded, photo) - stylize(net, photo)).abs().max() < 1e-2


def test_save_weights_refuses_what_fp16_safetensors_cannot_hold(net: TransformerNet,
                                                                tmp_path: Path) -> None:
    with pytest.raises(StylelibError, match="must be strings"):
        save_weights(net, tmp_path / "net.safetensors", {"steps": 12})  # type: ignore[dict-item]
    huge = TransformerNet()
    with torch.no_grad():
        huge.to_rgb.bias.fill_(1e5)
    with pytest.raises(StylelibError, match="too large for fp16"):
        save_weights(huge, tmp_path / "net.safetensors", {})
    assert not any(tmp_path.iterdir())


def _damage(kind: str, path: Path, net: TransformerNet) -> None:
    """Write one kind of unusable weight file at ``path``."""
    if kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        save_weights(net, path, {})
        path.write_bytes(path.read_bytes()[:100_000])
    elif kind == "wrong shape":
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        state["to_rgb.weight"] = torch.zeros(3, 32, 5, 5)
        save_file(state, str(path))
    elif kind == "another network":
        save_file({"features.0.weight": torch.zeros(64, 3, 3, 3)}, str(path))
    elif kind == "NaN":
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        state["to_rgb.bias"][0] = float("nan")
        save_file(state, str(path))


@pytest.mark.parametrize(
    ("kind", "message"),
    [("random bytes", "not a readable safetensors file"), ("empty", "not a readable"),
     ("truncated", "not a readable"), ("wrong shape", "does not hold TransformerNet weights"),
     ("another network", "does not hold TransformerNet weights"), ("NaN", "NaN or infinite")],
)
def test_unusable_weight_files_give_one_clear_error(
    net: TransformerNet, tmp_path: Path, kind: str, message: str
) -> None:
    path = tmp_path / "net.safetensors"
    _damage(kind, path, net)
    with pytest.raises(StylelibError, match=message) as caught:
        load_weights(path)
    assert str(path) in str(caught.value)


def test_missing_weight_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(StylelibError, match=re.escape(str(tmp_path / "none.safetensors"))):
        load_weights(tmp_path / "none.safetensors")


class Bait:
    """Unpickles by calling ``Path.touch(marker)``: proof that a pickle was (or was not) run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_a_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    control = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(Bait(control)))
    assert control.exists(), "the bait must work, or this test proves nothing"
    marker = tmp_path / "payload-ran"
    path = tmp_path / "net.safetensors"
    torch.save({"to_rgb.weight": Bait(marker)}, path)
    with pytest.raises(StylelibError, match="never unpickles"):
        load_weights(path)
    assert not marker.exists()


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
    from stylelib import checkpoints

    net = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    path = tmp_path / "toy.safetensors"
    plan = checkpoints.Plan(3, 0.1, 0, path, 1, {}, KIND, progress=False)

    def step(batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        total = net(batch).pow(2).mean()
        if len(list(tmp_path.glob("*.optim-*.pt"))) == 1:  # after step 1 was saved
            with torch.no_grad():
                net.bias.fill_(float("inf"))  # the loss above was computed before this
        return total, {"total": float(total.detach())}

    with pytest.raises(StylelibError, match=r"diverged at step 2 \(the weights became NaN or "
                                            r"infinite\): checkpoint .* still holds step 1"):
        checkpoints.fit(net, optimizer, plan, lambda done: [torch.ones(1, 2)] * (3 - done), step)
    state = load_file(str(path))
    assert all(torch.isfinite(t).all() for t in state.values())
