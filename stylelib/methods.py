"""The book's ways of stylising, in one registry: what each needs, paints, takes and costs.

The command line (``stylize``, ``train``, ``bench``, ``compare``) and the comparison read
:data:`REGISTRY` and know no method by name, so adding a method is one :func:`register` call
(and the method's own module): it then appears in ``python -m stylelib stylize --help``, in
``python -m stylelib bench`` and in :func:`stylelib.comparison.compare`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import torch

from stylelib import adain, benchmarks, bundled, fast, gatys
from stylelib.costs import megabytes
from stylelib.errors import StylelibError, check_number
from stylelib.images import load_image, resize_to
from stylelib.losses import PerceptualLoss
from stylelib.profiles import Profile


@dataclass(frozen=True)
class Mix:
    """Several paintings and their weights (summing to 1), for the methods that blend styles
    (:attr:`Method.blends`)."""

    paintings: list[torch.Tensor]
    weights: list[float]


Step = Callable[[int, torch.Tensor], None]
"""``on_step(step, image)``: called with the image after each step of a multi-step method."""


class Painter(Protocol):
    """``painter(photo, painting, style)``: one stylised image. ``painting`` is the painting's
    pixels, a :class:`Mix` of several for a method that blends them, or ``None`` for a method
    that does not read them; ``style`` is what the user named: a book image, a file, or for
    per-painting methods the trained weights to use. ``on_step`` sees every intermediate image
    of the methods that have steps (:attr:`Method.steps`)."""

    def __call__(self, photo: torch.Tensor, painting: torch.Tensor | Mix | None, style: str, /,
                 *, on_step: Step | None = None) -> torch.Tensor: ...
Settings = Mapping[str, Any]
"""A method's option values by name (every :attr:`Method.options` entry present)."""
Benchmark = Callable[[int, int, int, str | None, str | None], list[tuple[str, str]]]
"""``bench(size, repeat, warmup, backbone, device)``: rows of label and value."""


Size = Callable[[], float]
"""The megabytes of weights a painter holds, per network where it loads one per painting
(asked after it has painted: some load their weights lazily)."""


class Loader(Protocol):
    """Loads a method's models once: the painter and how to ask for its weights' size."""

    def __call__(self, device: torch.device, settings: Settings, *, progress: bool = False
                 ) -> tuple[Painter, Size]: ...


@dataclass(frozen=True)
class Option:
    """A method-specific setting: ``--name`` on the command line, with its meaning there."""

    name: str
    kind: type[int] | type[float] | type[str]
    default: int | float | str | None
    help: str
    """What it does for this method, e.g. "L-BFGS steps"."""
    minimum: int = 1
    """The smallest value an ``int`` option takes (a seed may be 0)."""


@dataclass(frozen=True)
class Trainer:
    """A command that trains what a method needs: ``python -m stylelib train NAME ...``."""

    name: str
    help: str
    module: str
    """The module whose ``main(argv)`` parses the options and trains (imported only then)."""


