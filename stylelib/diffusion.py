"""SDEdit (Meng et al. 2022): restyle an image by noising it part of the way and denoising it
with a diffusion model that only knows the target style.

The forward process mixes an image ``x0`` (scaled to [-1, 1]) with Gaussian noise,
``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) e``, where ``a_t`` (``alphas_cumprod``) falls from 1 to 0
as ``t`` goes from 0 to T. ``strength`` picks how far: the layout of ``x0`` survives in ``x_t``
while its fine detail drowns, and the reverse loop fills the detail back in from the model's
prior. Low strength keeps the photo; high strength keeps only its coarse colour layout.

Two models: :class:`PaintingPrior`, a small pixel-space ``diffusers.UNet2DModel`` the project
trains on crops of paintings (:func:`train_prior`; the one it ships, trained on *The Starry Night*
by ``python -m stylelib.diffusion``, loads with :func:`pretrained`), and Stable Diffusion img2img
for readers with internet and a GPU (:func:`load_sd_img2img`). The SDEdit mechanics
(:func:`img2img_timesteps`, :func:`add_noise`, :func:`sdedit`) are written out here; diffusers
schedulers compute the steps.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

# Imported from their modules: mypy reads diffusers' top-level names as its no-torch dummies.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d import UNet2DModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.auto_pipeline import AutoPipelineForImage2Image
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import (
    StableDiffusionImg2ImgPipeline,
)
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from torch import nn
from torch.utils.data import DataLoader

from stylelib import assets
from stylelib.checkpoints import (
    Plan,
    TrainResult,
    WeightKind,
    add_training_arguments,
    final_losses,
    fit,
    load_state,
    publish,
    read_safetensors,
    run_fields,
    save_weights,
    weights_output,
)
from stylelib.data import PhotoCrops, photo_files
from stylelib.errors import StylelibError, check_int, check_number, command
from stylelib.images import check_image, check_size
from stylelib.profiles import pick_device, seeded

Scheduler = DDPMScheduler | DDIMScheduler
"""The diffusers schedulers the SDEdit loop is written for (``add_noise`` + ``step``)."""

TURBO_MODEL = "stabilityai/sd-turbo"
"""Stable Diffusion distilled to 1-4 steps: ``guidance=0.0``, ``steps`` with steps*strength >= 1."""
CLASSIC_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
"""The classic latent diffusion model: a prompt, ``guidance`` about 7.5, 30-50 steps."""

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


def _to_model(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels to the [-1, 1] range diffusion models are trained on."""
    return image * 2 - 1


def _to_pixels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model space back to [0, 1] pixels (clamped: noised images overshoot)."""
    return ((x + 1) / 2).clamp(0, 1)


def _noise(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise of ``like``'s shape, drawn on the CPU so every device agrees."""
    return torch.randn(like.shape, generator=generator).to(like.device, like.dtype)


def _at(t: int | torch.Tensor) -> torch.IntTensor:
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
    x0 = _to_model(image)
    return _to_pixels(scheduler.add_noise(x0, _noise(x0, generator), _at(t)))


