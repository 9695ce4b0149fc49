"""Each method against the bare network work it cannot avoid: the benchmarks' measurements.

A benchmark returns rows of label and value: the method's own cost, its floor (for Gatys: one
backbone forward + backward) and their ratio, the overhead the library adds. The registry
(:mod:`stylelib.methods`) points each method at its benchmark; ``python -m stylelib bench``
prints them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress

import torch

from stylelib import bundled
from stylelib.adain import DEEPEST, AdaIN, Decoder, adain, load_decoder, weights_path
from stylelib.adain import stylize as adain_stylize
from stylelib.backbones import DEFAULT, FALLBACK, FeatureExtractor, default_backbone
from stylelib.costs import Timing, measure
from stylelib.errors import AssetError
from stylelib.fast import TransformerNet, stylize
from stylelib.images import load_image
from stylelib.losses import CONTENT_LAYERS, STYLE_LAYERS, PerceptualLoss
from stylelib.precision import describe, reduced
from stylelib.profiles import pick_device


def bench_gatys(size: int, repeat: int, warmup: int, backbone: str | None, device: str | None
                ) -> list[tuple[str, str]]:
    """One Gatys evaluation (all losses + gradient) in float32 and in the precision
    :func:`~stylelib.precision.reduced` picks, vs a bare float32 backbone forward + backward."""
    dev = pick_device(device)
    name = backbone or default_backbone()
    chosen = reduced(dev)
    content = load_image("tubingen", size, device=dev)
    style = load_image("starry_night", size, device=dev)
    losses = {dtype: PerceptualLoss(backbone=name, style_weight=10.0, precision=dtype).to(dev)
              for dtype in dict.fromkeys((None, chosen))}
    for loss in losses.values():
        loss.set_content(content)
        loss.set_style(style)
    layers = [*CONTENT_LAYERS, *STYLE_LAYERS]
    other = FALLBACK if name != FALLBACK else DEFAULT
    networks = [FeatureExtractor(layers, name).to(dev)]
    with suppress(AssetError):  # offline on the fallback: the paper's network cannot be had
        networks.append(FeatureExtractor(layers, other).to(dev))
    image = content.clone().requires_grad_(True)

    def gatys_step(loss: PerceptualLoss) -> Callable[[], None]:
        def run() -> None:
            image.grad = None
            loss(image).total.backward()

        return run

    def bare_step(network: FeatureExtractor) -> Callable[[], None]:
        def run() -> None:
            image.grad = None
            network(image)[network.layers[-1]].sum().backward()

        return run

    fp32, fastest, bare, *others = measure(
        [gatys_step(losses[None]), gatys_step(losses[chosen]),
         *(bare_step(network) for network in networks)], repeat, warmup, dev)
    height, width = content.shape[-2:]
    return [
        ("setting", f"{name}, {width}x{height} px, {dev}, {torch.get_num_threads()} threads, "
                    f"median of {repeat} after {warmup} warm-up"),
        ("one Gatys evaluation (losses + gradient), float32", _ms(fp32)),
        (f"one Gatys evaluation, {describe(chosen)} (the default here)", _ms(fastest)),
        (f"bare {name} forward + backward to relu5_1, float32", _ms(bare)),
        *((f"bare {other} forward + backward to relu5_1, float32, for comparison", _ms(t))
          for t in others),
        ("float32 evaluation / bare float32 (medians; bests)",
         f"{fp32.median / bare.median:.3f}; {fp32.best / bare.best:.3f} (target <= 1.1)"),
        (f"{describe(chosen)} evaluation / bare float32 (medians; bests)",
         f"{fastest.median / bare.median:.3f}; {fastest.best / bare.best:.3f}"
         " (CPU target <= 0.7)"),
    ]


def _ms(timing: Timing) -> str:
    """A timing's median and best in milliseconds."""
    return f"{timing.median * 1e3:.1f} ms (best {timing.best * 1e3:.1f})"


def bench_fast(size: int, repeat: int, warmup: int, backbone: str | None, device: str | None
               ) -> list[tuple[str, str]]:
    """stylize() on one image vs a bare forward of the same network (``backbone`` is unused:
    a trained feed-forward network needs no loss network)."""
    dev = pick_device(device)
    names = bundled.available()
    if names:
        net, what = bundled.load(names[0], dev), f"bundled {names[0]} net"
    else:
        torch.manual_seed(0)
        net, what = TransformerNet().to(dev).eval(), "random weights (no bundled net found)"
    image = load_image("tubingen", size, device=dev)

    def bare_forward() -> None:
        with torch.no_grad():
            net(image)

    styled, bare = measure([lambda: stylize(net, image), bare_forward], repeat, warmup, dev)
    height, width = image.shape[-2:]
    square_512 = styled.median * 512 * 512 / (height * width)
    return [
        ("setting", f"TransformerNet, {what}, {width}x{height} "
                    f"px, {dev}, {torch.get_num_threads()} threads, median of {repeat} after "
                    f"{warmup} warm-up"),
        ("stylize(net, image)", f"{styled.median * 1e3:.1f} ms (best {styled.best * 1e3:.1f})"),
        ("bare net(image) under torch.no_grad()",
         f"{bare.median * 1e3:.1f} ms (best {bare.best * 1e3:.1f})"),
        ("ratio (medians; bests)",
         f"{styled.median / bare.median:.3f}; {styled.best / bare.best:.3f} (target <= 1.1)"),
        ("stylize per 512x512 image (scaled by pixels)",
         f"{square_512:.2f} s (CPU target <= 1.0 s)"),
    ]


