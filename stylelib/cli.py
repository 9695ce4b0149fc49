"""``python -m stylelib``: stylise an image or a video from the shell with any of the book's
methods, train the networks they need, time them, or compare them.

Every argument is checked before any work starts; a bad one ends the command with one line on
stderr (exit status 2) and no output file.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from stylelib import assets, bench, methods, motion, upsampling, video
from stylelib.colour import luminance_only
from stylelib.data import photo_files
from stylelib.errors import ImageError, StoppedError, StylelibError, check_blend, command
from stylelib.files import same_file, sha256_of
from stylelib.images import MIN_SIDE, check_output, check_size, load_image, resize, save_image
from stylelib.profiles import get_profile, pick_device
from stylelib.result_cache import package_digest
from stylelib.upsampling import guided_upsample, painting_size, working_size

EXAMPLES = """examples:
  python -m stylelib stylize photo.jpg starry_night -o out.png
  python -m stylelib stylize photo.jpg the_scream -o out.png --method fast --size 1024
  python -m stylelib stylize photo.jpg my_painting.jpg -o out.png --steps 300 --style-weight 30
  python -m stylelib stylize photo.jpg my_painting.jpg -o out.png --method adain --alpha 0.7
  python -m stylelib stylize photo.jpg the_scream -o out.png --method fast --colour photo
  python -m stylelib stylize photo.jpg starry_night -o out.png --init noise --seed 3
  python -m stylelib stylize holiday/ the_scream -o holiday_styled --method fast
  python -m stylelib stylize photo.jpg starry_night:0.7 the_scream:0.3 -o out.png --method adain
  python -m stylelib stylize photo.jpg starry_night -o out.png --method sdedit --strength 0.4
  python -m stylelib train fast starry_night --steps 2000 --minutes 60
  python -m stylelib bench gatys --size 256
  python -m stylelib compare --methods fast gatys --size 256

