"""What running a method costs: its time (:func:`measure`) and its memory (:func:`peak_memory`).

The benchmarks and the chapters' timing cells use :func:`measure`, and the comparison
:func:`peak_memory`, so a number in the book and one printed by ``python -m stylelib bench``
or ``compare`` are measured the same way.
"""

from __future__ import annotations

import ctypes
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import psutil
import torch


@dataclass(frozen=True)
class Timing:
    """Median and best of repeated runs, in seconds."""

    median: float
    best: float


def measure(
    fns: Sequence[Callable[[], object]], repeat: int, warmup: int, device: torch.device
) -> list[Timing]:
    """Time each function ``repeat`` times after ``warmup`` untimed rounds.

    The functions are interleaved round by round, so load from other processes slows all of
    them alike and their ratio stays meaningful on a busy machine.
    """
    samples: list[list[float]] = [[] for _ in fns]
    for round_index in range(warmup + repeat):
        for fn, times in zip(fns, samples, strict=True):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_index >= warmup:
                times.append(time.perf_counter() - start)
    return [Timing(statistics.median(t), min(t)) for t in samples]


def _return_freed_memory() -> None:
    """Ask glibc to hand freed heap memory back to the system, so that memory an earlier image
    freed but the allocator kept does not hide what the next one needs (no-op elsewhere)."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextmanager
def peak_memory(device: torch.device) -> Iterator[list[float]]:
    """Measure the most memory in use beyond what was in use on entry, in MB.

    On CUDA, the allocator's peak; on the CPU, the process's resident memory sampled every
    millisecond in a thread, after returning freed memory to the system (an estimate that can
    miss spikes shorter than a millisecond). The value is appended to the yielded list on exit.
    """
    result: list[float] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result.append((torch.cuda.max_memory_allocated(device) - base) / 1e6)
        return
    _return_freed_memory()
    process = psutil.Process()
    base = process.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.001):
            peak[0] = max(peak[0], process.memory_info().rss)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        yield result
    finally:
        done.set()
        watcher.join()
        peak[0] = max(peak[0], process.memory_info().rss)
        result.append((peak[0] - base) / 1e6)


def megabytes(*modules: torch.nn.Module) -> float:
    """Parameter and buffer bytes of some modules, in MB."""
    return sum(t.numel() * t.element_size() for m in modules
               for t in (*m.parameters(), *m.buffers())) / 1e6
