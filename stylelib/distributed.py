"""Training on several processes under ``torchrun``: which process this is, the one process
group (gloo on the CPU, NCCL on CUDA), and the few collective steps a training step needs.

Every training command runs unchanged on one process or under
``torchrun --nproc_per_node=N``. Each rank reads its own share of every global batch (a
:class:`~torch.utils.data.DistributedSampler` over the run's item numbers), computes its loss on
that share, and the ranks average their gradients before the optimiser step, as
:class:`~torch.nn.parallel.DistributedDataParallel` does: the weights then move exactly as in one
process with the whole batch, so a run may resume on any number of ranks. Rank 0 alone writes
checkpoints, weights, cards and progress bars.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place among the training processes ``torchrun`` started."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and draws progress bars (rank 0)."""
        return self.rank == 0


def world() -> World:
    """The world ``torchrun`` describes in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; one
    process of one when they are not set."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def join(device: torch.device) -> World:
    """Join the process group of a ``torchrun`` launch (once per process): NCCL when training
    on CUDA, gloo otherwise; each CUDA rank takes the GPU of its local rank."""
    here = world()
    if here.size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(here.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    return here


def local_device(device: torch.device) -> torch.device:
    """``device``; plain ``cuda`` under ``torchrun`` is the GPU of this process's local rank
    (one GPU per process)."""
    if device.type == "cuda" and world().size > 1:
        if device.index is not None:
            raise ValueError(
                f"--device {device} under torchrun would put every process on one GPU: pass "
                "--device cuda (each process then takes the GPU of its local rank).")
        return torch.device("cuda", world().local_rank)
    return device


def share(batch_size: int) -> int:
    """This rank's part of a global batch of ``batch_size``, refused unless it divides evenly
    (unequal parts would weigh some images more than others in the averaged gradient)."""
    ranks = world().size
    if batch_size % ranks:
        raise ValueError(  # a foundation module: the commands report ValueError in one line
            f"batch size {batch_size} does not split evenly over {ranks} processes: pass a "
            f"--batch-size that is a multiple of {ranks} (it is the global batch)."
        )
    return batch_size // ranks


def same_start(net: nn.Module) -> None:
    """Give every rank rank 0's weights (they are seeded alike; this makes sure)."""
    if world().size > 1:
        for tensor in net.state_dict().values():
            dist.broadcast(tensor, 0)


def average_gradients(net: nn.Module) -> None:
    """Average the gradients of ``net`` over the ranks, in one collective call: what
    DistributedDataParallel does after the backward pass, here after the step function's
    own backward, however many forward passes it made (the AdaIN decoder runs twice a step)."""
    if world().size == 1:
        return
    for parameter in net.parameters():  # a weight this rank left unused still takes part
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world().size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def agree(values: list[float], largest: bool = False) -> list[float]:
    """The mean over the ranks of each of ``values`` (losses), or with ``largest`` the largest
    (stop requests), the same list on every rank: a decision taken from them (stop now, the
    loss diverged) is then taken by all, and none waits forever for the others."""
    if world().size == 1:
        return values
    on_gpu = dist.get_backend() == "nccl"  # NCCL reduces CUDA tensors only
    reduced = torch.tensor(values, dtype=torch.float64,
                           device=torch.device("cuda", world().local_rank) if on_gpu else "cpu")
    dist.all_reduce(reduced, dist.ReduceOp.MAX if largest else dist.ReduceOp.SUM)
    return (reduced if largest else reduced / world().size).tolist()


def wait() -> None:
    """Hold every rank here until all arrive (e.g. until rank 0 has written a checkpoint)."""
    if world().size > 1:
        dist.barrier()


def rank_part(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a tensor drawn for the whole global batch (rows ``rank``,
    ``rank + size``, … as the sampler deals the batch's images): random numbers drawn once from
    the run's seed then match the images each rank holds, on any number of ranks."""
    return tensor[world().rank::world().size]