CONTENT and STYLE are image files or names of the book's images (e.g. tubingen, starry_night);
for --method fast, STYLE is a bundled network's painting or a .safetensors file it trained;
for --method sdedit, STYLE is starry_night (the bundled prior) or a prior's .safetensors file
(python -m stylelib train prior PAINTING trains one)."""


def _check_options(args: argparse.Namespace, method: methods.Method) -> dict[str, object]:
    """The method's settings from the command line, refusing options it would ignore and
    out-of-range numbers before anything is loaded."""
    taken = {o.name: o for o in method.options}
    for name, users in methods.options().items():
        if getattr(args, name) is not None and name not in taken:
            raise StylelibError(
                f"--{name.replace('_', '-')} does not apply to --method {method.name} (only to "
                f"{' and '.join(m.name for m, _ in users)}): drop it, or choose that method."
            )
    if args.size is not None and args.size < 1:
        raise StylelibError(f"--size must be a positive integer, got {args.size}.")
    for name, option in taken.items():
        value = getattr(args, name)
        if option.kind is int and value is not None and value < option.minimum:
            wanted = ("a positive integer" if option.minimum == 1
                      else f"an integer >= {option.minimum}")
            raise StylelibError(f"--{name.replace('_', '-')} must be {wanted}, got {value}.")
    return method.settings({name: getattr(args, name) for name in taken})


def _where(source: str) -> list[Path]:
    """The files an input argument may be read from: the path itself, or for a book image name
    its local copies (mirror, download cache)."""
    if Path(source).expanduser().exists():
        return [Path(source).expanduser()]
    try:
        return assets.local_copies(source)
    except StylelibError:
        return []


def _stylize(args: argparse.Namespace) -> None:
    """Check the output path and arguments, stylise, save atomically, report the time; a
    folder of photos goes into a folder of results (see :func:`_jobs`)."""
    get_profile()  # an unknown $STYLELIB_PROFILE is an error here as in the notebooks
    method = methods.get(args.method)
    settings = _check_options(args, method)
    _check_snapshots(args.save_every, method)
    styles = _styles(args.style, method)
    jobs = _jobs(args)
    for role, given in (("content", args.content), *(("style", s) for s, _ in styles)):
        if any(same_file(source, out) for source in _where(given) for _, out in jobs):
            raise StylelibError(
                f"-o {args.output} is the {role} image {given}: writing there would replace "
                "it. Pick another output file name."
            )
    work = _working_size(args, method)
    device = pick_device(args.device)
    batch = Path(args.content).expanduser().is_dir()  # a folder of photos, as _jobs read it
    todo = [(photo, out) for photo, out in jobs if not (batch and out.exists())]
    if len(todo) < len(jobs):
        print(f"skipping {len(jobs) - len(todo)} photos whose result is already in {args.output}")
    painting: torch.Tensor | methods.Mix | None = None
    paint: methods.Painter | None = None
    for photo, out in todo:
        started = time.perf_counter()
        try:
            content = load_image(photo, args.size, device=device)
        except ImageError as error:
            if not batch:
                raise
            print(f"skipping {photo}: {error}")  # one bad file must not stop a folder
            continue
        if paint is None:  # after the first photo, so a bad photo is the error reported first
            if method.reads_painting:
                side = painting_size(work, 1.0 if args.style_scale is None else args.style_scale)
                pictures = [load_image(s, side, device=device) for s, _ in styles]
                painting = (pictures[0] if len(styles) == 1 else
                            methods.Mix(pictures, [weight for _, weight in styles]))
            paint, _ = method.load(device, settings, progress=True)
        # on_step only when asked for: a reader's own painter need not take it (chapter 7).
        snapshots = {"on_step": _snapshots(out, args.save_every)} if args.save_every else {}
        small = resize(content, work) if work < args.size else content
        result = paint(small, painting, styles[0][0], **snapshots)
        if work < args.size:
            result = guided_upsample(result, content)
        if args.colour == "photo":
            result = luminance_only(result, content)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(result, out)
        height, width = result.shape[-2:]
        print(f"{args.method}: wrote {out} ({width}x{height}) in "
              f"{time.perf_counter() - started:.1f} s on {device}")


def _working_size(args: argparse.Namespace, method: methods.Method) -> int:
    """The long side the method paints at (see :mod:`stylelib.upsampling`); ``--style-scale``
    refused for a method that paints at the print's size."""
    if not method.upsamples:
        if args.style_scale is not None:
            able = " and ".join(m.name for m in methods.REGISTRY.values() if m.upsamples)
            raise StylelibError(f"--style-scale does not apply to --method {method.name} (only "
                                f"to {able}): drop it, or choose that method.")
        return int(args.size)
    return working_size(args.size, 1.0 if args.style_scale is None else args.style_scale)


def _check_snapshots(every: int | None, method: methods.Method) -> None:
    """Refuse ``--save-every`` below 1, or for a method without steps."""
    if every is None:
        return
    if not method.steps:
        able = " and ".join(m.name for m in methods.REGISTRY.values() if m.steps)
        raise StylelibError(f"--save-every does not apply to --method {method.name} (only to "
                            f"{able}): drop it, or choose that method.")
    if every < 1:
        raise StylelibError(f"--save-every must be a positive integer, got {every}.")


def _snapshots(out: Path, every: int) -> methods.Step:
    """Save every ``every``-th intermediate image beside ``out`` as ``OUT_00050.png`` …, named
    so they sort in order (the steps counted across all scales of a coarse-to-fine run)."""
    count = 0

    def save(step: int, image: torch.Tensor) -> None:
        nonlocal count
        count += 1
        if count % every == 0:
            save_image(image, out.with_name(f"{out.stem}_{count:05d}{out.suffix}"))

    return save


