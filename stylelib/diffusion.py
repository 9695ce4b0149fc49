"""SDEdit (Meng et al. 2022): restyle an image by noising it part of the way and denoising it
with a diffusion model that only knows the target style.

The forward process mixes an image ``x0`` (scaled to [-1, 1]) with Gaussian noise,
``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) e``, where ``a_t`` (``alphas_cumprod``) falls from 1 to 0
as ``t`` goes from 0 to T. ``strength`` picks how far: the layout of ``x0`` survives in ``x_t``
while its fine detail drowns, and the reverse loop fills the detail back in from the model's
prior. Low strength keeps the photo; high strength keeps only its coarse colour layout.

The model here is :class:`PaintingPrior`, a small pixel-space ``diffusers.UNet2DModel`` the
project trains on crops of paintings (:mod:`stylelib.prior_training`; the one it ships, trained
on *The Starry Night*, loads with :func:`pretrained`); Stable Diffusion img2img, for readers
with internet and a GPU, is :mod:`stylelib.stable_diffusion`. The SDEdit mechanics
(:func:`img2img_timesteps`, :func:`add_noise`, :func:`sdedit`) are written out here; diffusers
schedulers compute the steps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

# Imported from their modules: mypy reads diffusers' top-level names as its no-torch dummies.
from diffusers.models.unets.unet_2d import UNet2DModel
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from torch import nn
from tqdm import tqdm

from stylelib.errors import StylelibError, check_int
from stylelib.images import check_image, check_size, pad_to_multiple
from stylelib.precision import autocast, reduced
from stylelib.profiles import pick_device
from stylelib.weight_files import WeightKind, load_state, read_safetensors, save_weights

Scheduler = DDPMScheduler | DDIMScheduler
"""The diffusers schedulers the SDEdit loop is written for (``add_noise`` + ``step``)."""

PRIOR_PAINTING = "starry_night"
"""The painting the bundled prior (:func:`pretrained`) was trained on."""
PRIOR_CHANNELS = (32, 64, 64)
"""The bundled prior's UNet widths: ``prior_unet(PRIOR_CHANNELS, 2, 32, 32)``, 1.5 M parameters."""
PRIOR_STEPS = 4000
"""Training steps of the bundled prior (the training command's default)."""
WEIGHTS_DIR = Path(__file__).parent / "weights"


# --------------------------------------------------------------------------- the SDEdit rule


def check_strength(steps: int, strength: float) -> int:
    """Validate ``steps`` and ``strength``; return how many denoising steps will run.

    The rule is diffusers' img2img pipeline's: ``int(steps * strength)`` steps, so a strength
    that leaves fewer than one step would silently do nothing and is refused.
    """
    check_int(steps, "steps")
    if not (isinstance(strength, int | float) and 0.0 <= strength <= 1.0):
        raise StylelibError(
            f"strength must be a number in [0, 1] (0 keeps the image, 1 starts from pure "
            f"noise), got {strength!r}."
        )
    runs = min(int(steps * strength), steps)
    if strength > 0 and runs < 1:
        raise StylelibError(
            f"steps * strength = {steps} * {strength} = {steps * strength:g} < 1, so no denoising "
            f"step would run: raise steps to at least {math.ceil(1 / strength)} or strength to at "
            f"least {1 / steps:g}."
        )
    return runs


def img2img_timesteps(scheduler: Scheduler, steps: int, strength: float) -> torch.Tensor:
    """The timesteps SDEdit denoises through, largest first (empty for ``strength`` 0).

    ``scheduler.set_timesteps(steps)`` spaces ``steps`` timesteps over the training range; SDEdit
    skips the first ``steps - int(steps * strength)`` of them and starts by noising the image to
    the next one, exactly as diffusers' ``StableDiffusionImg2ImgPipeline.get_timesteps``.
    """
    runs = check_strength(steps, strength)
    scheduler.set_timesteps(steps)
    start = (steps - runs) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    timesteps: torch.Tensor = scheduler.timesteps[start:]
    return timesteps


@dataclass(frozen=True)
class NoiseSchedule:
    """Per training timestep ``t``: ``alphas_cumprod`` (the signal's share of the variance,
    ``a_t``) and the signal-to-noise ratio ``a_t / (1 - a_t)``."""

    alphas_cumprod: torch.Tensor
    snr: torch.Tensor


