"""Where and how the trainer computes: device choice (`resolve_device`), bf16 autocast (`autocast_context`), the
per-run device settings (channels_last, deterministic algorithms or cuDNN autotune, TF32; `training_device` restores
the deterministic flag afterwards), and multi-process training under `torchrun` (`Dist`, `init_distributed`,
`model_for_step`: DistributedDataParallel with NCCL on GPUs, gloo on CPU; optional torch.compile).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import torch

if TYPE_CHECKING:
    from musecl.encoders.config import TrainConfig


def resolve_device(device: str = "auto") -> torch.device:
    """`auto`: CUDA when available, else CPU; an explicit CUDA device without CUDA is an error, not a silent CPU run."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but CUDA is not available (use device: auto or cpu)")
    return resolved


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for `precision` bf16 (or auto on CUDA); otherwise a no-op context (fp32)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Dist:
    """This process's place in a (possibly single-process) run: rank, world size, local rank."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # we initialised the process group, so we tear it down

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: list[float], device: torch.device) -> list[float]:
        if self.world == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def init_distributed(device_pref: str) -> Dist:
    """Join the process group torchrun describes (WORLD_SIZE > 1) or an already initialised one; else one process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    cuda = torch.cuda.is_available() and device_pref != "cpu"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)


def close_distributed(dctx: Dist) -> None:
    """Tear down the process group when `init_distributed` created it."""
    if dctx.owned:
        import torch.distributed as dist

        dist.destroy_process_group()


@contextlib.contextmanager
def training_device(config: TrainConfig, dctx: Dist) -> Iterator[tuple[torch.device, bool]]:
    """(device, channels_last) of this process, with deterministic algorithms (or cuDNN autotune) set as configured
    for the duration of the block; the previous deterministic setting is restored afterwards."""
    device = resolve_device(config.device)
    if device.type == "cuda" and dctx.world > 1:
        device = torch.device("cuda", dctx.local_rank)
        torch.cuda.set_device(device)
    channels_last = config.channels_last == "yes" or (config.channels_last == "auto" and device.type == "cuda")
    deterministic = config.deterministic == "yes" or (config.deterministic == "auto" and device.type == "cpu")
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        yield device, channels_last
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)


def model_for_step(model: torch.nn.Module, config: TrainConfig, dctx: Dist, device: torch.device) -> torch.nn.Module:
    """The module the training steps call: `model`, compiled when configured, wrapped in DDP when world > 1."""
    wrapped: torch.nn.Module = torch.compile(model) if config.compile else model
    if dctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        unused = config.model.projection_dim > 0 and config.loss.kind != "ntxent"
        wrapped = DistributedDataParallel(
            wrapped, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
        )
    return wrapped
