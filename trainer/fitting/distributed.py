"""``intentd-train fit`` on several processes: ``torchrun`` or ``accelerate launch``.

Every process (rank) loads the same data and builds the same model; the HF ``Trainer`` then
runs data-parallel (DDP, gloo on CPU): each rank trains on its share of every batch and the
gradients are averaged, and evaluation gathers every rank's predictions, so metrics and the
best-checkpoint choice are the same on all ranks. What this module adds around it:

* the compact model's embeddings: each rank embeds every N-th utterance into the shared
  on-disk cache, all wait at a barrier, then every rank reads the whole set from the cache.
  The front-end is the costly part on big data sets (~26 ms per clip), so it scales out with
  the training; letting rank 0 embed everything while the others wait would leave them idle
  and could outlast the process group's 30-minute timeout on a large set. A rank that does not
  see the others' files (OUT not shared between machines) embeds the rest itself.
* threads: ``--threads`` is capped at this machine's cores divided by its processes, so
  N processes on N cores take one thread each instead of fighting over the cores.
* rank 0 alone deletes stale checkpoints before the others look, and writes the model dir.

Nothing here imports torch until a launch with several processes asks for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# What torchrun sets; MPI launchers (``accelerate launch --cpu --mpirun_hostfile``) set theirs.
_WORLD_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
_LOCAL_VARS = ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS")


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def env_rank() -> int:
    """This process's rank as the launcher says (0 when not launched with several)."""
    return _env_int(_RANK_VARS, 0)


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the launch; the default is a lone process."""

    rank: int = 0
    world: int = 1
    local_world: int = 1  # processes on this machine, which share its cores
    backend: str | None = None
    cpu: bool = False  # the launch trains on CPU (gloo); the Trainer must be told so

    @property
    def main(self) -> bool:
        return self.rank == 0


def start(use_cpu: bool) -> Ranks:
    """Join the launch's process group (when there are several processes) and return the ranks.

    Through accelerate's ``PartialState``, as the HF ``Trainer`` does later, so both agree on
    the backend (gloo on CPU, NCCL on GPUs) and the Trainer reuses this group.
    """
    world = _env_int(_WORLD_VARS, 1)
    if world <= 1:
        if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"):
            # accelerate's --cpu launcher starts a single process unless MPI is configured,
            # whatever --num_processes says; say so rather than train on one silently.
            log.warning("one process: `accelerate launch --cpu` starts one unless "
                        "--mpirun_hostfile is given; for several use `torchrun "
                        "--nproc_per_node N -m intentd.trainer fit ...`")
        return Ranks()
    import torch
    from accelerate import PartialState

    # Without cpu=True, accelerate (and so the Trainer) sees no GPU and falls back to one
    # process on a CPU-only machine: each rank would train the whole model alone.
    cpu = (use_cpu or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
           or not torch.accelerator.is_available())
    state = PartialState(cpu=cpu)
    ranks = Ranks(rank=state.process_index, world=state.num_processes,
                  local_world=_env_int(_LOCAL_VARS, state.num_processes),
                  backend=state.backend, cpu=cpu)
    if not ranks.main:
        # One progress log for the launch: rank 0's. Warnings and errors still come through.
        logging.getLogger("intentd").setLevel(logging.WARNING)
    return ranks


def finish(ranks: Ranks) -> None:
    """Leave the process group (a no-op for a lone process)."""
    if ranks.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        import torch.distributed as dist

        dist.barrier()


@contextmanager
def main_first(ranks: Ranks) -> Iterator[None]:
    """Run the block on rank 0, then on the others: what rank 0 changes on disk (stale
    checkpoints removed) is done before they look. If rank 0 fails here it exits, and the
    launcher stops the ranks waiting at the barrier."""
    if not ranks.main:
        barrier(ranks)
    yield
    if ranks.main:
        barrier(ranks)


def threads(requested: int, ranks: Ranks) -> int:
    """``requested`` threads, capped at this machine's cores divided among its processes."""
    if ranks.local_world <= 1:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(requested, (cores or 1) // ranks.local_world))


def sharded(embed: Callable[..., Any], ranks: Ranks) -> Callable[..., Any]:
    """``embed`` (:func:`intentd.trainer.fitting.features.embed_examples`) with the front-end's
    work split over the ranks through its on-disk cache; see the module docstring."""
    if ranks.world <= 1:
        return embed

    def run(examples: list[Any], *args: Any, **kwargs: Any) -> Any:
        embed(examples[ranks.rank::ranks.world], *args, **kwargs)  # fills the cache
        barrier(ranks)
        return embed(examples, *args, **kwargs)  # every rank, every example: cache reads

    return run


def describe(ranks: Ranks, torch_threads: int, workers: int) -> str:
    return (f"world size {ranks.world} ({ranks.backend}), {ranks.local_world} process(es) on "
            f"this machine, {torch_threads} torch thread(s) and {workers} embedding "
            "worker(s) each; rank 0 writes the model dir")
