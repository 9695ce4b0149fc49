"""Stable Diffusion img2img: SDEdit (:mod:`stylelib.diffusion`) in the latent space of a large
text-conditioned model, kept apart because it needs a 2-5 GB download and, in practice, a GPU.
"""

from __future__ import annotations

import json
import socket
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch

# Imported from their modules: mypy reads diffusers' top-level names as its no-torch dummies.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.auto_pipeline import AutoPipelineForImage2Image
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import (
    StableDiffusionImg2ImgPipeline,
)
from diffusers.schedulers.scheduling_ddim import DDIMScheduler

from stylelib.diffusion import check_strength, to_model, to_pixels
from stylelib.errors import StylelibError, check_int, check_number
from stylelib.images import check_image, pad_to_multiple
from stylelib.profiles import pick_device

TURBO_MODEL = "stabilityai/sd-turbo"
"""Stable Diffusion distilled to 1-4 steps: ``guidance=0.0``, ``steps`` with steps*strength >= 1."""
TURBO_SIDE = 512
"""The image side SD-Turbo was trained at (its VAE and UNet work at any multiple of 8)."""
TURBO_STEPS = 4
"""The most denoising steps SD-Turbo was distilled for."""
CLASSIC_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
"""The classic latent diffusion model: a prompt, ``guidance`` about 7.5, 30-50 steps."""


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
    padded = to_model(pad_to_multiple(image, pipe.vae_scale_factor)).to(vae.device, vae.dtype)
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
    return to_pixels(decoded[..., :height, :width]).to(image.device, image.dtype)


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