def bench_sdedit(size: int, repeat: int, warmup: int, backbone: str | None, device: str | None
                 ) -> list[tuple[str, str]]:
    """SDEdit with the painting prior (strength 0.5 of 20 DDIM steps = 10 UNet calls, in the
    precision :func:`~stylelib.precision.reduced` picks) vs those 10 bare float32 UNet calls
    (``backbone`` is unused). Imported here: diffusers takes seconds to load."""
    from stylelib.diffusion import PaintingPrior, pretrained, prior_path, sdedit

    dev = pick_device(device)
    if prior_path().is_file():
        prior, what = pretrained(str(dev)), f"bundled {prior_path().name}"
    else:
        torch.manual_seed(0)
        prior, what = PaintingPrior().to(dev).eval(), "random weights (no bundled prior found)"
    image = load_image("tubingen", size, device=dev)
    height, width = image.shape[-2:]
    padded = torch.zeros(1, 3, -(-height // prior.multiple) * prior.multiple,
                         -(-width // prior.multiple) * prior.multiple, device=dev)
    t = torch.tensor([499], device=dev)

    def bare_calls() -> None:
        with torch.inference_mode():
            for _ in range(10):
                prior(padded, t)

    edited, bare = measure([lambda: sdedit(prior, image, 0.5, steps=20), bare_calls], repeat,
                           warmup, dev)
    return [
        ("setting", f"PaintingPrior ({what}, {sum(p.numel() for p in prior.parameters())} "
                    f"parameters), {width}x{height} px, {dev}, {torch.get_num_threads()} "
                    f"threads, sdedit in {describe(reduced(dev))}, bare calls in float32, "
                    f"median of {repeat} after {warmup} warm-up"),
        ("sdedit(prior, image, 0.5, steps=20)",
         f"{edited.median:.2f} s per image (best {edited.best:.2f})"),
        ("10 bare prior(x, t) calls under inference_mode",
         f"{bare.median * 1e3:.1f} ms (best {bare.best * 1e3:.1f})"),
        ("ratio (medians; bests)",
         f"{edited.median / bare.median:.3f}; {edited.best / bare.best:.3f} (target <= 1.1)"),
    ]


def bench_adain(size: int, repeat: int, warmup: int, backbone: str | None, device: str | None
                ) -> list[tuple[str, str]]:
    """AdaIN stylize() vs its bare float32 network work (two encoder passes to relu4_1 and one
    decoder pass), and one new alpha frame of the cached renderer vs one bare decoder pass;
    stylize runs in the precision :func:`~stylelib.precision.reduced` picks, so with bfloat16
    the ratios fall below 1."""
    dev = pick_device(device)
    path = weights_path()
    if path.is_file():
        model, what = AdaIN(load_decoder(path)).to(dev), f"bundled decoder {path.name}"
    else:
        torch.manual_seed(0)
        model = AdaIN(Decoder(), backbone=backbone).to(dev)
        what = "random decoder weights (no bundled decoder found)"
    content = load_image("tubingen", size, device=dev)
    style = load_image("starry_night", size, device=dev)
    with torch.no_grad():
        target = adain(model.encode(content)[DEEPEST], model.encode(style)[DEEPEST])
    blend = model.prepare(content, style)

    def bare_passes() -> None:
        with torch.no_grad():
            model.encoder(content)
            model.encoder(style)
            model.decoder(target)

    def bare_decoder() -> None:
        with torch.no_grad():
            model.decoder(target)

    styled, bare, frame, decoder = measure(
        [lambda: adain_stylize(model, content, style), bare_passes, lambda: blend.render(0.5),
         bare_decoder], repeat, warmup, dev)
    height, width = content.shape[-2:]
    return [
        ("setting", f"AdaIN, {model.encoder.backbone} encoder, {what}, {width}x{height} px, "
                    f"{dev}, {torch.get_num_threads()} threads, stylize in "
                    f"{describe(reduced(dev))}, bare passes in float32, median of {repeat} "
                    f"after {warmup} warm-up"),
        ("stylize(model, content, style)",
         f"{styled.median * 1e3:.1f} ms (best {styled.best * 1e3:.1f})"),
        ("bare: 2 encoder passes to relu4_1 + 1 decoder pass",
         f"{bare.median * 1e3:.1f} ms (best {bare.best * 1e3:.1f})"),
        ("ratio (medians; bests)",
         f"{styled.median / bare.median:.3f}; {styled.best / bare.best:.3f} (target <= 1.1)"),
        ("one new alpha frame (cached renderer)",
         f"{frame.median * 1e3:.1f} ms (best {frame.best * 1e3:.1f})"),
        ("bare decoder pass", f"{decoder.median * 1e3:.1f} ms (best {decoder.best * 1e3:.1f})"),
        ("frame ratio (medians; bests)",
         f"{frame.median / decoder.median:.3f}; {frame.best / decoder.best:.3f} (target <= 1.1)"),
    ]
