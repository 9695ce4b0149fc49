"""Video: made clips with known flow, optical flow and warping, the flicker measure, video files,
the frame store, the fixes against flicker and the ``video`` command."""

from __future__ import annotations

import base64
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from stylelib import gatys, methods, motion, video
from stylelib.cli import main
from stylelib.clips import Camera, Clip, make_clip
from stylelib.errors import StylelibError
from stylelib.flow import end_point_error, filled, lands_inside, optical_flow, reliable, warp
from stylelib.images import load_image
from stylelib.metrics import detail, ssim, temporal_error

SIZE = (48, 64)


@pytest.fixture(scope="module")
def scene(mirror_dir: Path) -> torch.Tensor:
    """Tübingen at 160 px: room for a 64 px camera to move over."""
    return load_image(mirror_dir / "content" / "tubingen.jpg", size=160)


@pytest.fixture(scope="module")
def clip(scene: torch.Tensor, mirror_dir: Path) -> Clip:
    """Eight frames panning over the photo, with a 16 px square of a painting crossing it."""
    square = load_image(mirror_dir / "style" / "starry_night.jpg", size=32)
    return make_clip(scene, SIZE, 8, Camera(pan=(1.5, 0.5), object_side=16,
                                            object_speed=(2, 1)), object_from=square)


# --------------------------------------------------------------------------- made clips, flow


def test_true_flow_carries_each_frame_onto_the_next(clip: Clip) -> None:
    for t in range(1, len(clip.frames)):
        mask = clip.reliable[t - 1]
        moved = warp(clip.frames[t - 1], clip.flows[t - 1])
        aligned = float((mask * (moved - clip.frames[t]).square()).mean())
        unaligned = float((mask * (clip.frames[t - 1] - clip.frames[t]).square()).mean())
        assert aligned < unaligned / 4


def test_the_object_uncovers_pixels_the_flow_cannot_explain(clip: Clip) -> None:
    mask = clip.reliable[0]
    # frame 1's object starts at column 16 - 8 + 2 = 10: columns 8-9 were behind it in frame 0
    assert float(mask[0, 0, 22:30, 8:10].max()) == 0
    assert float(mask[0, 0, 22:30, 12:20].min()) == 1  # the object itself was seen
    assert 0.8 < float(mask.mean()) < 1


def test_dis_flow_agrees_with_the_true_flow(clip: Clip) -> None:
    for t in (1, 4):
        flow = optical_flow(clip.frames[t], clip.frames[t - 1])
        truth, mask = clip.flows[t - 1], clip.reliable[t - 1]
        # at 64 px the frames hold little texture; at 256 px DIS is within 0.2 px
        assert (end_point_error(flow, truth, mask)
                < 0.4 * end_point_error(torch.zeros_like(flow), truth, mask))


def test_reliable_flags_the_uncovered_pixels(clip: Clip) -> None:
    backward = optical_flow(clip.frames[1], clip.frames[0])
    forward = optical_flow(clip.frames[0], clip.frames[1])
    trusted = reliable(backward, forward)
    assert trusted.shape == (1, 1, *SIZE)
    hidden = clip.reliable[0] == 0
    assert float(trusted[hidden].mean()) < float(trusted[~hidden].mean())


def test_filling_finds_each_side_s_motion_next_to_the_object(clip: Clip) -> None:
    """A band 3 px each side of the object's edge, distrusted and given the midpoint of the
    object's and the scene's motion (DIS blurs them there), gets most pixels' own motion back,
    and the pixels that came in at the frame's edge stay untrusted. (At 64 px the frames hold
    little texture; at 256 px see the docstring.)"""
    truth, seen = clip.flows[0], clip.reliable[0]
    on_object = (truth - truth[..., :1, :1]).abs().sum(1, keepdim=True) > 0.1
    grown = torch.nn.functional.max_pool2d(on_object.float(), 7, stride=1, padding=3) > 0
    shrunk = torch.nn.functional.max_pool2d((~on_object).float(), 7, stride=1, padding=3) == 0
    band = grown & ~shrunk & (seen > 0)  # both sides of the object's edge
    middle = (truth[on_object.expand_as(truth)].view(2, -1).mean(1)
              + truth[..., 0, 0].flatten()) / 2
    blurred = torch.where(band, middle.view(1, 2, 1, 1), truth)
    flow, trusted = filled(clip.frames[1], clip.frames[0], blurred, seen * ~band)
    regained = band & (trusted > 0)
    assert float(regained.float().sum() / band.float().sum()) > 0.6
    error = (flow - truth).square().sum(1, keepdim=True).sqrt()
    blur_error = (blurred - truth).square().sum(1, keepdim=True).sqrt()
    assert float(error[regained].mean()) < 0.6 * float(blur_error[regained].mean())
    assert float(trusted[~lands_inside(truth)].max()) == 0
    assert torch.equal(trusted[~band & (seen > 0)], seen[~band & (seen > 0)])