def _pad(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflection-pad the bottom and right so both sides are multiples of ``multiple``."""
    height, width = image.shape[-2:]
    return F.pad(image, (0, -width % multiple, 0, -height % multiple), mode="reflect")


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
) -> torch.Tensor:
    """Run the reverse process from ``x`` at ``timesteps[0]`` down through ``timesteps``."""
    for t in timesteps:
        eps = prior(scheduler.scale_model_input(x, t), t.reshape(1).to(x.device))
        x, clean = scheduler.step(eps, t, x, generator=generator, return_dict=False)
        if predictions is not None:
            predictions.append(_to_pixels(clean))
    return x


def sdedit_trace(
    prior: PaintingPrior, image: torch.Tensor, strength: float, steps: int = 50, seed: int = 0,
    scheduler: Scheduler | None = None,
) -> SDEditTrace:
    """SDEdit ``image`` with ``prior``, keeping the noised start and every clean-image estimate.

    The image is reflection-padded to a multiple of ``prior.multiple`` and cropped back, so a
    prior trained on small crops restyles a photo of any size. ``scheduler`` defaults to
    ``prior.sampler()`` (DDIM); the same ``seed`` gives the same noise and the same result.
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
    x0 = _to_model(_pad(image, prior.multiple)).to(device, dtype)
    x = scheduler.add_noise(x0, _noise(x0, generator), _at(timesteps[0]))
    predictions: list[torch.Tensor] = []
    result = _denoise(prior, x, timesteps.to(device), scheduler, generator, predictions)

    def back(y: torch.Tensor) -> torch.Tensor:
        return y[..., :height, :width].to(image.device, image.dtype)

    return SDEditTrace(back(_to_pixels(result)), back(_to_pixels(x)), timesteps.cpu(),
                       [back(p) for p in predictions])


def sdedit(
    prior: PaintingPrior, image: torch.Tensor, strength: float, steps: int = 50, seed: int = 0,
    scheduler: Scheduler | None = None,
) -> torch.Tensor:
    """The restyled ``[1, 3, H, W]`` image in [0, 1]; see :func:`sdedit_trace`."""
    return sdedit_trace(prior, image, strength, steps, seed, scheduler).result


def sample(prior: PaintingPrior, n: int = 4, steps: int = 50, seed: int = 0,
           size: int | None = None) -> torch.Tensor:
    """``n`` images drawn from pure noise with DDIM: what the prior believes paintings are.

    ``size`` defaults to the UNet's ``sample_size`` (its training crop).
    """
    check_int(n, "n")
    side = size or int(prior.unet.config["sample_size"])
    _check_side(side, prior)
    scheduler = prior.sampler()
    timesteps = img2img_timesteps(scheduler, steps, 1.0)
    generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    device, dtype = _where(prior)
    x = _noise(torch.empty(n, 3, side, side, device=device, dtype=dtype), generator)
    x = x * scheduler.init_noise_sigma
    return _to_pixels(_denoise(prior, x, timesteps.to(device), scheduler, generator)).cpu()


def _check_side(side: int, prior: PaintingPrior, name: str = "size") -> None:
    """Refuse a square side the UNet cannot halve down to its coarsest block."""
    check_size(side, name)
    if side % prior.multiple:
        raise StylelibError(
            f"{name}={side} is not a multiple of {prior.multiple}, which this UNet needs "
            f"({len(prior.unet.config['block_out_channels'])} blocks): use "
            f"{side // prior.multiple * prior.multiple or prior.multiple} or "
            f"{(side // prior.multiple + 1) * prior.multiple}."
        )


# --------------------------------------------------------------------------- training


def denoising_loss(prior: PaintingPrior, images: torch.Tensor, seed: int) -> torch.Tensor:
    """DDPM's simple objective on ``[B, 3, H, W]`` images in [0, 1]: the mean squared error of
    the predicted noise, at a uniformly random timestep per image (drawn from ``seed``)."""
    generator = torch.Generator().manual_seed(seed)
    total = len(prior.schedule.alphas_cumprod)
    t = _at(torch.randint(total, (images.shape[0],), generator=generator).to(images.device))
    x0 = _to_model(images)
    noise = _noise(x0, generator)
    return F.mse_loss(prior(prior.schedule.add_noise(x0, noise, t), t), noise)


def _step_seed(seed: int, step: int) -> int:
    """A well-mixed 63-bit seed for training step ``step`` of the run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, step]).generate_state(2, np.uint64)[0] >> 1)


KIND = WeightKind("PaintingPrior", "stylelib.diffusion.save_prior", "load_prior",
                  "stylelib.diffusion.train_prior")


def _config_json(prior: PaintingPrior) -> tuple[str, str]:
    """The UNet's and the schedule's diffusers configs as JSON (private ``_`` keys dropped)."""
    def public(config: Any) -> str:
        return json.dumps({k: v for k, v in config.items() if not k.startswith("_")},
                          sort_keys=True)
    return public(prior.unet.config), public(prior.schedule.config)


def train_prior(
    paintings: Sequence[str | Path] | str | Path,
    *,
    steps: int,
    prior: PaintingPrior | None = None,
    size: int = 32,
    scale: int | None = 256,
    batch_size: int = 16,
    lr: float = 2e-4,
    warmup: int = 100,
    device: str | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 200,
    seed: int = 0,
    progress: bool = True,
    minutes: float | None = None,
    preview: int = 0,
    preview_every: int = 100,
    preview_steps: int = 25,
) -> TrainResult[PaintingPrior]:
    """Train a :class:`PaintingPrior` with DDPM's noise-prediction objective on painting crops.

    Each step draws ``batch_size`` random ``size``-pixel crops of ``paintings`` (a folder or a
    list of files) after resizing each painting to a long side of ``scale``, so the prior
    learns brush strokes at the scale it will later paint photos at. ``prior`` defaults to
    ``PaintingPrior()`` initialised from ``seed``. With ``checkpoint``, the state is saved every
    ``checkpoint_every`` steps and at the end, and an existing checkpoint resumes up to
    ``steps`` in total: crops, timesteps and noise depend only on ``(seed, step)``, so a resumed
    run equals an uninterrupted one. ``minutes`` ends this call early once that much time has
    passed, with a checkpoint at the step reached (pass ``checkpoint``; the same call again
    goes on from there). ``preview`` > 0 draws that many samples from fixed noise every
    ``preview_every`` steps and at the end. The learning rate rises over ``warmup`` steps.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("checkpoint_every", checkpoint_every), ("preview_every", preview_every),
                        ("preview_steps", preview_steps)):
        check_int(value, name)
    check_int(warmup, "warmup", minimum=0)
    check_int(preview, "preview", minimum=0)
    check_int(seed, "seed", minimum=0)
    check_size(scale, "scale")
    check_number(lr, "lr", strict=True)
    files = photo_files(paintings)
    dev = pick_device(device)
    if prior is None:
        prior = seeded(PaintingPrior, seed)
    _check_side(size, prior)
    net = prior.to(dev)
    unet_config, schedule_config = _config_json(net)
    plan = Plan(
        steps, lr, warmup, Path(checkpoint).expanduser() if checkpoint is not None else None,
        checkpoint_every, {
            "batch_size": batch_size, "size": size, "scale": scale, "lr": lr, "warmup": warmup,
            "seed": seed, "paintings": len(files), "unet": unet_config,
            "schedule": schedule_config,
        }, KIND, preview_every, progress, minutes,
    )
    crops = PhotoCrops(files, size, seed, scale)

    def batches(done: int) -> Iterable[tuple[int, torch.Tensor]]:
        loader = DataLoader(crops, batch_size=batch_size,
                            sampler=range(done * batch_size, steps * batch_size))
        return zip(itertools.count(done), loader, strict=False)

    def step(batch: tuple[int, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        index, images = batch
        loss = denoising_loss(net, images.to(dev), _step_seed(seed, index))
        return loss, {"loss": loss.item()}

    def draw() -> torch.Tensor:
        return sample(net, preview, preview_steps, seed, size)

    return fit(net, torch.optim.Adam(net.parameters(), lr=lr), plan, batches, step,
               preview=draw if preview else None)


# --------------------------------------------------------------------------- weight files

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
    return save_weights(prior, target, {**card, **dict(zip(_RESERVED, _config_json(prior),
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
            f"`python -m stylelib.diffusion {PRIOR_PAINTING} --steps {PRIOR_STEPS}` (resumable; "
            "about 1.5 s per step on two CPU cores), or reinstall stylelib."
        )
    return load_prior(path, device)


# --------------------------------------------------------------------------- Stable Diffusion


def _prepare(pipe: StableDiffusionImg2ImgPipeline, device: torch.device
             ) -> StableDiffusionImg2ImgPipeline:
    """Move ``pipe`` to ``device``, keeping an fp16 pipeline's VAE in float32 when its config
    asks for it (``force_upcast``), and silence the per-call progress bar."""
    pipe = pipe.to(device)
    if pipe.vae.dtype == torch.float16 and pipe.vae.config["force_upcast"]:
        pipe.vae.to(torch.float32)
    pipe.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    return pipe


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub's host answers: offline, downloads would retry for ~20 s."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def load_sd_img2img(
    model_id: str = TURBO_MODEL, device: str | None = None, dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
) -> StableDiffusionImg2ImgPipeline:
    """Download (or load from the cache) a Stable Diffusion img2img pipeline.

    On CUDA it runs in float16 by default, float32 elsewhere. Two fp16 pitfalls give black
    images: the VAE decoder's activations overflow fp16 into NaN, so the VAE stays in float32
    when its config says ``force_upcast`` (SD's does; :func:`sd_img2img` encodes and decodes
    with it), and the classic model's safety checker blacks out flagged outputs, which
    :func:`sd_img2img` reports as an error instead. Use ``TURBO_MODEL`` (1-4 steps,
    ``guidance=0.0``) or ``CLASSIC_MODEL`` (prompt, ``guidance`` ~7.5, 30-50 steps).
    Without internet only a cached model loads; otherwise one clear error says what to do.
    """
    dev = pick_device(device)
    dtype = dtype or (torch.float16 if dev.type == "cuda" else torch.float32)
    online = _hub_reachable()
    try:
        with warnings.catch_warnings():
            # diffusers passes an argument huggingface_hub has deprecated: noise for the reader.
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            pipe = AutoPipelineForImage2Image.from_pretrained(  # type: ignore[no-untyped-call]
                model_id, torch_dtype=dtype, cache_dir=cache_dir, local_files_only=not online
            )
    except (OSError, ValueError) as error:
        reason = "the Hugging Face Hub cannot be reached" if not online else str(error)[:300]
        raise StylelibError(
            f"Could not load the Stable Diffusion weights {model_id!r}: {reason}. They are "
            "downloaded from huggingface.co on first use (about 2-5 GB), so this needs internet "
            "and, to be practical, a GPU: run the chapter on Colab with a GPU runtime, or "
            "download the model once online (it is then cached). The painting prior "
            "(stylelib.diffusion.sdedit) runs offline on a CPU."
        ) from None
    if not isinstance(pipe, StableDiffusionImg2ImgPipeline):
        raise StylelibError(
            f"{model_id!r} loads a {type(pipe).__name__}; stylelib runs Stable Diffusion 1.x/2.x "
            f"img2img pipelines: use {TURBO_MODEL!r} or {CLASSIC_MODEL!r}."
        )
    return _prepare(pipe, dev)


@torch.inference_mode()
def sd_img2img(
    pipe: StableDiffusionImg2ImgPipeline, image: torch.Tensor, prompt: str = "",
    strength: float = 0.5, steps: int = 2, guidance: float = 0.0, seed: int = 0,
) -> torch.Tensor:
    """SDEdit with Stable Diffusion: ``[1, 3, H, W]`` in [0, 1] to the same size, in [0, 1].

    SDEdit happens in the VAE's latent space: the image is encoded (padded to a multiple of
    the VAE's downscaling), noised and denoised by the pipeline for ``int(steps * strength)``
    steps, then decoded here with the VAE in its own (float32-safe) dtype and cropped back.
    ``guidance`` > 1 turns on classifier-free guidance towards ``prompt``.
    """
    image = check_image(image)
    if check_strength(steps, strength) == 0:
        return image.clone()
    check_number(guidance, "guidance")
    generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    vae: AutoencoderKL = pipe.vae
    scaling = float(vae.config["scaling_factor"])
    padded = _to_model(_pad(image, pipe.vae_scale_factor)).to(vae.device, vae.dtype)
    latents = vae.encode(padded).latent_dist.sample(generator) * scaling
    denoised = pipe(
        prompt=prompt, image=latents, strength=strength, num_inference_steps=steps,
        guidance_scale=guidance, generator=generator, output_type="latent",
    ).images
    decoded = vae.decode(denoised.to(vae.dtype) / scaling).sample.float()
    if not torch.isfinite(decoded).all():
        raise StylelibError(
            "Stable Diffusion produced NaN (a black image): float16 overflowed. Load the "
            "pipeline with dtype=torch.float32."
        )
    if pipe.safety_checker is not None:
        _, flagged = pipe.run_safety_checker(  # type: ignore[no-untyped-call]
            decoded, vae.device, pipe.unet.dtype
        )
        if any(flagged):
            raise StylelibError(
                "The model's safety checker flagged the result (it would have been blacked "
                "out): change the prompt, the seed or the image."
            )
    height, width = image.shape[-2:]
    return _to_pixels(decoded[..., :height, :width]).to(image.device, image.dtype)


def tiny_sd_pipeline(seed: int = 0) -> StableDiffusionImg2ImgPipeline:
    """A tiny random Stable Diffusion img2img pipeline (float32, CPU) built offline in a second.

    Same classes and code path as the real model at toy sizes: it produces noise, not
    pictures, and lets tests and CI run :func:`sd_img2img` without downloads.
    """
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_int(seed, "seed", minimum=0))
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            attention_head_dim=8,
        )
        vae = AutoencoderKL(
            block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        )
        symbols = [chr(c) for c in range(ord("a"), ord("z") + 1)]
        vocab = {word: index for index, word in enumerate(
            ["<|startoftext|>", "<|endoftext|>", *symbols, *(f"{s}</w>" for s in symbols)])}
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4,
            num_hidden_layers=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
            pad_token_id=1,
        ))
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.json").write_text(json.dumps(vocab))
        Path(folder, "merges.txt").write_text("#version: 0.2\n")
        Path(folder, "tokenizer_config.json").write_text(json.dumps({"model_max_length": 16}))
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None,  # type: ignore[arg-type]
        requires_safety_checker=False,
    )
    return _prepare(pipe, torch.device("cpu"))


