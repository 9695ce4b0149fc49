"""The try-it panels' Python side: the panel's HTML and the AdaIN graphs the browser runs."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime
import pytest
import torch

from stylelib import adain, bundled, fast, tryit, tryit_build
from stylelib.errors import StylelibError


def test_panels_offer_what_the_build_exports() -> None:
    fast_html = tryit.panel("fast")._repr_html_()
    adain_html = tryit.panel("adain")._repr_html_()
    assert bundled.available(), "no bundled network to offer"
    for style in bundled.available():
        assert f'<option value="{style}">' in fast_html
    for name in tryit.PAINTINGS:
        assert f'<option value="{name}">' in adain_html
    assert 'name="alpha"' in adain_html and 'name="alpha"' not in fast_html
    assert 'name="painting-file"' in adain_html and "tryit-painting" in adain_html
    for markup in (fast_html, adain_html):
        assert "never leaves this browser" in markup
        # Hidden until _static/tryit.js starts it: a kernel shows only the note about the book.
        assert '<div class="tryit-panel" hidden>' in markup and "tryit-elsewhere" in markup
        assert f'data-max-bytes="{tryit.MAX_BYTES}"' in markup
        for side in tryit.SIDES:
            assert f'<option value="{side}">' in markup
    with pytest.raises(ValueError, match="kind must be"):
        tryit.panel("gatys")  # type: ignore[arg-type]


@pytest.mark.slow
def test_adain_graphs_give_what_blend_renders(mirror: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Encoder, then AdaIN + alpha mix + decoder, in ONNX Runtime, weights stored in float16 as
    the build ships them: ``Blend.render``'s image in float32 (the graphs compute in float32)."""
    monkeypatch.setenv("STYLELIB_BF16", "0")
    torch.manual_seed(0)
    model = adain.pretrained()
    photo, painting = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 40, 56)
    encoder_path, decoder_path = (tryit_build.store_half(path)
                                  for path in tryit_build.export_adain(model, tmp_path))
    encoder = onnxruntime.InferenceSession(encoder_path, providers=["CPUExecutionProvider"])
    decoder = onnxruntime.InferenceSession(decoder_path, providers=["CPUExecutionProvider"])
    content, style = (encoder.run(None, {"image": image.numpy()})[0] for image in (photo, painting))
    blend = model.prepare(photo, painting)
    for alpha in (0.0, 0.3, 1.0):
        feeds = {"content": content, "style": style, "alpha": np.array(alpha, np.float32)}
        image = torch.from_numpy(decoder.run(None, feeds)[0])
        expected = blend.render(alpha)
        assert image.shape == expected.shape == (1, 3, 48, 64)
        assert float(expected.std()) > 0.02, "a flat picture would match anything"
        assert float((image - expected).abs().max()) < 1e-3, f"alpha {alpha}"


def test_float16_storage_halves_a_net_and_keeps_its_picture(mirror: Path, tmp_path: Path) -> None:
    """The bundled weights are float16 files, so storing them so loses nothing."""
    net = bundled.load("great_wave")
    full = fast.export_onnx(net, tmp_path / "full.onnx", size=64)
    half = tryit_build.store_half(fast.export_onnx(net, tmp_path / "half.onnx", size=64))
    assert 0.45 < half.stat().st_size / full.stat().st_size < 0.55
    photo = torch.rand(1, 3, 48, 64).numpy()
    pictures = [onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
                .run(None, {"image": photo})[0] for path in (full, half)]
    assert float(np.abs(pictures[0]).mean()) > 0.05
    np.testing.assert_allclose(pictures[1], pictures[0], rtol=0, atol=1e-5)


def test_a_build_without_npm_can_skip_the_panels_files(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Without npm the build stops with advice; following it, the build writes no panel files."""
    monkeypatch.setattr(tryit_build.shutil, "which", lambda name: None)
    with pytest.raises(StylelibError, match=r"install Node\.js, or build without the panels' "
                                            r"files by setting STYLELIB_TRYIT=0"):
        tryit_build.vendor_runtime(tmp_path / "cache", tmp_path / "static")
    monkeypatch.setenv(tryit_build.SKIP_ENV, "0")
    stale = tmp_path / "html" / "_static" / tryit_build.FOLDER
    stale.mkdir(parents=True)
    (stale / "manifest.json").write_text("{}")  # an earlier build's panels
    app = SimpleNamespace(builder=SimpleNamespace(format="html"), outdir=str(tmp_path / "html"))
    tryit_build._on_build_finished(app, None)  # type: ignore[arg-type]
    assert not stale.exists() and not (tmp_path / ".tryit_cache").exists()


def test_the_runtime_is_vendored_for_both_backends(tmp_path: Path) -> None:
    """From the npm tarball, each backend's script, module and binary land in the site, with
    their sizes in the manifest; a tarball missing one is refused by name."""
    cache = tmp_path / "npm"
    cache.mkdir()
    tarball = cache / f"onnxruntime-web-{tryit_build.ORT_VERSION}.tgz"
    names = [name for files in tryit_build.BACKENDS.values() for name in files]
    with tarfile.open(tarball, "w:gz") as archive:
        for size, name in enumerate(names, 1):
            member = tarfile.TarInfo(f"package/dist/{name}")
            member.size = size
            archive.addfile(member, io.BytesIO(b"x" * size))
    runtime = tryit_build.vendor_runtime(cache, tmp_path / "static" / "ort")
    assert runtime["version"] == tryit_build.ORT_VERSION
    assert set(runtime["backends"]) == {"wasm", "webgpu"}
    webgpu = runtime["backends"]["webgpu"]
    assert webgpu["binary"] == {"url": "ort/ort-wasm-simd-threaded.asyncify.wasm",
                                "bytes": names.index("ort-wasm-simd-threaded.asyncify.wasm") + 1}
    assert runtime["backends"]["wasm"]["script"]["url"] == "ort/ort.wasm.min.js"
    assert sorted(path.name for path in (tmp_path / "static" / "ort").iterdir()) == sorted(names)
    with tarfile.open(tarball, "w:gz") as archive:
        member = tarfile.TarInfo(f"package/dist/{names[0]}")
        archive.addfile(member, io.BytesIO(b""))
    with pytest.raises(StylelibError, match=r"has no dist/ort-wasm-simd-threaded\.mjs"):
        tryit_build.vendor_runtime(cache, tmp_path / "other")
