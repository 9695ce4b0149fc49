"""Video files: reading frames as image tensors, writing frames (and the source's sound) to a
new video atomically, and the on-disk store of finished frames that lets a stopped video job
go on where it stopped. Decoding and encoding are PyAV's (its wheel carries FFmpeg)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import itertools
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import torch

from stylelib.errors import StylelibError
from stylelib.files import write_atomically
from stylelib.images import load_image, resize_to, save_image, to_array, to_pil

CODECS = {".mp4": ("libx264", "aac"), ".mov": ("libx264", "aac"), ".mkv": ("libx264", "aac"),
          ".webm": ("libvpx-vp9", "libopus")}
"""Video and sound codec by output suffix; ``.gif`` (no sound) is written by Pillow."""
SUFFIXES = (*CODECS, ".gif")
GIF_WIDTH = 160
"""Widest GIF :func:`embed` inlines: painted texture barely compresses in a GIF (24 painted
frames of 776 x 206 px took 2.7 MB, seven times their MP4; 48 of 356 x 320 px, 2.7 MB, twelve
times), so the fallback for a browser without ``<video>`` is a small one, shown scaled up."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds: its first video stream's size, frame rate and frame count (0
    when the container does not say), and whether it has sound."""

    width: int
    height: int
    fps: Fraction
    frames: int
    audio: bool


def probe(path: str | Path) -> VideoInfo:
    """The size, rate and length of the video at ``path``; one clear error if it is missing,
    not a video, or has no frames."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise StylelibError(f"No video file at {source}: check the path.")
    try:
        with av.open(str(source)) as container:
            if not container.streams.video:
                raise StylelibError(f"{source} has no video stream: pass a video file (e.g. "
                                    ".mp4 or .webm).")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise StylelibError(f"{source} has no frames: pass a video with at least one.")
            rate = stream.average_rate or stream.guessed_rate or Fraction(24)
            return VideoInfo(first.width, first.height, Fraction(rate), stream.frames,
                             bool(container.streams.audio))
    except av.error.FFmpegError as error:
        raise StylelibError(f"{source} cannot be read as a video ({error.strerror or error}): "
                            "pass a video file such as .mp4, .webm or .mov.") from None


def frame_size(info: VideoInfo, size: int | None) -> tuple[int, int]:
    """The frames' (height, width) with the long side ``size`` (the video's own if ``None``),
    both rounded to even numbers, as the encoders' 4:2:0 colour needs."""
    scale = 1.0 if size is None else size / max(info.width, info.height)
    return (max(2, round(info.height * scale / 2) * 2), max(2, round(info.width * scale / 2) * 2))


def read_frames(path: str | Path, size: tuple[int, int] | None = None
                ) -> Iterator[torch.Tensor]:
    """The video's frames in order as ``[1, 3, H, W]`` RGB in [0, 1], resized to ``size``
    (height, width) when given."""
    with av.open(str(Path(path).expanduser())) as container:
        for frame in container.decode(container.streams.video[0]):
            array = frame.to_ndarray(format="rgb24")
            image = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous() / 255
            yield image if size is None else resize_to(image, size).clamp(0, 1)


def check_video_output(path: str | Path) -> Path:
    """Check that a video can be written at ``path`` (a known suffix, an existing folder)
    before any work is done for it."""
    target = Path(path).expanduser()
    if target.suffix.lower() not in SUFFIXES:
        raise StylelibError(f"Cannot write a video as {target.suffix or 'no extension'!r}: use "
                            f"{', '.join(SUFFIXES)}.")
    if target.is_dir():
        raise StylelibError(f"{target} is a directory: pass a file name such as "
                            f"{target / 'out.mp4'}.")
    if not target.parent.is_dir():
        raise StylelibError(f"Folder {target.parent} does not exist: create it or pick another "
                            "path.")
    return target


def write_video(path: str | Path, frames: Iterable[torch.Tensor], fps: Fraction | float,
                sound_from: str | Path | None = None) -> Path:
    """Encode ``frames`` (``[1, 3, H, W]`` in [0, 1], all one even size) at ``fps`` into
    ``path``, atomically: a failure or Ctrl-C leaves no partial file and any earlier one as
    it was. The sound of ``sound_from`` is carried over, re-encoded for the container (a GIF
    has none). H.264 at CRF 18 for .mp4/.mov/.mkv, VP9 for .webm."""
    target = check_video_output(path)
    rate = Fraction(fps).limit_denominator(1001)
    if target.suffix.lower() == ".gif":
        return write_atomically(target, lambda temporary: _write_gif(temporary, frames, rate))
    try:
        return write_atomically(target, lambda temporary: _encode(temporary, frames, rate,
                                                                  sound_from))
    except av.error.FFmpegError as error:
        raise StylelibError(
            f"FFmpeg could not write {target} ({error}): the frames are kept; write a .gif "
            "(no sound), or re-encode the clip's sound first, and run the same command "
            "again.") from None


def _write_gif(path: Path, frames: Iterable[torch.Tensor], rate: Fraction) -> None:
    """A looping GIF, each frame with its own adaptive palette (Pillow)."""
    pictures = [to_pil(frame) for frame in frames]
    if not pictures:
        raise StylelibError("No frames to write.")
    pictures[0].save(path, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=round(1000 / float(rate)), loop=0)


