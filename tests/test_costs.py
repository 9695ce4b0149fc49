"""Tests for stylelib.costs: the memory probe and the interleaved timer."""

from __future__ import annotations

import time

import torch

from stylelib import costs


def test_peak_memory_sees_a_large_temporary_tensor() -> None:
    with costs.peak_memory(torch.device("cpu")) as peak:
        block = torch.ones(64, 1024, 1024)  # 256 MB
        float(block.sum())
        del block
    assert peak[0] > 200
    with costs.peak_memory(torch.device("cpu")) as idle:
        pass
    assert idle[0] < 50


def test_measure_times_each_function_and_keeps_their_order() -> None:
    slow, quick = costs.measure([lambda: time.sleep(0.02), lambda: None], repeat=3, warmup=1,
                                device=torch.device("cpu"))
    assert 0.02 <= slow.best <= slow.median < 0.5
    assert quick.median < 0.01