def test_reliable_refuses_points_that_came_in_from_outside_the_frame(clip: Clip) -> None:
    backward = torch.zeros(1, 2, *SIZE)
    backward[:, 0] = 2.5  # a pan: every point was 2.5 columns further right
    trusted = reliable(backward, -backward)
    assert float(trusted[..., -2:].max()) == 0  # the columns that came into view
    assert float(trusted[..., :-3].min()) == 1


def test_warp_by_whole_pixels_shifts_and_zero_flow_keeps(clip: Clip) -> None:
    frame = clip.frames[0]
    flow = torch.zeros(1, 2, *SIZE)
    assert torch.allclose(warp(frame, flow), frame, atol=1e-6)
    flow[:, 0] = 3  # every pixel was 3 columns to the right
    assert torch.allclose(warp(frame, flow)[..., :-3], frame[..., 3:], atol=1e-5)


def test_a_camera_that_leaves_the_photo_is_refused(scene: torch.Tensor) -> None:
    with pytest.raises(StylelibError, match="leaves the photo at frame"):
        make_clip(scene, SIZE, 100, Camera(pan=(4.0, 0.0)))
    with pytest.raises(StylelibError, match="needs object_from"):
        make_clip(scene, SIZE, 3, Camera(object_side=8))


# --------------------------------------------------------------------------- the flicker measure


def test_temporal_error_is_small_for_the_clip_and_large_for_flicker(clip: Clip) -> None:
    own = temporal_error(clip.frames, clip.frames, clip.flows, clip.reliable)
    generator = torch.Generator().manual_seed(0)
    flickering = [(f + 0.2 * torch.randn(f.shape, generator=generator)).clamp(0, 1)
                  for f in clip.frames]
    assert temporal_error(flickering, clip.frames, clip.flows, clip.reliable) > 10 * own
    # measured flow instead of the true one: about the same floor
    assert temporal_error(clip.frames, clip.frames) < 3 * own + 1e-4


def test_detail_drops_when_a_frame_is_smeared(clip: Clip) -> None:
    frame = clip.frames[0]
    smeared = torch.nn.functional.avg_pool2d(frame, 3, stride=1, padding=1,
                                             count_include_pad=False)
    assert detail(smeared) < 0.7 * detail(frame)
    assert detail(torch.full_like(frame, 0.3)) == 0


def test_a_still_clip_has_no_temporal_error(clip: Clip) -> None:
    still = [clip.frames[0]] * 3
    assert temporal_error(still, still) == pytest.approx(0, abs=1e-9)
    with pytest.raises(StylelibError, match="as many outputs as frames"):
        temporal_error(still[:2], still)
    with pytest.raises(StylelibError, match="Pass both flows and masks"):
        temporal_error(still, still, flows=[torch.zeros(1, 2, *SIZE)] * 2)


# --------------------------------------------------------------------------- video files