def noise_schedule(scheduler: Scheduler | None = None) -> NoiseSchedule:
    """The forward process of ``scheduler`` (default: the DDPM paper's linear betas), to plot."""
    alphas = (scheduler or DDPMScheduler()).alphas_cumprod.double()
    return NoiseSchedule(alphas.float(), (alphas / (1 - alphas)).float())


def to_model(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels to the [-1, 1] range diffusion models are trained on."""
    return image * 2 - 1


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model space back to [0, 1] pixels (clamped: noised images overshoot)."""
    return ((x + 1) / 2).clamp(0, 1)


def draw_noise(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise of ``like``'s shape, drawn on the CPU so every device agrees."""
    return torch.randn(like.shape, generator=generator).to(like.device, like.dtype)


def as_timesteps(t: int | torch.Tensor) -> torch.IntTensor:
    """Timesteps as the 1-D integer tensor ``scheduler.add_noise`` expects."""
    return cast(torch.IntTensor, torch.as_tensor(t, dtype=torch.long).reshape(-1))


def add_noise(
    image: torch.Tensor, t: int, seed: int = 0, scheduler: Scheduler | None = None
) -> torch.Tensor:
    """The image after the forward process has run to training timestep ``t``, in [0, 1].

    Shows what the denoiser starts from: ``t`` near 0 is the image, ``t`` near T pure noise.
    """
    image = check_image(image)
    scheduler = scheduler or DDPMScheduler()
    last = len(scheduler.alphas_cumprod) - 1
    check_int(t, "t", minimum=0)
    if t > last:
        raise StylelibError(f"t must be a training timestep in [0, {last}], got {t}.")
    generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    x0 = to_model(image)
    return to_pixels(scheduler.add_noise(x0, draw_noise(x0, generator), as_timesteps(t)))


# --------------------------------------------------------------------------- the painting prior


def prior_unet(
    block_out_channels: Sequence[int] = (64, 128, 128),
    layers_per_block: int = 2,
    sample_size: int = 32,
    norm_num_groups: int = 32,
) -> UNet2DModel:
    """A small pixel-space UNet without attention (6.1 M parameters, 12 MB in fp16 by default).

    Without attention every layer is a convolution, so a prior trained on small crops runs on
    an image of any size (a multiple of ``2 ** (len(block_out_channels) - 1)``) at a cost that
    grows with the pixel count, and it learns local texture, which is what a style is.
    """
    blocks = len(block_out_channels)
    unet: UNet2DModel = UNet2DModel(
        sample_size=sample_size, in_channels=3, out_channels=3,
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        down_block_types=("DownBlock2D",) * blocks, up_block_types=("UpBlock2D",) * blocks,
        add_attention=False, norm_num_groups=norm_num_groups,
    )
    return unet


class PaintingPrior(nn.Module):
    """A denoiser ``eps(x_t, t)`` with the noise schedule it was trained with.

    Any pixel-space ``diffusers.UNet2DModel`` works, e.g. one from the Hub with its scheduler:
    ``PaintingPrior(UNet2DModel.from_pretrained(id), DDPMScheduler.from_pretrained(id))``.
    """

    card: dict[str, str]
    """The model card that :func:`load_prior` read (empty for a new prior)."""

    def __init__(self, unet: UNet2DModel | None = None, schedule: DDPMScheduler | None = None
                 ) -> None:
        super().__init__()
        self.unet = unet if unet is not None else prior_unet()
        self.schedule = schedule if schedule is not None else DDPMScheduler()
        """The training noise schedule (DDPM, Ho et al. 2020: linear betas over 1000 steps)."""
        self.card = {}

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this: the UNet halves them between its blocks."""
        return int(2 ** (len(self.unet.config["block_out_channels"]) - 1))

    def sampler(self) -> DDIMScheduler:
        """A DDIM scheduler (Song et al. 2021) on the training schedule: few deterministic steps.

        Trailing spacing makes the first of ``steps`` timesteps the last training one, so
        sampling at strength 1 really starts from noise.
        """
        sampler: DDIMScheduler = DDIMScheduler.from_config(
            self.schedule.config, timestep_spacing="trailing"
        )
        return sampler

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The predicted noise in ``x`` (``[B, 3, H, W]`` in model space) at timesteps ``t``."""
        eps: torch.Tensor = self.unet(x, t, return_dict=False)[0]
        return eps


def _where(prior: PaintingPrior) -> tuple[torch.device, torch.dtype]:
    """The device and dtype the prior's weights live on."""
    weight = next(prior.parameters())
    return weight.device, weight.dtype


@dataclass
class SDEditTrace:
    """An SDEdit run: the ``result``, the ``noised`` start and the timesteps, and the model's
    estimate of the clean image after each step (``predictions``), all in [0, 1]."""

    result: torch.Tensor
    noised: torch.Tensor
    timesteps: torch.Tensor
    predictions: list[torch.Tensor] = field(default_factory=list)


@torch.inference_mode()
def _denoise(
    prior: PaintingPrior, x: torch.Tensor, timesteps: torch.Tensor, scheduler: Scheduler,
    generator: torch.Generator, predictions: list[torch.Tensor] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Run the reverse process from ``x`` at ``timesteps[0]`` down through ``timesteps``: the
    UNet in bfloat16 where the hardware has it (:func:`stylelib.precision.reduced`; 1.5x faster
    a call on the book's CPU), the scheduler's arithmetic in ``x``'s precision."""
    precision = reduced(x.device)
    for t in tqdm(timesteps, desc="sdedit", disable=not progress, leave=False):
        with autocast(x.device, precision):
            eps = prior(scheduler.scale_model_input(x, t), t.reshape(1).to(x.device))
        eps = eps.to(x.dtype)
        x, clean = scheduler.step(eps, t, x, generator=generator, return_dict=False)
        if predictions is not None:
            predictions.append(to_pixels(clean))
    return x


def sdedit_trace(
    prior: PaintingPrior, image: torch.Tensor, strength: float, steps: int = 50, seed: int = 0,
    scheduler: Scheduler | None = None, progress: bool = False,
) -> SDEditTrace:
    """SDEdit ``image`` with ``prior``, keeping the noised start and every clean-image estimate.

    The image is reflection-padded to a multiple of ``prior.multiple`` and cropped back, so a
    prior trained on small crops restyles a photo of any size. ``scheduler`` defaults to
    ``prior.sampler()`` (DDIM); the same ``seed`` gives the same noise and the same result.
    ``progress`` shows a bar with the time left.
    """
    image = check_image(image)
    scheduler = scheduler or prior.sampler()
    timesteps = img2img_timesteps(scheduler, steps, strength)
    check_int(seed, "seed", minimum=0)
    if len(timesteps) == 0:
        return SDEditTrace(image.clone(), image.clone(), timesteps)
    generator = torch.Generator().manual_seed(seed)
    device, dtype = _where(prior)
    height, width = image.shape[-2:]
    x0 = to_model(pad_to_multiple(image, prior.multiple)).to(device, dtype)
    x = scheduler.add_noise(x0, draw_noise(x0, generator), as_timesteps(timesteps[0]))
    predictions: list[torch.Tensor] = []
    result = _denoise(prior, x, timesteps.to(device), scheduler, generator, predictions,
                      progress)

    def back(y: torch.Tensor) -> torch.Tensor:
        return y[..., :height, :width].to(image.device, image.dtype)

    return SDEditTrace(back(to_pixels(result)), back(to_pixels(x)), timesteps.cpu(),
                       [back(p) for p in predictions])


def sdedit(
    prior: PaintingPrior, image: torch.Tensor, strength: float, steps: int = 50, seed: int = 0,
    scheduler: Scheduler | None = None, progress: bool = False,
) -> torch.Tensor:
    """The restyled ``[1, 3, H, W]`` image in [0, 1]; see :func:`sdedit_trace`."""
    return sdedit_trace(prior, image, strength, steps, seed, scheduler, progress).result


def sample(prior: PaintingPrior, n: int = 4, steps: int = 50, seed: int = 0,
           size: int | None = None) -> torch.Tensor:
    """``n`` images drawn from pure noise with DDIM: what the prior believes paintings are.

    ``size`` defaults to the UNet's ``sample_size`` (its training crop).
    """
    check_int(n, "n")
    side = size or int(prior.unet.config["sample_size"])
    check_side(side, prior)
    scheduler = prior.sampler()
    timesteps = img2img_timesteps(scheduler, steps, 1.0)
    generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    device, dtype = _where(prior)
    x = draw_noise(torch.empty(n, 3, side, side, device=device, dtype=dtype), generator)
    x = x * scheduler.init_noise_sigma
    return to_pixels(_denoise(prior, x, timesteps.to(device), scheduler, generator)).cpu()


def check_side(side: int, prior: PaintingPrior, name: str = "size") -> None:
    """Refuse a square side the UNet cannot halve down to its coarsest block."""
    check_size(side, name)
    if side % prior.multiple:
        raise StylelibError(
            f"{name}={side} is not a multiple of {prior.multiple}, which this UNet needs "
            f"({len(prior.unet.config['block_out_channels'])} blocks): use "
            f"{side // prior.multiple * prior.multiple or prior.multiple} or "
            f"{(side // prior.multiple + 1) * prior.multiple}."
        )


# --------------------------------------------------------------------------- weight files

KIND = WeightKind("PaintingPrior", "stylelib.diffusion.save_prior", "load_prior",
                  "stylelib.prior_training.train_prior")


def config_json(prior: PaintingPrior) -> tuple[str, str]:
    """The UNet's and the schedule's diffusers configs as JSON (private ``_`` keys dropped)."""
    def public(config: Any) -> str:
        return json.dumps({k: v for k, v in config.items() if not k.startswith("_")},
                          sort_keys=True)
    return public(prior.unet.config), public(prior.schedule.config)


_RESERVED = ("unet_config", "schedule_config")


def save_prior(prior: PaintingPrior, path: str | Path, card: dict[str, str]) -> Path:
    """Save as fp16 safetensors: the UNet's weights, the model card, and the UNet's and noise
    schedule's configs as JSON metadata, so :func:`load_prior` rebuilds it without code."""
    target = Path(path).expanduser()
    if target.suffix != ".safetensors":
        raise StylelibError(f"Save priors as .safetensors, not {target.name!r}.")
    reserved = sorted(set(card) & set(_RESERVED))
    if reserved:
        raise StylelibError(
            f"Model card fields {reserved} are reserved for the configs: rename them."
        )
    return save_weights(prior, target, {**card, **dict(zip(_RESERVED, config_json(prior),
                                                           strict=True))})


def load_prior(path: str | Path, device: str | None = None) -> PaintingPrior:
    """A float32 :class:`PaintingPrior` (eval mode) from :func:`save_prior`'s file, card
    attached; any file that is not safetensors is refused, never unpickled."""
    source = Path(path).expanduser()
    state, metadata = read_safetensors(source, KIND)
    if not set(_RESERVED) <= metadata.keys():
        raise StylelibError(
            f"{source} holds weights but no UNet config: it was not written by save_prior. "
            "Save the prior with stylelib.diffusion.save_prior."
        )
    unet = UNet2DModel.from_config(json.loads(metadata[_RESERVED[0]]))
    schedule = DDPMScheduler.from_config(json.loads(metadata[_RESERVED[1]]))
    prior = PaintingPrior(unet, schedule)
    load_state(prior, state, source, KIND)
    prior.card = {k: v for k, v in metadata.items() if k not in _RESERVED}
    return prior.to(pick_device(device)).eval()


def prior_path(painting: str = PRIOR_PAINTING) -> Path:
    """Where the project's prior for ``painting`` is stored (``stylelib/weights/``)."""
    return WEIGHTS_DIR / f"prior_{painting}.safetensors"


def pretrained(device: str | None = None) -> PaintingPrior:
    """The painting prior this project trained on :data:`PRIOR_PAINTING` (card in ``.card``)."""
    path = prior_path()
    if not path.is_file():
        raise StylelibError(
            f"The bundled painting prior is missing: no file at {path}. Train it with "
            f"`python -m stylelib train prior {PRIOR_PAINTING} --steps {PRIOR_STEPS}` "
            "(resumable; about 1.5 s per step on two CPU cores), or reinstall stylelib."
        )
    return load_prior(path, device)
