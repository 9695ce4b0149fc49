"""The AdaIN paper's own trained network, from the legacy ``.pth`` pickles of
naoto0804/pytorch-AdaIN: kept apart from :mod:`stylelib.adain` because reading pickled files
safely is a job of its own, which the method and the course's decoder never need."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from stylelib import assets
from stylelib.adain import ORIGINAL, AdaIN, Decoder, OriginalEncoder
from stylelib.errors import AssetError, StylelibError
from stylelib.files import StateDict


def load_original(vgg_path: str | Path, decoder_path: str | Path) -> AdaIN:
    """The paper's network from naoto0804/pytorch-AdaIN release v0.0.0: its
    ``vgg_normalised.pth`` (a path, or the asset name ``weights/vgg_normalised.pth``) and
    ``decoder.pth`` (a path). Both are legacy pickles, read with ``weights_only=True`` only.
    """
    encoder = OriginalEncoder()
    state, path = _legacy_state(vgg_path, "vgg_normalised.pth")
    _load_sequential(encoder.body, state, path, "vgg_normalised.pth")
    trained = Decoder()
    state, path = _legacy_state(decoder_path, "decoder.pth")
    _load_sequential(trained.body, state, path, "decoder.pth")
    trained.card = {"backbone": ORIGINAL, "source": "naoto0804/pytorch-AdaIN v0.0.0"}
    return AdaIN(trained, encoder)


def _legacy_state(source: str | Path, what: str) -> tuple[StateDict, Path]:
    """The state dict of a pickled ``.pth`` file (or registry asset), read with
    ``weights_only=True``: tensors only, so a file that carries code is refused, never run."""
    path = Path(source).expanduser()
    if not path.is_file():
        try:
            path = assets.fetch(str(source))
        except AssetError as error:
            if "Unknown asset" not in str(error):
                raise
            raise StylelibError(
                f"No file at {source!r}: pass the path of the pytorch-AdaIN release's {what}."
            ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise StylelibError(
            f"{path} cannot be read as {what} ({type(error).__name__}); stylelib reads .pth "
            "files only with weights_only=True, which refuses anything but tensors: download "
            f"{what} again from naoto0804/pytorch-AdaIN release v0.0.0."
        ) from None
    if not isinstance(state, dict) or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor)
            for key, value in state.items()):
        raise StylelibError(f"{path} holds no state dict: pass {what} of pytorch-AdaIN.")
    return state, path


def _load_sequential(body: nn.Sequential, state: StateDict, path: Path, what: str) -> None:
    """Load the layers of ``body`` from a state dict of a (possibly longer) nn.Sequential."""
    layers = {k: v for k, v in state.items() if k.split(".")[0].isdigit()
              and int(k.split(".")[0]) < len(body)}
    try:
        body.load_state_dict(layers)
    except RuntimeError as error:
        detail = str(error).splitlines()[1].strip()[:200]
        raise StylelibError(
            f"{path} is not {what} of pytorch-AdaIN ({detail}): check which file is which."
        ) from None