# --------------------------------------------------------------------------- training command


def main(argv: Sequence[str] | None = None) -> None:
    """Train (or resume) a painting prior on one painting and write its weights and model card."""
    parser = argparse.ArgumentParser(
        prog="python -m stylelib.diffusion",
        description="Train a small pixel-space diffusion prior on crops of one painting.",
        epilog=f"example: python -m stylelib.diffusion {PRIOR_PAINTING} --steps {PRIOR_STEPS}",
    )
    parser.add_argument("painting", nargs="?", default=PRIOR_PAINTING,
                        help=f"painting: a book image name ({PRIOR_PAINTING}) or an image file "
                             "(its prior is then written beside the current folder's files)")
    add_training_arguments(parser, steps=PRIOR_STEPS, size=32, batch_size=32, lr=2e-4,
                           what="prior")
    parser.add_argument("--channels", default=",".join(map(str, PRIOR_CHANNELS)),
                        help=argparse.SUPPRESS)  # UNet widths; tests train a tiny one
    args = parser.parse_args(argv)
    own = Path(args.painting).expanduser()
    if own.is_file():
        painting_file, credit = own, f"{own.name}: the reader's own painting"
        default_out = Path(f"prior_{own.stem}.safetensors")
    else:
        asset = assets.resolve(args.painting)
        painting_file, credit = assets.fetch(args.painting), (
            f"{asset.name}: {asset.credit} ({asset.licence})")
        default_out = prior_path(Path(asset.name).stem)
    out = weights_output(args.out, default_out)
    checkpoint = out.with_name(f"{out.stem}.checkpoint.safetensors")
    channels = tuple(int(c) for c in args.channels.split(","))
    earlier: dict[str, str] = {}
    if args.start_from:
        prior = load_prior(args.start_from, "cpu")
        earlier = prior.card
    else:
        prior = seeded(lambda: PaintingPrior(prior_unet(channels, 2, args.size,
                                                        math.gcd(32, *channels))), args.seed)
    result = train_prior(
        [painting_file], steps=args.steps, prior=prior, size=args.size,
        scale=args.scale, batch_size=args.batch_size, lr=args.lr, device=args.device,
        checkpoint=checkpoint, checkpoint_every=250, seed=args.seed, minutes=args.minutes,
    )
    config = result.net.unet.config
    parameters = sum(p.numel() for p in result.net.parameters())
    card = {
        "model": f"DDPM noise-prediction UNet (diffusers UNet2DModel, no attention, channels "
                 f"{tuple(config['block_out_channels'])}, {config['layers_per_block']} layers "
                 f"per block, {parameters / 1e6:.2f} M parameters), linear 1000-step schedule; "
                 "stylelib.diffusion.PaintingPrior, fp16",
        "painting": credit,
        "data": f"random {args.size} px crops of this one painting resized to a long side of "
                f"{args.scale} px",
        **run_fields(result, f"batch {args.batch_size}, lr {args.lr} (warm-up 100), seed "
                     f"{args.seed}", earlier, args.device),
        "loss": f"{final_losses(result.history, ['loss'], 100)['loss']:.4f} (noise-prediction "
                "MSE, mean of the last 100 steps)",
        "licence": "weights: MIT, like the code; the painting's own licence is in 'painting'",
    }
    publish(save_prior(result.net, out, card), card)


if __name__ == "__main__":
    sys.exit(command(main))
