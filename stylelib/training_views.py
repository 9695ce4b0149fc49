"""What a chapter shows of a training run: its loss curves, and a slider over its previews.

Chapters 4 and 5 train a network live and show the same two views of it; they live here so
both chapters draw them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from stylelib.images import to_pil
from stylelib.widgets import FrameSlider, frame_slider


def plot_losses(history: Sequence[Mapping[str, float]], *, title: str, ylabel: str,
                terms: Sequence[str] = ("content", "style"), label: str = "{} error") -> None:
    """Plot each of ``terms`` of a training history per step, on a log scale (the terms fall
    by orders of magnitude), each labelled ``label.format(term)``, and show the figure."""
    if not history:
        raise ValueError("history is empty: train for at least one step first.")
    _, axis = plt.subplots(figsize=(7, 3.4))
    for term in terms:
        axis.plot([step[term] for step in history], label=label.format(term))
    axis.set(yscale="log", xlabel="training step", ylabel=ylabel, title=title)
    axis.legend()
    plt.show()


def preview_slider(previews: Mapping[int, torch.Tensor], caption: str = "") -> FrameSlider:
    """A slider over the preview images a training run saved, by step, starting at the last."""
    if not previews:
        raise ValueError("no previews: pass preview= (and preview_every=) to the training.")
    steps = sorted(previews)
    return frame_slider(steps, [to_pil(previews[s]) for s in steps], label="step",
                        fmt="{:.0f}", initial=steps[-1], caption=caption)
