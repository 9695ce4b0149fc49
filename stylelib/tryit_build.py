"""Build-time half of the "try it" panels (a Sphinx extension): put the networks and the
browser runtime that ``_static/tryit.js`` downloads into the built site.

After an HTML build, :func:`build` exports the bundled feed-forward nets and the AdaIN encoder
and decoder to ONNX, saves the panel's paintings, and vendors ``onnxruntime-web`` (fetched with
``npm pack`` at :data:`ORT_VERSION`), all under ``_static/tryit/``; ``manifest.json`` there maps
each to its file (models and paintings named by content hash) and its size in bytes. Nothing is
fetched from a CDN when the book is read. The models store their weights in float16
(:func:`store_half`), half the download. Exports are cached beside the build, keyed by torch and
every file of stylelib, so a rebuild costs seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnx.numpy_helper
import torch
from torch import nn

from stylelib import adain, bundled, fast
from stylelib.assets import credit_lines
from stylelib.errors import StylelibError
from stylelib.files import sha256_of, write_atomically
from stylelib.images import MIN_SIDE, load_image, to_pil
from stylelib.result_cache import package_digest
from stylelib.tryit import PAINTING_SIDE, PAINTINGS

if TYPE_CHECKING:
    from sphinx.application import Sphinx

ORT_VERSION = "1.31.1"
"""The pinned ``onnxruntime-web`` release (npm) that runs the networks in the reader's browser."""
BACKENDS = {
    "wasm": ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"),
    "webgpu": ("ort.webgpu.min.js", "ort-wasm-simd-threaded.asyncify.mjs",
               "ort-wasm-simd-threaded.asyncify.wasm"),
}
"""Its two builds, as the script, the module it imports and the binary (SIMD, threads): plain
WebAssembly, and the build that runs networks on the GPU through WebGPU (twice the download),
which ``tryit.js`` loads instead where the browser offers a WebGPU adapter."""
PARTS = ("script", "module", "binary")
HALF_FROM = 1024
"""Weights with at least this many numbers are stored as float16 (:func:`store_half`); the few
small ones, biases and scales, stay float32, where a cast would cost more than it saves."""
SKIP_ENV = "STYLELIB_TRYIT"
"""Set to ``0`` to build the book without the panels' files (no npm needed)."""
FOLDER = "tryit"
"""Where everything goes inside the site's ``_static``."""


class Encoder(nn.Module):
    """The AdaIN encoder as one graph: RGB in [0, 1] (sides multiples of 8) to relu4_1."""

    def __init__(self, model: adain.AdaIN) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[1, 3, H, W]`` to ``[1, 512, H/8, W/8]``."""
        features: torch.Tensor = self.encoder(image)[adain.DEEPEST]
        return features


class BlendDecoder(nn.Module):
    """AdaIN, the alpha mix and the decoder as one graph, so a slider move is one call."""

    def __init__(self, model: adain.AdaIN) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: torch.Tensor
                ) -> torch.Tensor:
        """Encoded photo and painting and a scalar ``alpha`` to RGB in [0, 1], 8x the size."""
        target = adain.adain(content, style)
        image: torch.Tensor = self.decoder(adain.mix(target, content, alpha)).clamp(0, 1)
        return image


def _export_graph(module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str],
                  dynamic: dict[str, dict[int, Any]], path: Path) -> None:
    """Export ``module`` to one self-contained ONNX file, with the given dynamic axes."""
    torch.onnx.export(module.eval(), example, path, input_names=names[:-1], output_names=names[-1:],
                      dynamic_shapes=dynamic, dynamo=True, external_data=False, verbose=False)


def export_adain(model: adain.AdaIN, folder: Path) -> tuple[Path, Path]:
    """Write ``adain_encoder.onnx`` and ``adain_decoder.onnx`` into ``folder``."""
    sides = [torch.export.Dim(name, min=MIN_SIDE // adain.SCALE) for name in "hwHW"]
    encoder_path, decoder_path = folder / "adain_encoder.onnx", folder / "adain_decoder.onnx"
    image = torch.rand(1, 3, 64, 48)
    _export_graph(Encoder(model), (image,), ["image", "features"],
                  {"image": {2: adain.SCALE * sides[0], 3: adain.SCALE * sides[1]}},
                  encoder_path)
    features = (torch.rand(1, 512, 8, 6), torch.rand(1, 512, 5, 7), torch.tensor(0.5))
    _export_graph(BlendDecoder(model), features, ["content", "style", "alpha", "image"],
                  {"content": {2: sides[0], 3: sides[1]}, "style": {2: sides[2], 3: sides[3]},
                   "alpha": {}}, decoder_path)
    return encoder_path, decoder_path


def store_half(path: Path) -> Path:
    """Rewrite the ONNX file ``path`` with its float32 weights stored as float16, each cast
    back to float32 by a node at the graph's start: the download halves, and the arithmetic
    stays float32 (the WebAssembly runtime has few float16 kernels). Lossless for the bundled
    networks, whose weights are float16 files to begin with."""
    model = onnx.load(path)
    graph = model.graph
    kept, casts = [], []
    for tensor in graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT or math.prod(tensor.dims) < HALF_FROM:
            kept.append(tensor)
            continue
        values = onnx.numpy_helper.to_array(tensor)
        kept.append(onnx.numpy_helper.from_array(values.astype(np.float16), f"{tensor.name}.fp16"))
        casts.append(onnx.helper.make_node("Cast", [f"{tensor.name}.fp16"], [tensor.name],
                                           to=onnx.TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    write_atomically(path, lambda temporary: onnx.save(model, temporary))
    return path


def _cached(cache: Path, make: Callable[[Path], object]) -> Path:
    """The folder that ``make(folder)`` filled, reused while stylelib (its code, bundled weights
    and pinned checksums: :func:`~stylelib.result_cache.package_digest`) and torch are
    unchanged."""
    key = hashlib.sha256(f"{torch.__version__} {package_digest()}".encode())
    folder = cache / key.hexdigest()[:16]
    if not (folder / "done").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        make(folder)
        (folder / "done").touch()
    return folder


def _publish(source: Path, target: Path, stem: str) -> dict[str, Any]:
    """Copy ``source`` into ``target`` as ``stem.<first 12 hex of its sha256><suffix>``."""
    name = f"{stem}.{sha256_of(source)[:12]}{source.suffix}"
    shutil.copyfile(source, target / name)
    return {"url": name, "bytes": source.stat().st_size}


def _paintings(folder: Path) -> None:
    """The panel's bundled paintings as JPEGs, long side :data:`PAINTING_SIDE`."""
    for name in PAINTINGS:
        to_pil(load_image(name, PAINTING_SIDE)).save(folder / f"{name}.jpg", quality=90)


