"""A deliberately small generative adversarial network, for chapter 1's comparison with style
transfer.

:class:`Generator` and :class:`Discriminator` follow DCGAN (Radford, Metz & Chintala 2016) at
32x32 pixels. :func:`real_crops` draws the training set, random crops of the book's paintings
(:func:`stylelib.data.paintings_for_training`), with :class:`~stylelib.data.PhotoCrops`, and
:func:`credit_line` credits them. :func:`train` plays the adversarial game of Goodfellow
et al. (2014) with the non-saturating generator loss and records what a reader needs to watch
it: both losses and the discriminator's mean outputs at every step, and samples from one fixed
noise batch every few steps. :func:`diversity` and :func:`nearest` are simple indicators of mode
collapse: how much a batch of images differs among itself, and whether it holds near-duplicates,
to compare with the same numbers for real crops.
"""

from __future__ import annotations

import csv
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torchvision.utils import make_grid
from tqdm import tqdm

from stylelib import assets
from stylelib.data import PhotoCrops, photo_files
from stylelib.errors import StylelibError, check_int, check_number
from stylelib.profiles import pick_device, seeded

SIDE = 32
"""Side, in pixels, of the square RGB images both networks work on."""
LATENT = 64
"""Default length of the noise vector the generator turns into an image."""
KEYS = ("generator", "discriminator", "d_real", "d_fake")
"""What :func:`train` records at every step (see :class:`GanResult`)."""


def credit_line(paintings: Sequence[str | Path]) -> str:
    """A credit line for crops of ``paintings``: the artists of the training collection (from
    the ``SOURCES.csv`` beside its folder), or the registry's credit of each book image."""
    files = [Path(p) for p in paintings]
    rows: dict[str, dict[str, str]] = {}
    for table in {f.parent.parent / "SOURCES.csv" for f in files}:
        if table.is_file():
            with table.open(encoding="utf-8", newline="") as handle:
                rows.update({Path(r.get("file") or "").name: r for r in csv.DictReader(handle)})
    by_name = {Path(name).name: assets.resolve(name) for name in assets.names()}
    artists: Counter[str] = Counter()
    credits: list[str] = []
    public_domain = True
    for file in files:
        row = rows.get(file.name, {})
        if file.name in by_name:
            credits.append(by_name[file.name].credit_line)
        elif row.get("artist"):
            artists[row["artist"]] += 1
            public_domain &= (row.get("licence_note") or "").startswith("PD")
        else:
            credits.append(f"{file.name} (no credit on record)")
    if artists:
        listed = ", ".join(f"{artist} ({count})" if count > 1 else artist
                           for artist, count in artists.most_common())
        kind = "public-domain paintings" if public_domain else "paintings"
        credits.insert(0, f"{sum(artists.values())} {kind} of the course's training collection, "
                          f"by {listed}; titles, years, sources and licences are in its "
                          "SOURCES.csv.")
    return "Real images: random crops of " + " ".join(credits)


def real_crops(
    paintings: Sequence[str | Path] | str | Path,
    n: int,
    *,
    scale: int = 64,
    seed: int = 0,
) -> torch.Tensor:
    """``n`` random ``SIDE``-pixel crops of ``paintings`` (a folder or files), ``[n, 3, 32, 32]``.

    Each painting is first resized so its long side is ``scale`` pixels, so a crop shows a good
    part of a picture rather than a few brush strokes. Successive crops visit every painting
    once in a fresh order (:class:`~stylelib.data.PhotoCrops`), so all paintings are equally
    represented; the same ``seed`` gives the same crops.
    """
    check_int(n, "n")
    check_int(scale, "scale", minimum=SIDE)
    check_int(seed, "seed", minimum=0)
    files = photo_files(paintings, "paintings")
    stream = PhotoCrops(files, SIDE, (seed, SIDE), scale)  # a stream of its own for this seed
    return torch.stack([stream[k] for k in range(n)])


# --------------------------------------------------------------------------- the two networks