@dataclass(frozen=True)
class Method:
    """One way of stylising: how to load and run it, what it paints, what it takes."""

    name: str
    label: str
    training: str
    """What must be trained before the first image."""
    load: Loader
    styles: Callable[[], tuple[str, ...]] | None = None
    """The paintings it has trained weights for (``None``: any painting)."""
    reads_painting: bool = True
    """Whether it reads the painting's pixels (else STYLE only picks trained weights)."""
    blends: bool = False
    """Whether it paints a :class:`Mix` of several paintings."""
    steps: bool = False
    """Whether it improves an image step by step (its painter calls ``on_step``)."""
    anchors: bool = False
    """Whether its painter also takes ``anchor=`` (a :class:`stylelib.gatys.Anchor`): it starts
    from the anchor's picture and stays near it where the mask says, which a video uses to tie
    each frame to the last (:mod:`stylelib.motion`)."""
    upsamples: bool = False
    """Whether a print larger than its working size is painted at that size and carried up
    (``--style-scale``, :mod:`stylelib.upsampling`): a one-pass network's marks have a fixed
    size in pixels."""
    summary: str = ""
    """A few words for ``--help``, e.g. "optimise, slow, any style"."""
    options: tuple[Option, ...] = ()
    for_profile: Callable[[Profile], dict[str, Any]] = field(default=lambda profile: {})
    """The option values a book profile sets (e.g. Gatys's steps), for the comparison."""
    check: Callable[[Settings], object] | None = None
    """Raise :class:`~stylelib.errors.StylelibError` for values it cannot run with (what it
    returns is ignored)."""
    describe: Callable[[Settings, int], str] | None = None
    """A label with the settings in it, for images of long side ``size``."""
    benchmark: Benchmark | None = None
    trainer: Trainer | None = None

    @property
    def arbitrary(self) -> bool:
        """Whether a new painting needs no training."""
        return self.styles is None

    def painted_styles(self) -> tuple[str, ...] | None:
        """:attr:`styles` now (weights may have been trained since import)."""
        return None if self.styles is None else self.styles()

    def settings(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every option's value: ``given`` where set (not ``None``), else its default; checked."""
        values = {o.name: o.default for o in self.options}
        values.update({k: v for k, v in (given or {}).items() if k in values and v is not None})
        if self.check is not None:
            self.check(values)
        return values

    def title(self, settings: Settings, size: int) -> str:
        """The label, with the settings where the method says them."""
        return self.describe(settings, size) if self.describe else self.label


REGISTRY: dict[str, Method] = {}
"""Every method by name, in the book's order."""
DEFAULT = "gatys"
"""What ``stylize`` runs unless told: the paper's method, any painting."""
REFERENCE = "gatys"
"""The method the others are measured against: the optimisation the fast ones approximate."""


def register(method: Method) -> Method:
    """Add (or replace) a method in :data:`REGISTRY`."""
    REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    """The registered method ``name``, or one error that lists the others."""
    if name not in REGISTRY:
        raise StylelibError(f"Unknown method {name!r}: choose one of {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def options() -> dict[str, list[tuple[Method, Option]]]:
    """Every option name with the methods that take it (in registry order)."""
    found: dict[str, list[tuple[Method, Option]]] = {}
    for method in REGISTRY.values():
        for option in method.options:
            found.setdefault(option.name, []).append((method, option))
    return found


def trainers() -> list[Trainer]:
    """The training commands of the registered methods, in registry order."""
    return [m.trainer for m in REGISTRY.values() if m.trainer is not None]


def _is_weights(style: str) -> bool:
    """Whether STYLE names a trained weights file rather than a painting."""
    return Path(style).suffix == ".safetensors"


# --------------------------------------------------------------------------- the book's methods


TILE = 1024
"""Larger images are painted (one-pass methods) or optimised (Gatys) in tiles of this many
pixels: at 4096 px memory then stays about that of a 1024 px image."""


def _tile(how: str) -> Option:
    """The ``--tile`` option of a method that tiles; ``how`` says what keeps the tiles alike."""
    return Option("tile", int, TILE, f"larger images go in overlapping tiles this big, {how}",
                  minimum=512)


INITS: dict[str, gatys.Init] = {"photo": "content", "noise": "noise"}
"""``--init`` words and what :func:`stylelib.gatys.stylize` calls them; anything else is a file."""


def _load_gatys(device: torch.device, settings: Settings, *, progress: bool = False
                ) -> tuple[Painter, Size]:
    def paint(photo: torch.Tensor, painting: torch.Tensor | Mix | None, style: str, /,
              *, on_step: Step | None = None, anchor: gatys.Anchor | None = None
              ) -> torch.Tensor:
        assert painting is not None
        styles, blend = ((painting.paintings, painting.weights) if isinstance(painting, Mix)
                         else (painting, None))
        init = settings["init"]
        height, width = photo.shape[-2:]
        start: gatys.Init | torch.Tensor = (
            INITS[init] if init in INITS
            else resize_to(load_image(init, device=photo.device), (height, width)))
        if anchor is not None:  # the anchor's picture where it holds, the photo elsewhere
            start = photo + anchor.mask * (anchor.image - photo)
        return gatys.stylize(photo, styles, style_blend=blend, steps=settings["steps"],
                             style_weight=settings["style_weight"],
                             content_weight=settings["content_weight"],
                             tv_weight=settings["tv_weight"], init=start, seed=settings["seed"],
                             scales=settings["scales"], tile=settings["tile"], anchor=anchor,
                             progress=progress,
                             callback=on_step).image

    return paint, lambda: megabytes(PerceptualLoss())  # what each stylize call builds


def _check_gatys(settings: Settings) -> None:
    """Refuse weights below zero and an ``--init`` that is neither a word nor a file."""
    for name in ("style_weight", "content_weight", "tv_weight"):
        check_number(settings[name], f"--{name.replace('_', '-')}")
    init = settings["init"]
    if init not in INITS and not Path(init).expanduser().is_file():
        raise StylelibError(f"--init {init}: no such file. Pass photo, noise or an image file.")


def _describe_gatys(settings: Settings, size: int) -> str:
    levels = settings["scales"] or gatys.default_scales(size)
    per_level = f" at each of {levels} scales, coarse to fine" if levels > 1 else ""
    top = gatys.level_steps(settings["steps"], size)
    fewer = f", {top} at {size} px" if top < settings["steps"] else ""
    return f"Gatys optimisation ({settings['steps']} L-BFGS steps{per_level}{fewer})"


register(Method(
    "gatys", "Gatys optimisation", "none: optimises every image", _load_gatys,
    summary="optimise, slow, any style", blends=True, steps=True, anchors=True,
    options=(Option("steps", int, 100,
                    f"L-BFGS steps (each coarse-to-fine level up to {gatys.FULL_STEPS_UP_TO} px; "
                    f"a quarter at {2 * gatys.FULL_STEPS_UP_TO} px)"),
             Option("style_weight", float, 10.0, "style weight"),
             Option("content_weight", float, 1.0, "content weight"),
             Option("tv_weight", float, 0.0, "total-variation weight, against pixel noise"),
             Option("init", str, "photo", "start from the photo, from noise, or an image file"),
             Option("seed", int, 0, "the noise of --init noise", minimum=0),
             Option("scales", int, None, "coarse-to-fine levels, each twice the last (default: "
                    "1 up to 256 px, else from 128-255 px up: 3 at 512 px)"),
             _tile("Gram matrices from the whole image")),
    for_profile=lambda profile: {"steps": profile.steps}, describe=_describe_gatys,
    check=_check_gatys,
    benchmark=benchmarks.bench_gatys,
))


def _load_fast(device: torch.device, settings: Settings, *, progress: bool = False
               ) -> tuple[Painter, Size]:
    nets: dict[str, fast.TransformerNet] = {}

    def paint(photo: torch.Tensor, painting: torch.Tensor | Mix | None, style: str, /,
              *, on_step: Step | None = None) -> torch.Tensor:
        if style not in nets:
            nets[style] = (fast.load_weights(style).to(device) if _is_weights(style)
                           else bundled.load(style, device))
        return fast.stylize(nets[style], photo, settings["tile"], progress=progress)

    return paint, lambda: megabytes(*nets.values()) / max(len(nets), 1)


register(Method(
    "fast", "feed-forward network (Johnson et al.)", "one network per painting", _load_fast,
    styles=lambda: tuple(bundled.available()), reads_painting=False,
    summary="one pass, bundled styles or a trained .safetensors", benchmark=benchmarks.bench_fast,
    upsamples=True,
    options=(_tile("norms from the whole image"),),
    trainer=Trainer("fast", "a feed-forward network for one painting (chapter 4)",
                    "stylelib.bundled"),
))


def _load_adain(device: torch.device, settings: Settings, *, progress: bool = False
                ) -> tuple[Painter, Size]:
    model = adain.pretrained(device)

    def paint(photo: torch.Tensor, painting: torch.Tensor | Mix | None, style: str, /,
              *, on_step: Step | None = None) -> torch.Tensor:
        assert painting is not None
        if isinstance(painting, Mix):  # the paper's interpolation of AdaIN targets
            return adain.stylize(model, photo, painting.paintings, alpha=settings["alpha"],
                                 style_weights=painting.weights, tile=settings["tile"],
                                 progress=progress)
        return adain.stylize(model, photo, painting, alpha=settings["alpha"],
                             tile=settings["tile"], progress=progress)

    return paint, lambda: megabytes(model)


register(Method(
    "adain", "AdaIN (the book's decoder)", "one decoder for all paintings", _load_adain,
    summary="one pass, any style", blends=True, upsamples=True,
    options=(Option("alpha", float, 1.0, "0 keeps the photo, 1 full style"),
             _tile("statistics from the whole photo")),
    check=lambda settings: adain.check_alpha(settings["alpha"]),
    benchmark=benchmarks.bench_adain,
    trainer=Trainer("adain", "the AdaIN decoder, for any painting (chapter 5)",
                    "stylelib.adain_training"),
))


def _magenta() -> ModuleType:
    from stylelib import magenta  # onnxruntime takes a second to import: only when asked for

    return magenta


def _load_magenta(device: torch.device, settings: Settings, *, progress: bool = False
                  ) -> tuple[Painter, Size]:
    stylizer = _magenta().load()

    def paint(photo: torch.Tensor, painting: torch.Tensor | Mix | None, style: str, /,
              *, on_step: Step | None = None) -> torch.Tensor:
        assert painting is not None
        vector = (sum(weight * stylizer.style_vector(picture)  # the weighted mean
                      for picture, weight in zip(painting.paintings, painting.weights,
                                                 strict=True))
                  if isinstance(painting, Mix) else stylizer.style_vector(painting))
        result: torch.Tensor = (stylizer.paint(photo, vector)
                                if max(photo.shape[-2:]) <= settings["tile"]
                                else stylizer.paint_tiles(photo, vector, settings["tile"],
                                                          progress=progress))
        return result

    return paint, lambda: float(stylizer.megabytes)


register(Method(
    "magenta", "Magenta arbitrary network (pretrained, int8)", "none here: downloaded pretrained",
    _load_magenta, summary="pretrained, one pass, any style", blends=True, upsamples=True,
    options=(_tile("norms from the whole image"),),
))


SDEDIT_STRENGTH = 0.5
"""Chapter 6's recommended strength for the book's painting prior."""


def _diffusion() -> ModuleType:
    from stylelib import diffusion  # diffusers takes seconds to import: only when asked for

    return diffusion


def _prior(style: str, device: torch.device) -> torch.nn.Module:
    """The painting prior STYLE names: a weights file, or the bundled one by its painting."""
    diffusion = _diffusion()
    if _is_weights(style):
        return diffusion.load_prior(style, str(device))  # type: ignore[no-any-return]
    if Path(style).stem == diffusion.PRIOR_PAINTING:
        return diffusion.pretrained(str(device))  # type: ignore[no-any-return]
    stem = Path(style).stem
    raise StylelibError(
        f"No bundled painting prior for {style!r}: the book ships one for "
        f"{diffusion.PRIOR_PAINTING}. Train one with `python -m stylelib train prior "
        f"{shlex.quote(style)} --out {shlex.quote(f'prior_{stem}.safetensors')}`, then "
        f"pass prior_{stem}.safetensors as STYLE."
    )


def _load_sdedit(device: torch.device, settings: Settings, *, progress: bool = False
                 ) -> tuple[Painter, Size]:
    priors: dict[str, torch.nn.Module] = {}

    def paint(photo: torch.Tensor, painting: torch.Tensor | Mix | None, style: str, /,
              *, on_step: Step | None = None) -> torch.Tensor:
        if style not in priors:
            priors[style] = _prior(style, device)
        result: torch.Tensor = _diffusion().sdedit(priors[style], photo, settings["strength"],
                                                   steps=settings["steps"], seed=settings["seed"],
                                                   progress=progress)
        return result

    return paint, lambda: megabytes(*priors.values()) / max(len(priors), 1)


register(Method(
    "sdedit", "SDEdit, painting prior", "one diffusion prior per painting", _load_sdedit,
    styles=lambda: (_diffusion().PRIOR_PAINTING,), reads_painting=False,
    summary="a painting prior",
    options=(Option("steps", int, 50, "denoising schedule"),
             Option("strength", float, SDEDIT_STRENGTH, "0 keeps the photo, 1 starts from noise"),
             Option("seed", int, 0, "the noise added to the photo", minimum=0)),
    for_profile=lambda profile: {"steps": profile.denoise_steps, "strength": SDEDIT_STRENGTH},
    check=lambda settings: _diffusion().check_strength(settings["steps"], settings["strength"]),
    describe=lambda settings, size: f"SDEdit, painting prior (strength {settings['strength']})",
    benchmark=benchmarks.bench_sdedit,
    trainer=Trainer("prior", "a diffusion painting prior for SDEdit (chapter 6)",
                    "stylelib.prior_training"),
))


def chosen(names: Sequence[str | Method] | None = None) -> list[Method]:
    """Methods from names or :class:`Method` objects (default: every registered one)."""
    if names is None:
        return list(REGISTRY.values())
    return [n if isinstance(n, Method) else get(n) for n in names]
