"""What chapter 8 measures about video: the course's two made clips and a filmed one, each
registered method run over a clip frame by frame and tied to the last frame
(:mod:`stylelib.motion`), scored by flicker, likeness to the frames, fine detail and time; and
the pictures that show a flow and where a result flickers.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from matplotlib.colors import hsv_to_rgb
from PIL import Image, ImageDraw

from stylelib import methods, result_cache
from stylelib.clips import Camera, Clip, filmed_clip, make_clip, measured_clip
from stylelib.errors import StylelibError
from stylelib.flow import end_point_error, trusted_flow, warp
from stylelib.images import load_image, to_array
from stylelib.metrics import detail, ssim, temporal_error
from stylelib.motion import Painting, stylize_frames
from stylelib.profiles import Profile
from stylelib.video import frame_size, probe, read_frames

FPS = 24.0
"""The made clips' frame rate."""
FLICKER_SCALE = 0.5
"""Colour distance (RGB, 0-1 per channel) drawn white in :func:`flicker_map`."""
UNTRUSTED = (0.15, 0.2, 0.45)
"""Colour of the pixels a flicker map leaves out (no reliable flow): dark blue."""


def book_clips(profile: Profile) -> dict[str, Clip]:
    """The chapter's clips, ``profile.clip_frames`` frames of ``profile.size`` pixels wide
    (3:4): ``"pan"`` moves over Tübingen while a square cut from the Golden Gate photo crosses
    it; ``"zoom"`` comes closer to the Golden Gate while drifting right."""
    side = profile.size
    size = (side * 3 // 4 // 2 * 2, side)
    frames = profile.clip_frames
    return {
        "pan": make_clip(load_image("tubingen", 2 * side), size, frames,
                         Camera(pan=(1.5, 0.5), object_side=max(side // 5, 4),
                                object_speed=(3, 1)),
                         object_from=load_image("golden_gate", 128), fps=FPS),
        "zoom": make_clip(load_image("golden_gate", 2 * side), size, frames,
                          Camera(pan=(0.5, 0.0), zoom=1.01), fps=FPS),
    }


def book_filmed_clip(profile: Profile) -> Clip:
    """The first ``2 * profile.clip_frames`` frames of the filmed clip
    (:func:`~stylelib.clips.filmed_clip`), ``profile.size`` pixels wide, with estimated
    flows."""
    path = filmed_clip()
    info = probe(path)
    frames = itertools.islice(read_frames(path, frame_size(info, profile.size)),
                              2 * profile.clip_frames)
    return measured_clip(list(frames), float(info.fps))


def shortened(clip: Clip, frames: int) -> Clip:
    """The first ``frames`` frames of ``clip`` (at least 2), with their flows: a slow method
    is run on fewer frames."""
    if not 2 <= frames <= len(clip.frames):
        raise StylelibError(f"A clip of {len(clip.frames)} frames can be cut to 2 to "
                            f"{len(clip.frames)} frames, not {frames}.")
    return Clip(clip.frames[:frames], clip.flows[:frames - 1], clip.reliable[:frames - 1],
                clip.fps)


def painter(name: str, style: str, side: int, profile: Profile,
            device: torch.device) -> Painting:
    """Method ``name`` loaded with the settings ``profile`` gives it, ready to paint frames of
    long side ``side`` with the painting ``style``."""
    method = methods.get(name)
    paint, _ = method.load(device, method.settings(method.for_profile(profile)))
    picture = load_image(style, side, device=device) if method.reads_painting else None
    return Painting(method, paint, picture, style, device)


@dataclass(frozen=True)
class Run:
    """One method over one clip with one temporal weight: the frames it painted and their
    scores."""

    method: str
    weight: float
    frames: list[torch.Tensor]
    flicker: float
    """Temporal error along the clip's flows (true for a made clip, estimated for a filmed
    one), as a multiple of the clip's own."""
    likeness: float
    """Mean SSIM of each painted frame to its input frame."""
    detail: float
    """Mean :func:`~stylelib.metrics.detail` of the painted frames."""


def floor(clip: Clip) -> float:
    """The clip's own temporal error along its flows: what a stylised clip is held to."""
    return temporal_error(clip.frames, clip.frames, clip.flows, clip.reliable)


def run(clip: Clip, painting: Painting, weight: float) -> Run:
    """Paint every frame of ``clip`` with ``painting``, tied to the last with ``weight`` (0:
    each frame alone), and score the result."""
    frames = [frame.to(painting.device) for frame in clip.frames]
    painted = [image.cpu() for image in stylize_frames(frames, painting, weight)]
    error = temporal_error(painted, clip.frames, clip.flows, clip.reliable)
    return Run(painting.method.name, weight, painted, error / floor(clip),
               sum(ssim(p, f) for p, f in zip(painted, clip.frames, strict=True)) / len(painted),
               sum(detail(p) for p in painted) / len(painted))


def seconds_per_frame(clip: Clip, painting: Painting, weight: float) -> float:
    """The time one tied frame costs (the clip's second: flows, warp and the method), with
    the result cache bypassed so the time is of work, not of a cache read."""
    frames = [frame.to(painting.device) for frame in clip.frames[:2]]
    painted = stylize_frames(frames, painting, weight)
    next(painted)
    with result_cache.bypassed():
        started = time.perf_counter()
        next(painted)
        if painting.device.type == "cuda":
            torch.cuda.synchronize(painting.device)
        return time.perf_counter() - started


def flow_accuracy(clip: Clip) -> tuple[float, float, float]:
    """How well DIS estimates a made clip's flows: the mean and the worst frame's end-point
    error (pixels, where the true flow holds), and the share of pixels on which DIS's trusted
    mask and the true one agree."""
    errors, agree = [], []
    for t in range(1, len(clip.frames)):
        flow, mask = trusted_flow(clip.frames[t], clip.frames[t - 1])
        errors.append(end_point_error(flow, clip.flows[t - 1], clip.reliable[t - 1]))
        agree.append(float((mask == clip.reliable[t - 1]).float().mean()))
    return sum(errors) / len(errors), max(errors), sum(agree) / len(agree)


def flicker_panel(result: Run, clip: Clip, t: int) -> Image.Image:
    """Painted frame ``t`` of ``result`` beside its :func:`flicker_map`, labelled with the
    run's flicker, as one picture: a frame for a slider over temporal weights."""
    sheet = beside([[[result.frames[t]], [flicker_map(result.frames, clip, t)]]],
                   [[f"frame {t}", f"flicker: {result.flicker:.2f} x floor"]])
    return Image.fromarray(to_array(sheet[0]))


def flicker_map(outputs: Sequence[torch.Tensor], clip: Clip, t: int) -> torch.Tensor:
    """Where output ``t`` differs from output ``t - 1`` carried onto it along the clip's flow
    (true for a made clip): black where they agree, white at a colour distance of
    :data:`FLICKER_SCALE` or more, and :data:`UNTRUSTED` blue where the flow does not hold
    (nothing is measured there)."""
    if len(outputs) != len(clip.frames):
        raise StylelibError(f"{len(outputs)} painted frames for a clip of {len(clip.frames)}: "
                            "pass one painted frame per frame of the clip.")
    if not 1 <= t < len(outputs):
        raise StylelibError(f"A flicker map compares frame t with t - 1: t must be 1 to "
                            f"{len(outputs) - 1}, got {t}.")
    moved = warp(outputs[t - 1].float().cpu(), clip.flows[t - 1].cpu())
    distance = (outputs[t].float().cpu() - moved).square().sum(1, keepdim=True).sqrt()
    grey = (distance / FLICKER_SCALE).clamp(0, 1).expand(-1, 3, -1, -1)
    blue = torch.tensor(UNTRUSTED).view(1, 3, 1, 1)
    mask = clip.reliable[t - 1].cpu()
    return grey * mask + blue * (1 - mask)


def flow_picture(flow: torch.Tensor, largest: float | None = None) -> torch.Tensor:
    """A flow as colours: the hue is the direction a point came from, the brightness how far
    (full at ``largest`` pixels, default the flow's own largest offset)."""
    x, y = flow[0, 0].double().cpu(), flow[0, 1].double().cpu()
    length = (x.square() + y.square()).sqrt()
    scale = largest or float(length.max()) or 1.0
    hue = (torch.atan2(y, x) / (2 * torch.pi)) % 1
    hsv = torch.stack([hue, torch.ones_like(hue), (length / scale).clamp(0, 1)], dim=-1)
    return torch.from_numpy(hsv_to_rgb(hsv.numpy())).permute(2, 0, 1)[None].float()


def beside(rows: Sequence[Sequence[Sequence[torch.Tensor]]], labels: Sequence[Sequence[str]],
           gap: int = 4) -> list[torch.Tensor]:
    """Several clips of one length as one: ``rows[r][c]`` is the clip at row ``r``, column
    ``c``, each frame labelled with ``labels[r][c]`` in a band above it, white gaps between."""
    lengths = {len(clip) for row in rows for clip in row}
    if len(lengths) != 1:
        raise StylelibError(f"Clips shown together need one length, got {sorted(lengths)}.")
    return [_sheet([[_labelled(clip[t], text) for clip, text in zip(row, names, strict=True)]
                    for row, names in zip(rows, labels, strict=True)], gap)
            for t in range(lengths.pop())]


def _labelled(frame: torch.Tensor, text: str) -> torch.Tensor:
    """``frame`` under a white band with ``text`` in it."""
    picture = Image.fromarray(to_array(frame))
    band = Image.new("RGB", (picture.width, 14), "white")
    ImageDraw.Draw(band).text((3, 1), text, fill="black")
    sheet = Image.new("RGB", (picture.width, picture.height + band.height), "white")
    sheet.paste(band, (0, 0))
    sheet.paste(picture, (0, band.height))
    return load_image(sheet)


def _sheet(rows: Sequence[Sequence[torch.Tensor]], gap: int) -> torch.Tensor:
    """Frames in a grid with white gaps (each row's frames of one height)."""
    lines = []
    for row in rows:
        parts: list[torch.Tensor] = []
        for frame in row:
            if parts:
                parts.append(torch.ones(1, 3, frame.shape[-2], gap))
            parts.append(frame)
        lines.append(torch.cat(parts, dim=-1))
    width = max(line.shape[-1] for line in lines)
    padded: list[torch.Tensor] = []
    for line in lines:
        if padded:
            padded.append(torch.ones(1, 3, gap, width))
        padded.append(F.pad(line, (0, width - line.shape[-1]), value=1.0))
    return torch.cat(padded, dim=-2)
