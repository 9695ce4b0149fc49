"""Tests for stylelib.training_views: the loss plot and the preview slider chapters 4-5 show."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from stylelib.training_views import plot_losses, preview_slider


def test_plot_losses_draws_one_log_scaled_curve_per_term() -> None:
    plt.close("all")
    history = [{"content": 1.0 / (k + 1), "style": 10.0 / (k + 1) ** 2, "tv": 0.1}
               for k in range(5)]
    plot_losses(history, title="t", ylabel="relative error")
    axis = plt.gcf().axes[0]
    assert axis.get_yscale() == "log" and axis.get_title() == "t"
    assert [line.get_label() for line in axis.lines] == ["content error", "style error"]
    assert list(axis.lines[1].get_ydata()) == [h["style"] for h in history]
    with pytest.raises(ValueError, match="history is empty"):
        plot_losses([], title="t", ylabel="y")


def test_preview_slider_orders_the_steps_and_starts_at_the_last() -> None:
    previews = {10: torch.zeros(1, 3, 16, 16), 0: torch.ones(1, 3, 16, 16),
                5: torch.rand(1, 3, 16, 16)}
    slider = preview_slider(previews, caption="credits")
    assert list(slider.values) == [0, 5, 10]
    assert slider.values[slider.start] == 10
    with pytest.raises(ValueError, match="no previews"):
        preview_slider({})