def _styles(given: Sequence[str], method: methods.Method) -> list[tuple[str, float]]:
    """The paintings ``STYLE[:WEIGHT] ...`` names, their weights scaled to sum to 1 (equal
    where none is given); several only for a method that blends them."""
    styles = []
    for item in given:
        name, _, weight = item.rpartition(":")
        try:
            styles.append((name, float(weight)) if name else (item, 1.0))
        except ValueError:  # a colon that is part of the name
            styles.append((item, 1.0))
    if len(styles) > 1 and not method.blends:
        able = " or ".join(m.name for m in methods.REGISTRY.values() if m.blends)
        raise StylelibError(
            f"--method {method.name} paints one painting, not {len(styles)}: give one STYLE, "
            f"or blend them with --method {able}.")
    weights = check_blend([weight for _, weight in styles], len(styles))
    return [(name, weight) for (name, _), weight in zip(styles, weights, strict=True)]


def _jobs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Each photo to stylise with the file its result goes to: CONTENT and ``-o``, or for a
    folder CONTENT every image in it (and its subfolders) to ``-o``'s folder, same relative
    path, ``.png``. A result already there is kept and skipped, so the same command after an
    interruption goes on where it stopped."""
    folder = Path(args.content).expanduser()
    if not folder.is_dir():
        return [(args.content, check_output(args.output))]
    target = Path(args.output).expanduser()
    if target.suffix or (target.exists() and not target.is_dir()):
        raise StylelibError(
            f"CONTENT {folder} is a folder, so -o must be a folder for the results, not "
            f"{target}: e.g. -o {folder.resolve().name}_styled.")
    if target.resolve().is_relative_to(folder.resolve()):
        raise StylelibError(
            f"-o {target} is inside CONTENT {folder}: its results would be read as photos on "
            f"the next run. Put them beside it, e.g. -o {folder.resolve().name}_styled.")
    jobs = [(str(photo), target / photo.relative_to(folder).with_suffix(".png"))
            for photo in photo_files(folder)]
    taken: dict[Path, str] = {}
    for photo, out in jobs:
        if out in taken:
            raise StylelibError(
                f"{photo} and {taken[out]} would both be saved as {out}: rename one of them.")
        taken[out] = photo
    return jobs


def _add_stylize(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``stylize``: the photo, the painting, the output, the method and its options."""
    stylize = commands.add_parser(
        "stylize", help="stylise one image", description="Stylise CONTENT like STYLE.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stylize.add_argument("content", help="photo: file, book image name, or a folder of photos "
                                         "(then -o is a folder for the results)")
    stylize.add_argument("style", nargs="+", metavar="STYLE[:WEIGHT]",
                         help="painting: file or book image name (see --method); several, "
                              "each with an optional weight, are blended by gatys, adain and "
                              "magenta")
    stylize.add_argument("-o", "--output", required=True,
                         help="output .png, .jpg or .webp (a folder for a folder of photos)")
    _add_method_arguments(stylize, methods.DEFAULT)
    stylize.add_argument("--size", type=int, default=512, help="long side in pixels (512)")
    stylize.add_argument("--colour", choices=("painting", "photo"), default="painting",
                         help="photo: keep the photo's colours, every method (the result's "
                              "luminance with the photo's chroma, Gatys et al. 2016)")
    stylize.add_argument("--style-scale", type=float, default=None, metavar="S",
                         help=f"size of the painting's marks: 1 paints them as at "
                              f"{upsampling.WORKING} px at every larger --size, 2 twice as "
                              "large, 0.25 a quarter (a larger print is painted at "
                              f"{upsampling.WORKING} px / S and enlarged with the photo's "
                              "detail); fast, adain, magenta")
    stylize.add_argument("--save-every", type=int, default=None, metavar="N",
                         help="also save every N-th step's image beside -o, as OUT_00050.png "
                              "and so on (gatys)")
    stylize.add_argument("--device", default=None, help="cpu, cuda, mps (default: best)")
    stylize.set_defaults(run=_stylize)