def vendor_runtime(cache: Path, target: Path) -> dict[str, Any]:
    """Copy the :data:`BACKENDS`' files of ``onnxruntime-web`` into ``target``, packed once by
    npm; each backend's ``{script, module, binary}`` as ``{url, bytes}``."""
    tarball = cache / f"onnxruntime-web-{ORT_VERSION}.tgz"
    if not tarball.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        npm = shutil.which("npm")
        if npm is None:
            raise StylelibError(
                "The book's try-it panels need npm to fetch onnxruntime-web: install Node.js, "
                f"or build without the panels' files by setting {SKIP_ENV}=0 (each panel then "
                "says that this copy of the book lacks them).")
        packed = subprocess.run([npm, "pack", f"onnxruntime-web@{ORT_VERSION}", "--silent",
                                 "--pack-destination", str(cache)], capture_output=True, text=True)
        if packed.returncode != 0:
            raise StylelibError(f"npm pack onnxruntime-web@{ORT_VERSION} failed (is the npm "
                                f"registry reachable?): {packed.stderr.strip()[-500:]}")
    target.mkdir(parents=True, exist_ok=True)
    backends: dict[str, dict[str, Any]] = {}
    with tarfile.open(tarball) as archive:
        for backend, names in BACKENDS.items():
            backends[backend] = {}
            for part, name in zip(PARTS, names, strict=True):
                try:
                    member = archive.extractfile(f"package/dist/{name}")
                except KeyError:
                    member = None
                if member is None:
                    raise StylelibError(f"{tarball} has no dist/{name}: is it onnxruntime-web? "
                                        "Delete it to have npm pack it again.")
                data = member.read()
                (target / name).write_bytes(data)
                backends[backend][part] = {"url": f"{target.name}/{name}", "bytes": len(data)}
    return {"version": ORT_VERSION, "backends": backends}


def build(static: Path, cache: Path) -> dict[str, Any]:
    """Fill ``static`` (the site's ``_static/tryit``, emptied first so that no file of an
    earlier build stays) and write its ``manifest.json``."""
    shutil.rmtree(static, ignore_errors=True)
    static.mkdir(parents=True)
    styles = bundled.available()
    nets = _cached(cache / "fast", lambda folder: [
        store_half(fast.export_onnx(bundled.load(style), folder / f"fast_{style}.onnx"))
        for style in styles])
    coder = _cached(cache / "adain", lambda folder: [
        store_half(path) for path in export_adain(adain.pretrained(), folder)])
    pictures = _cached(cache / "paintings", _paintings)
    manifest = {
        "runtime": vendor_runtime(cache / "npm", static / f"onnxruntime-web-{ORT_VERSION}"),
        "fast": {style: _publish(nets / f"fast_{style}.onnx", static, f"fast_{style}")
                 for style in styles},
        "adain": {part: _publish(coder / f"adain_{part}.onnx", static, f"adain_{part}")
                  for part in ("encoder", "decoder")},
        "paintings": {name: {**_publish(pictures / f"{name}.jpg", static, name),
                             "credit": credit_lines([name])} for name in PAINTINGS},
    }
    (static / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    """After a successful HTML build, add the panels' files to its ``_static`` (unless
    ``$STYLELIB_TRYIT`` is ``0``: a build on a machine without npm)."""
    if exception is None and app.builder.format == "html":
        outdir = Path(app.outdir)
        if os.environ.get(SKIP_ENV) == "0":  # no files of an earlier build may stay behind
            shutil.rmtree(outdir / "_static" / FOLDER, ignore_errors=True)
            return
        build(outdir / "_static" / FOLDER, outdir.parent / ".tryit_cache")


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the build step (Sphinx extension entry point)."""
    app.connect("build-finished", _on_build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