def _encode(path: Path, frames: Iterable[torch.Tensor], rate: Fraction,
            sound_from: str | Path | None) -> None:
    """Write the video stream, then the sound of ``sound_from`` if it has any (both streams
    are declared before the first packet, as the container's header needs)."""
    video_codec, sound_codec = CODECS[path.suffix.lower()]
    pictures = (_picture(frame) for frame in frames)
    first = next(pictures, None)
    if first is None:
        raise StylelibError("No frames to write.")
    source = None if sound_from is None else Path(sound_from).expanduser()
    with av.open(str(path), "w") as container:
        stream = container.add_stream(video_codec, rate=rate)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = first.width, first.height, "yuv420p"
        stream.options = ({"crf": "18"} if video_codec == "libx264"
                          else {"crf": "30", "b": "0", "row-mt": "1"})
        with _sound(source) as original:
            sound: av.AudioStream | None = None
            if original is not None:
                heard = original.streams.audio[0]
                added = container.add_stream(
                    sound_codec, rate=48000 if sound_codec == "libopus" else heard.rate or 48000)
                assert isinstance(added, av.AudioStream)
                sound = added
                sound.layout = heard.layout.name
            for picture in itertools.chain([first], pictures):
                container.mux(stream.encode(picture))
            container.mux(stream.encode(None))
            if original is not None and sound is not None:
                _copy_sound(container, original, sound)


def _picture(frame: torch.Tensor) -> av.VideoFrame:
    """One ``[1, 3, H, W]`` frame in [0, 1] as an 8-bit RGB frame for the encoder."""
    return av.VideoFrame.from_ndarray(to_array(frame, "frame"), format="rgb24")


@contextlib.contextmanager
def _sound(source: Path | None) -> Iterator[av.container.InputContainer | None]:
    """``source`` opened for its sound, or ``None`` when there is none to carry over."""
    if source is None:
        yield None
        return
    with av.open(str(source)) as original:
        yield original if original.streams.audio else None


def _copy_sound(container: av.container.OutputContainer, original: av.container.InputContainer,
                stream: av.AudioStream) -> None:
    """Decode the first sound stream of ``original`` and encode it into ``stream``."""
    resampler = av.AudioResampler(format=stream.format.name, layout=stream.layout.name,
                                  rate=stream.rate)
    for sound in original.decode(original.streams.audio[0]):
        sound.pts = None
        for part in resampler.resample(sound):
            container.mux(stream.encode(part))
    for part in resampler.resample(None):
        container.mux(stream.encode(part))
    container.mux(stream.encode(None))


def embed(frames: Sequence[torch.Tensor], fps: Fraction | float, *, caption: str = "") -> str:
    """An HTML ``<video>`` that plays ``frames`` in a static page, looping and muted: VP9
    WebM and H.264 MP4 sources (each browser plays the first it can) and a GIF for a browser
    without ``<video>`` (at most :data:`GIF_WIDTH` wide, shown scaled up), all inlined as
    data URIs so the page needs no other file."""
    if not frames:
        raise StylelibError("No frames to embed.")
    height, width = frames[0].shape[-2:]
    scale = min(1.0, GIF_WIDTH / width)
    small = [resize_to(frame, (round(height * scale), round(width * scale))) if scale < 1
             else frame for frame in frames]
    sources = {}
    with tempfile.TemporaryDirectory() as folder:
        for suffix, pictures in ((".webm", frames), (".mp4", frames), (".gif", small)):
            path = write_video(Path(folder) / f"clip{suffix}", pictures, fps)
            sources[suffix] = base64.b64encode(path.read_bytes()).decode("ascii")
    label = html.escape(caption)
    return (f'<figure class="stylelib-video"><video width="{width}" height="{height}" '
            f'autoplay loop muted playsinline controls>'
            f'<source src="data:video/webm;base64,{sources[".webm"]}" type="video/webm">'
            f'<source src="data:video/mp4;base64,{sources[".mp4"]}" type="video/mp4">'
            f'<img src="data:image/gif;base64,{sources[".gif"]}" width="{width}" '
            f'height="{height}" alt="{label}"></video>'
            + (f"<figcaption>{label}</figcaption>" if caption else "") + "</figure>")


class FrameStore:
    """Finished frames of one video job, as PNG files in a folder beside its output, so that
    the same command after Ctrl-C or a crash goes on from the first missing frame.

    ``key`` says what the frames were made with (input, painting, settings); a folder left by
    a job with another key is emptied first, so no frame of an earlier job is ever reused.
    """

    def __init__(self, output: Path, key: dict[str, object]) -> None:
        self.folder = output.with_name(f".{output.name}.frames")
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
        self.key = digest.hexdigest()
        stamp = self.folder / "key.txt"
        if self.folder.exists() and (not stamp.is_file() or stamp.read_text() != self.key):
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(self.key)

    def path(self, index: int) -> Path:
        """Where frame ``index`` is kept."""
        return self.folder / f"{index:06d}.png"

    def get(self, index: int) -> torch.Tensor | None:
        """Frame ``index`` if it was finished, else ``None``."""
        path = self.path(index)
        return load_image(path) if path.is_file() else None

    def put(self, index: int, image: torch.Tensor) -> None:
        """Keep a finished frame (written atomically: a stopped write leaves no frame)."""
        save_image(image, self.path(index))

    def count(self) -> int:
        """How many frames are kept (not counting a temporary file a killed write left)."""
        return len(list(self.folder.glob("[0-9]*.png")))

    def frames(self, count: int) -> Iterator[torch.Tensor]:
        """Frames 0 … ``count`` - 1, read back in order."""
        for index in range(count):
            frame = self.get(index)
            if frame is None:
                raise StylelibError(f"Frame {index} is missing from {self.folder}: run the same "
                                    "command again to make it.")
            yield frame

    def remove(self) -> None:
        """Delete the folder once the video is written."""
        shutil.rmtree(self.folder, ignore_errors=True)