def _source(path: Path, frames: list[torch.Tensor], sound: bool = True) -> Path:
    """An H.264 clip of ``frames`` at 12 fps, with a 440 Hz tone as long as the picture."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        tone = container.add_stream("aac", rate=16000) if sound else None
        for frame in frames:
            array = (frame[0].permute(1, 2, 0) * 255).round().byte().numpy()
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
        if tone is not None:
            seconds = np.arange(16000 * len(frames) // 12) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32)[None]
            part = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            part.sample_rate = 16000
            container.mux(tone.encode(part))
            container.mux(tone.encode(None))
    return path


def _sound_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_frames_and_sound_survive_a_round_trip(suffix: str, clip: Clip, tmp_path: Path) -> None:
    source = _source(tmp_path / "in.mp4", clip.frames)
    read = list(video.read_frames(source))
    assert len(read) == len(clip.frames)
    out = video.write_video(tmp_path / f"out{suffix}", read, Fraction(12), source)
    info = video.probe(out)
    assert (info.width, info.height) == (SIZE[1], SIZE[0])
    back = list(video.read_frames(out))
    assert len(back) == len(read)
    assert float((back[3] - read[3]).abs().mean()) < 0.03
    if suffix == ".gif":
        assert not info.audio
    else:
        assert info.audio and float(info.fps) == pytest.approx(12, rel=0.01)
        assert _sound_seconds(out) == pytest.approx(_sound_seconds(source), abs=0.1)
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_a_failed_write_leaves_the_earlier_video(clip: Clip, tmp_path: Path) -> None:
    out = video.write_video(tmp_path / "out.mp4", clip.frames, 12)
    before = out.read_bytes()

    def broken() -> list[torch.Tensor]:
        yield clip.frames[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        video.write_video(out, broken(), 12)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_probe_refuses_what_is_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    with pytest.raises(StylelibError, match="cannot be read as a video"):
        video.probe(text)
    with pytest.raises(StylelibError, match="No video file at"):
        video.probe(tmp_path / "gone.mp4")
    with pytest.raises(StylelibError, match=r"Cannot write a video as '\.png'"):
        video.check_video_output(tmp_path / "out.png")


def test_frame_size_is_even_and_keeps_the_shape() -> None:
    info = video.VideoInfo(320, 240, Fraction(24), 60, False)
    assert video.frame_size(info, 256) == (192, 256)
    assert video.frame_size(info, 101) == (76, 100)
    assert video.frame_size(info, None) == (240, 320)


def test_embedded_video_carries_three_playable_copies(clip: Clip, tmp_path: Path) -> None:
    page = video.embed(clip.frames, 12, caption="pan <over> Tübingen")
    assert page.count("<source ") == 2 and "autoplay loop muted" in page
    assert "pan &lt;over&gt; Tübingen" in page
    for kind, suffix in (("video/webm", ".webm"), ("video/mp4", ".mp4"), ("image/gif", ".gif")):
        start = page.index(f"data:{kind};base64,") + len(f"data:{kind};base64,")
        data = base64.b64decode(page[start:page.index('"', start)])
        (tmp_path / f"back{suffix}").write_bytes(data)
        assert len(list(video.read_frames(tmp_path / f"back{suffix}"))) == len(clip.frames)


def test_embedding_no_frames_is_refused() -> None:
    with pytest.raises(StylelibError, match="No frames"):
        video.embed([], 12)


def test_an_embedded_gif_is_made_smaller_than_a_wide_clip(clip: Clip, tmp_path: Path) -> None:
    wide = [torch.cat([frame] * 3, dim=-1) for frame in clip.frames[:3]]  # 192 px wide
    page = video.embed(wide, 12)
    start = page.index("data:image/gif;base64,") + len("data:image/gif;base64,")
    (tmp_path / "back.gif").write_bytes(base64.b64decode(page[start:page.index('"', start)]))
    assert video.probe(tmp_path / "back.gif").width == video.GIF_WIDTH
    assert 'width="192"' in page  # shown at the clip's size


def test_frame_store_keeps_frames_for_one_key_only(clip: Clip, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    store = video.FrameStore(out, {"style": "candy"})
    store.put(0, clip.frames[0])
    again = video.FrameStore(out, {"style": "candy"})
    assert again.count() == 1
    assert again.get(0) is not None and again.get(1) is None
    other = video.FrameStore(out, {"style": "mosaic"})
    assert other.count() == 0
    other.remove()
    assert not other.folder.exists()


# --------------------------------------------------------------------------- the fixes


def _flickering(seed: int = 0) -> methods.Method:
    """A method that paints each frame as itself plus fresh noise: pure flicker."""
    generator = torch.Generator().manual_seed(seed)

    def load(device: torch.device, settings: methods.Settings, *, progress: bool = False
             ) -> tuple[methods.Painter, methods.Size]:
        def paint(photo: torch.Tensor, painting: object, style: str, /, *,
                  on_step: object = None) -> torch.Tensor:
            return (photo + 0.1 * torch.randn(photo.shape, generator=generator)).clamp(0, 1)

        return paint, lambda: 0.0  # type: ignore[return-value]

    return methods.Method("noisy", "noise", "none", load, reads_painting=False)


def _painted(clip: Clip, weight: float, store: video.FrameStore | None = None,
             method: methods.Method | None = None) -> list[torch.Tensor]:
    method = method or _flickering()
    paint, _ = method.load(torch.device("cpu"), {})
    job = motion.Painting(method, paint, None, "noise")
    return list(motion.stylize_frames(clip.frames, job, weight, store))


def test_blending_along_the_flow_cuts_flicker(clip: Clip) -> None:
    alone = _painted(clip, 0.0)
    steady = _painted(clip, 0.6)
    assert temporal_error(steady, clip.frames) < 0.5 * temporal_error(alone, clip.frames)
    assert torch.equal(alone[0], steady[0])  # the first frame has nothing to keep
    assert all(torch.equal(f, motion.quantised(f)) for f in steady)


def test_a_resumed_job_ends_as_an_uninterrupted_one(clip: Clip, tmp_path: Path) -> None:
    whole = _painted(clip, 0.6)
    store = video.FrameStore(tmp_path / "out.mp4", {"job": 1})
    partial = motion.stylize_frames(clip.frames, motion.Painting(
        _flickering(), _flickering().load(torch.device("cpu"), {})[0], None, "noise"), 0.6, store)
    for _ in range(4):
        next(partial)
    assert store.count() == 4
    # a new process: a fresh noise stream that has drawn for the 4 kept frames already
    method = _flickering()
    paint, _ = method.load(torch.device("cpu"), {})
    for frame in clip.frames[:4]:
        paint(frame, None, "noise")
    resumed = list(motion.stylize_frames(clip.frames, motion.Painting(method, paint, None,
                                                                      "noise"), 0.6, store))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, resumed, strict=True))


def test_a_blend_weight_of_one_is_refused() -> None:
    with pytest.raises(StylelibError, match="share of the previous frame kept, below 1"):
        motion.check_weight(methods.get("fast"), 1.0)
    assert motion.check_weight(methods.get("gatys"), 5000.0) == 5000.0


@pytest.mark.slow
def test_gatys_anchor_holds_the_result_to_the_anchor(photo: torch.Tensor,
                                                     painting: torch.Tensor) -> None:
    target = torch.full_like(photo, 0.5)
    mask = torch.ones_like(photo[:, :1])
    settings = {"steps": 8, "backbone": "vgg16-hed", "progress": False}
    free = gatys.stylize(photo, painting, **settings).image
    held = gatys.stylize(photo, painting, init=target, anchor=gatys.Anchor(target, mask, 1e5),
                         **settings).image
    assert float((held - target).abs().mean()) < 0.25 * float((free - target).abs().mean())


# --------------------------------------------------------------------------- the command


def test_video_command_paints_every_frame_keeps_rate_and_sound(
        clip: Clip, tmp_path: Path, mirror: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _source(tmp_path / "in.mp4", clip.frames)
    out = tmp_path / "out.mp4"
    assert main(["video", str(source), "the_scream", "-o", str(out), "--method", "fast"]) == 0
    info = video.probe(out)
    assert (info.width, info.height, info.audio) == (SIZE[1], SIZE[0], True)
    frames = list(video.read_frames(out))
    assert len(frames) == len(clip.frames)
    assert ssim(frames[2], clip.frames[2]) < 0.9  # painted, not copied
    assert not (tmp_path / ".out.mp4.frames").exists()
    assert "wrote" in capsys.readouterr().out


def test_video_command_goes_on_after_ctrl_c(clip: Clip, tmp_path: Path, mirror: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = _source(tmp_path / "in.mp4", clip.frames, sound=False)
    out = tmp_path / "out.webm"
    real = motion._paint
    calls = []

    def stop_at_third(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(motion, "_paint", stop_at_third)
    assert main(["video", str(source), "the_scream", "-o", str(out), "--method", "fast"]) == 130
    assert "2 frames are finished" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.setattr(motion, "_paint", real)
    assert main(["video", str(source), "the_scream", "-o", str(out), "--method", "fast"]) == 0
    assert "going on from 2 finished frames" in capsys.readouterr().out
    assert len(list(video.read_frames(out))) == len(clip.frames)


@pytest.mark.parametrize(("args", "message"), [
    (["--temporal-weight", "1"], "below 1"),
    (["--size", "4"], "must be an integer >= 16"),
    (["--size", "18"], "each side must be at least 16 px: use --size 20 or more"),
    (["--tile", "600", "--method", "sdedit"], "--tile does not apply to --method sdedit"),
])
def test_video_command_refuses_bad_settings(args: list[str], message: str, clip: Clip,
                                            tmp_path: Path, mirror: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = _source(tmp_path / "in.mp4", clip.frames[:2], sound=False)
    argv = ["video", str(source), "the_scream", "-o", str(tmp_path / "out.mp4")]
    assert main([*argv, *(args if "--method" in args else [*args, "--method", "fast"])]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_video_command_will_not_overwrite_its_input(clip: Clip, tmp_path: Path, mirror: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    source = _source(tmp_path / "in.mp4", clip.frames[:2], sound=False)
    before = source.read_bytes()
    assert main(["video", str(source), "the_scream", "-o", str(source), "--method", "fast"]) == 2
    assert "is the input video" in capsys.readouterr().err
    assert source.read_bytes() == before