def init_weights(module: nn.Module) -> None:
    """DCGAN's initialisation: convolution weights from N(0, 0.02), norm scales from N(1, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """Noise ``[B, latent]`` to images ``[B, 3, 32, 32]`` in [0, 1].

    DCGAN's generator scaled down: a 4x4 transposed convolution turns the noise into a 4x4 map of
    ``4 * width`` channels, and three stride-2 transposed convolutions double the side to 32 while
    halving the channels, each followed by batch normalisation and ReLU except the last, whose
    tanh is rescaled from [-1, 1] to the library's [0, 1].
    """

    def __init__(self, latent: int = LATENT, width: int = 32) -> None:
        super().__init__()
        check_int(latent, "latent")
        check_int(width, "width")
        self.latent = latent

        def up(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                    nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            nn.ConvTranspose2d(latent, 4 * width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(4 * width), nn.ReLU(inplace=True),
            *up(4 * width, 2 * width), *up(2 * width, width),
            nn.ConvTranspose2d(width, 3, 4, 2, 1),
        )
        self.apply(init_weights)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] for a batch of noise vectors."""
        result: torch.Tensor = 0.5 * (torch.tanh(self.body(noise[:, :, None, None])) + 1.0)
        return result


class Discriminator(nn.Module):
    """Images ``[B, 3, 32, 32]`` in [0, 1] to one logit each, ``[B]``: positive means "real".

    The generator mirrored: three stride-2 convolutions halve the side to 4 while doubling the
    channels, with leaky ReLUs (slope 0.2) and batch normalisation after all but the first, then
    a 4x4 convolution to a single number. Inputs are rescaled to [-1, 1] first, like the
    generator's tanh.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        check_int(width, "width")

        def down(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                    nn.LeakyReLU(0.2, inplace=True)]

        self.body = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            *down(width, 2 * width), *down(2 * width, 4 * width),
            nn.Conv2d(4 * width, 1, 4, 1, 0),
        )
        self.apply(init_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """One logit per image."""
        logits: torch.Tensor = self.body(2.0 * images - 1.0).flatten()
        return logits


def check_images(images: torch.Tensor, name: str, least: int = 1) -> torch.Tensor:
    """Validate a batch ``[B, 3, 32, 32]`` of at least ``least`` finite images in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise StylelibError(f"{name} must be a torch.Tensor, got {type(images).__name__}.")
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] < least:
        raise StylelibError(
            f"{name} must be a batch [B, 3, H, W] of at least {least} RGB images, got "
            f"{list(images.shape)}: make one with stylelib.gan.real_crops."
        )
    if not images.is_floating_point() or not torch.isfinite(images).all():
        raise StylelibError(f"{name} must hold finite floating-point values in [0, 1].")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise StylelibError(
            f"{name} must hold values in [0, 1], got [{images.min():.3g}, {images.max():.3g}]."
        )
    return images


# --------------------------------------------------------------------------- measuring


def _distances(images: torch.Tensor, others: torch.Tensor, side: int) -> torch.Tensor:
    """Root-mean-square differences of every image of one batch to every image of another,
    after averaging both down to ``side x side`` pixels, ``[len(images), len(others)]``."""
    check_int(side, "side")
    small, other = (F.adaptive_avg_pool2d(x.detach().float().cpu(), side).flatten(1)
                    for x in (images, others))
    exact = torch.cdist(small[None], other[None], compute_mode="donot_use_mm_for_euclid_dist")
    return exact[0] / math.sqrt(small.shape[1])


def diversity(images: torch.Tensor, side: int = 8) -> float:
    """Mean distance between the images of a batch: how widely they spread.

    Each image is first averaged down to ``side x side`` pixels, so the number compares colours
    and layout rather than pixel noise; then the root-mean-square difference of every pair of
    images is averaged over all pairs, in the units of the pixel values (0 for a batch of copies
    of one image). Compare it with the same number for as many real images: a generator that
    has collapsed onto one image scores near 0. It cannot tell good images from bad ones (a
    batch of noise is very diverse), and it barely notices a collapse onto a few images that
    differ widely: :func:`nearest` does.
    """
    check_images(images, "images", least=2)
    count = len(images)
    return float(_distances(images, images, side).sum() / (count * (count - 1)))