def _add_method_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """``--method`` (``default`` unless told) and every method's own options."""
    parser.add_argument("--method", choices=list(methods.REGISTRY), default=default,
                        help=", ".join(f"{m.name} ({m.summary})"
                                       for m in methods.REGISTRY.values())
                        + f"; default {default}")
    for name, users in methods.options().items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=users[0][1].kind, default=None,
            help="; ".join(f"{m.name}: {o.help}" + ("" if o.default is None else f" ({o.default})")
                           for m, o in users))


def _add_video(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``video``: the clip, the painting, the output, the method, the temporal weight."""
    clip = commands.add_parser(
        "video", help="stylise a video, frame by frame without flicker (resumable)",
        description="Stylise every frame of VIDEO like STYLE, each tied to the last along the "
                    "optical flow so strokes and colours do not flicker. The frame rate and the "
                    "sound are kept; finished frames are kept beside -o, so the same command "
                    "after Ctrl-C goes on where it stopped.",
        epilog="examples:\n  python -m stylelib video clip.mp4 the_scream -o clip_scream.mp4\n"
               "  python -m stylelib video clip.mp4 candy -o out.webm --method adain --size 384\n"
               "  python -m stylelib video clip.mp4 starry_night -o out.mp4 --method gatys "
               "--steps 50",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    clip.add_argument("video", metavar="VIDEO", help="the clip: .mp4, .webm, .mov, .mkv, ...")
    clip.add_argument("style", nargs="+", metavar="STYLE[:WEIGHT]",
                      help="painting: as for stylize")
    clip.add_argument("-o", "--output", required=True,
                      help=f"output video: {', '.join(video.SUFFIXES)} (a GIF has no sound)")
    _add_method_arguments(clip, motion.VIDEO_DEFAULT)
    clip.add_argument("--size", type=int, default=None,
                      help=f"long side of the frames in pixels (default: the clip's, at most "
                           f"{motion.LONGEST} px)")
    clip.add_argument("--temporal-weight", type=float, default=None, metavar="W",
                      help="how strongly each frame keeps the last: for one-pass methods the "
                           f"share kept where the flow holds, 0 to below 1 "
                           f"({motion.BLEND}); for gatys the temporal loss's weight "
                           f"({motion.ANCHOR_WEIGHT}); 0 paints every frame by itself")
    clip.add_argument("--device", default=None, help="cpu, cuda, mps (default: best)")
    clip.set_defaults(run=_video)


def _video(args: argparse.Namespace) -> None:
    """Check everything, paint the frames into the frame store, then write the video."""
    get_profile()
    method = methods.get(args.method)
    settings = _check_options(args, method)
    info = video.probe(args.video)
    out = video.check_video_output(args.output)
    if same_file(args.video, out):
        raise StylelibError(f"-o {args.output} is the input video: writing there would replace "
                            "it. Pick another output file name.")
    longest = args.size or min(max(info.width, info.height), motion.LONGEST)
    check_size(longest, "--size")
    size = video.frame_size(info, longest)
    if min(size) < MIN_SIDE:
        enough = next(side for side in itertools.count(longest)
                      if min(video.frame_size(info, side)) >= MIN_SIDE)
        raise StylelibError(
            f"--size {longest} makes {size[1]}x{size[0]} px frames; each side must be at least "
            f"{MIN_SIDE} px: use --size {enough} or more.")
    styles = _styles(args.style, method)
    weight = motion.check_weight(method, motion.default_weight(method) if
                                 args.temporal_weight is None else args.temporal_weight)
    device = pick_device(args.device)
    painting: torch.Tensor | methods.Mix | None = None
    if method.reads_painting:
        pictures = [load_image(s, max(size), device=device) for s, _ in styles]
        painting = (pictures[0] if len(styles) == 1
                    else methods.Mix(pictures, [w for _, w in styles]))
    paint, _ = method.load(device, settings, progress=False)
    source = Path(args.video).expanduser().resolve()
    store = video.FrameStore(out, {"video": str(source), "bytes": source.stat().st_size,
                                   "modified": source.stat().st_mtime_ns, "size": size,
                                   "styles": styles, "method": method.name,
                                   "settings": settings, "weight": weight,
                                   "stylelib": package_digest(),
                                   "files": [_digest(s) for s, _ in styles]})
    kept = store.count()
    if kept:
        print(f"going on from {kept} finished frames kept in {store.folder}")
    started = time.perf_counter()
    count = 0
    frames = (frame.to(device) for frame in video.read_frames(source, size))
    job = motion.Painting(method, paint, painting, styles[0][0], device)
    try:
        for _ in tqdm(motion.stylize_frames(frames, job, weight, store),
                      total=info.frames or None, desc=f"{method.name} frames", unit="frame"):
            count += 1
    except KeyboardInterrupt as stop:
        signum = stop.args[0] if stop.args else signal.SIGINT
        raise StoppedError(f"{count} frames are finished and kept in {store.folder}; run the "
                           "same command again to go on from there.", signum) from None
    video.write_video(out, store.frames(count), info.fps, source)
    store.remove()
    seconds = time.perf_counter() - started
    sound = ("; a GIF has no sound, so the clip's was left out"
             if info.audio and out.suffix.lower() == ".gif" else "")
    print(f"{method.name}: wrote {out} ({count} frames, {size[1]}x{size[0]}, "
          f"{float(info.fps):.3g} fps) in {seconds:.1f} s, "
          f"{seconds / max(count - kept, 1):.2f} s a painted frame on {device}{sound}")


def _digest(source: str) -> str | None:
    """The sha256 of a STYLE that is a file (a painting or trained weights), else ``None``:
    retrained weights must not resume a video painted with the old ones."""
    path = Path(source).expanduser()
    return sha256_of(path) if path.is_file() else None


def _add_train(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``train KIND ...``: each trainer's own options, parsed by its module (imported only
    when that trainer runs: the diffusion prior's pulls in diffusers)."""
    train = commands.add_parser(
        "train", help="train a network a method needs (resumable)",
        description="Train one of the networks the methods need, on the course's collection. "
                    "Every run saves checkpoints; the same command again goes on from there.",
    )
    kinds = train.add_subparsers(dest="trainer", required=True, metavar="KIND")
    for trainer in methods.trainers():
        kinds.add_parser(trainer.name, help=trainer.help, add_help=False)  # see main()


def parser() -> argparse.ArgumentParser:
    """The command line: ``stylize``, ``video``, ``train``, ``bench`` and ``compare``."""
    main = argparse.ArgumentParser(
        prog="python -m stylelib", description="Neural style transfer from the shell.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = main.add_subparsers(dest="command", required=True)
    _add_stylize(commands)
    _add_video(commands)
    _add_train(commands)
    timing = commands.add_parser(
        "bench", help="time a method against the network work it cannot avoid",
        description="Time a style-transfer method against the network work it cannot avoid.",
        epilog="example: python -m stylelib bench gatys --size 256")
    bench.add_bench_arguments(timing)
    timing.set_defaults(run=bench.run_bench)
    table = commands.add_parser(
        "compare", help="every method on the same pairs, measured (chapter 7's table)",
        description="Run the methods on photo-painting pairs and print their times, memory and "
                    "scores, then each against Gatys optimisation pair by pair.",
        epilog="example: STYLELIB_PROFILE=book python -m stylelib compare --size 256")
    bench.add_compare_arguments(table)
    table.set_defaults(run=bench.run_compare)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; bad input prints one ``error:`` line and returns 2.

    ``train KIND ...`` hands everything after KIND, ``--help`` included, to that trainer's own
    parser (argparse cannot pass on arguments that start with a dash)."""
    given = sys.argv[1:] if argv is None else list(argv)
    trainers = {t.name: t for t in methods.trainers()}
    if len(given) >= 2 and given[0] == "train" and given[1] in trainers:
        trainer = importlib.import_module(trainers[given[1]].module)
        return command(lambda: trainer.main(given[2:]))
    args = parser().parse_args(given)
    return command(lambda: args.run(args))