def nearest(images: torch.Tensor, reference: torch.Tensor | None = None, side: int = 8
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image, the distance to its closest image in ``reference`` and that image's index.

    Distances are those of :func:`diversity`. Without ``reference`` the closest *other* image
    of the same batch is used: near-zero distances then mean near-duplicates, the mark of a
    generator that collapsed onto a few images. With the training images as ``reference``,
    samples much closer to them than new real images are would be copies.
    """
    check_images(images, "images", least=1 if reference is not None else 2)
    if reference is not None:
        check_images(reference, "reference")
    distances = _distances(images, images if reference is None else reference, side)
    if reference is None:
        distances.fill_diagonal_(math.inf)
    closest, index = distances.min(dim=1)
    return closest, index


def grid(images: torch.Tensor, ncols: int = 8, *, pad: int = 2, zoom: int = 1) -> torch.Tensor:
    """Tile a batch into one ``[1, 3, H, W]`` image, ``pad`` white pixels apart, each pixel
    repeated ``zoom`` times in both directions (so small images stay crisp when shown)."""
    check_images(images, "images")
    check_int(ncols, "ncols")
    check_int(pad, "pad", minimum=0)
    check_int(zoom, "zoom")
    big = images.detach().float().cpu().repeat_interleave(zoom, -1).repeat_interleave(zoom, -2)
    tiled: torch.Tensor = make_grid(big, nrow=ncols, padding=pad, pad_value=1.0)
    return tiled.unsqueeze(0)


def generate(generator: Generator, noise: torch.Tensor) -> torch.Tensor:
    """The generator's images for ``noise`` (on the CPU), computed in eval mode without
    gradients: each image then depends on its own noise vector only, not on the rest of the
    batch, as it would through batch statistics."""
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        images: torch.Tensor = generator(noise.to(device)).cpu()
    generator.train(was_training)
    return images


def sample(generator: Generator, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` images from a trained generator, from noise drawn with ``seed``."""
    check_int(n, "n")
    check_int(seed, "seed", minimum=0)
    noise = torch.randn(n, generator.latent, generator=torch.Generator().manual_seed(seed))
    return generate(generator, noise)


# --------------------------------------------------------------------------- training


@dataclass
class GanResult:
    """What :func:`train` returns.

    ``history`` has one entry per step with the generator's and the discriminator's losses and
    the discriminator's mean probabilities ``d_real`` = D(x) for the real batch and ``d_fake`` =
    D(G(z)) for the generated one (before its update). ``samples`` maps a step (0 = before
    training) to the generator's images for the fixed ``noise`` at that step.
    """

    generator: Generator
    discriminator: Discriminator
    noise: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    samples: dict[int, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0


def discriminator_loss(discriminator: Discriminator, real: torch.Tensor, fake: torch.Tensor
                       ) -> tuple[torch.Tensor, dict[str, float]]:
    """The discriminator's binary cross-entropy: real images labelled 1, generated ones 0.

    Also returns its mean probabilities for both batches, ``d_real`` and ``d_fake``.
    """
    real_logits, fake_logits = discriminator(real), discriminator(fake)
    loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    means = {"d_real": float(torch.sigmoid(real_logits.detach()).mean()),
             "d_fake": float(torch.sigmoid(fake_logits.detach()).mean())}
    return loss, means


def generator_loss(discriminator: Discriminator, fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss, -log D(G(z)): generated images labelled 1.

    Goodfellow et al. propose it instead of minimising log(1 - D(G(z))), whose gradient vanishes
    just when the discriminator rejects the generator's images confidently, early in training.
    """
    logits = discriminator(fake)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def _adversarial_step(
    generator: Generator, discriminator: Discriminator, g_optimizer: torch.optim.Optimizer,
    d_optimizer: torch.optim.Optimizer, real: torch.Tensor, z: torch.Tensor,
) -> dict[str, float]:
    """One step of the game: an Adam step on the discriminator's loss, then one on the
    generator's with the same generated batch ``generator(z)``; both losses and the
    discriminator's mean outputs (before its update)."""
    fake = generator(z)

    d_optimizer.zero_grad()
    d_loss, means = discriminator_loss(discriminator, real, fake.detach())
    d_loss.backward()  # type: ignore[no-untyped-call]
    d_optimizer.step()

    g_optimizer.zero_grad()
    g_loss = generator_loss(discriminator, fake)
    g_loss.backward()  # type: ignore[no-untyped-call]
    g_optimizer.step()

    return {"generator": float(g_loss.detach()), "discriminator": float(d_loss.detach()), **means}


def train(
    real: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 64,
    latent: int = LATENT,
    width: int = 32,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    samples: int = 64,
    sample_every: int = 50,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> GanResult:
    """Train a :class:`Generator` against a :class:`Discriminator` on the images ``real``.

    ``real`` is the training set, ``[N, 3, 32, 32]`` in [0, 1] (:func:`real_crops`). Each step
    draws ``batch_size`` real images and as many noise vectors, takes one Adam step on the
    discriminator's loss (:func:`discriminator_loss`), then one on the generator's
    (:func:`generator_loss`, with the same generated batch), as in DCGAN: Adam with ``lr``
    2e-4 and ``betas`` (0.5, 0.999). Every ``sample_every`` steps, before the first and after
    the last, the generator draws the same ``samples`` noise vectors (:func:`generate`), so the
    snapshots show one set of images changing. Weights, batches and noise depend only on
    ``seed``: on the CPU, two runs with the same arguments give the same result bit for bit (GPU
    convolutions may differ in the last bits between runs).
    """
    check_images(real, "real", least=2)
    if real.shape[-2:] != (SIDE, SIDE):
        raise StylelibError(
            f"real must hold {SIDE}x{SIDE} images, got {tuple(real.shape[-2:])}: make them with "
            "stylelib.gan.real_crops."
        )
    for name, value in (("steps", steps), ("batch_size", batch_size), ("latent", latent),
                        ("width", width), ("samples", samples), ("sample_every", sample_every)):
        check_int(value, name)
    check_int(seed, "seed", minimum=0)
    check_number(lr, "lr", strict=True)
    if len(betas) != 2 or not all(0 <= check_number(b, "betas") < 1 for b in betas):
        raise StylelibError(f"betas must be two numbers in [0, 1), got {betas!r}.")
    dev = pick_device(str(device) if device is not None else None)
    generator, discriminator = seeded(
        lambda: (Generator(latent, width).to(dev), Discriminator(width).to(dev)), seed)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
    rng = torch.Generator().manual_seed(seed)
    noise = torch.randn(samples, latent, generator=rng)
    result = GanResult(generator, discriminator, noise)
    result.samples[0] = generate(generator, noise)
    pool = real.detach().float().cpu()
    started = time.perf_counter()
    generator.train()
    discriminator.train()
    with tqdm(range(1, steps + 1), desc="GAN", disable=not progress, leave=False,
              mininterval=0.5) as bar:
        for step in bar:
            batch = pool[torch.randint(len(pool), (batch_size,), generator=rng)].to(dev)
            z = torch.randn(batch_size, latent, generator=rng).to(dev)
            losses = _adversarial_step(generator, discriminator, g_optimizer, d_optimizer, batch, z)
            if not all(math.isfinite(v) for v in losses.values()):
                raise StylelibError(
                    f"The GAN diverged (NaN/inf losses) at step {step}: lower lr and train again."
                )
            result.history.append(losses)
            if step % sample_every == 0 or step == steps:
                result.samples[step] = generate(generator, noise)
            bar.set_postfix(D=f"{losses['discriminator']:.3f}", G=f"{losses['generator']:.3f}",
                            refresh=False)
    result.seconds = time.perf_counter() - started
    generator.eval()
    discriminator.eval()
    return result
