"""Which worker gets which CPU threads and GPUs.

On CPU, ``workers`` slots are shared out; a run that asks for ``devices: k`` (DDP over k processes)
takes k slots, and each process gets ``cores // workers`` threads so the workers never oversubscribe
the machine. On GPUs, each device holds ``runs_per_gpu`` runs at once; a run that asks for k > 1
devices gets k whole, otherwise idle GPUs for itself. A run sees only its devices, through
``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Allocation:
    gpus: tuple[int, ...]  # physical GPU ids; empty on CPU
    units: int  # CPU slots held (CPU runs) or GPU slots held (GPU runs)
    threads: int  # torch threads for each of the run's processes

    def environment(self) -> dict[str, str]:
        """The variables a run's process is started with."""
        env = {"OMP_NUM_THREADS": str(self.threads), "LITBENCH_NUM_THREADS": str(self.threads)}
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))  # "" hides every GPU from CPU runs
        return env


@dataclass
class DevicePool:
    """A non-blocking allocator; the scheduler asks again when a run ends."""

    workers: int
    gpus: Sequence[int] = ()
    runs_per_gpu: int = 1
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    _free_cpu: int = field(init=False)
    _gpu_load: dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.runs_per_gpu < 1:
            raise ValueError(f"--runs-per-gpu must be at least 1, got {self.runs_per_gpu}")
        self._free_cpu = self.workers
        self._gpu_load = {gpu: 0 for gpu in self.gpus}

    @property
    def uses_gpus(self) -> bool:
        return bool(self.gpus)

    def threads_per_process(self) -> int:
        concurrent = len(self.gpus) * self.runs_per_gpu if self.gpus else self.workers
        return max(1, self.cpu_count // concurrent)

    def acquire(self, devices: int, gpu: bool = True) -> Allocation | None:
        """An allocation for a run over ``devices`` devices, or None until enough are free.

        ``gpu=False`` (a run with ``accelerator: cpu``) takes worker slots even where GPUs exist.
        """
        on_gpu = gpu and bool(self.gpus)
        capacity = len(self.gpus) if on_gpu else self.workers
        if devices < 1 or devices > capacity:
            kind = "GPUs" if on_gpu else "worker slots (--workers)"
            raise ValueError(f"a run asks for {devices} devices but there are {capacity} {kind}")
        if not on_gpu:
            if self._free_cpu < devices:
                return None
            self._free_cpu -= devices
            return Allocation((), devices, self.threads_per_process())
        if devices == 1:
            gpu = min(self._gpu_load, key=lambda g: (self._gpu_load[g], g))
            if self._gpu_load[gpu] >= self.runs_per_gpu:
                return None
            self._gpu_load[gpu] += 1
            return Allocation((gpu,), 1, self.threads_per_process())
        idle = [g for g in sorted(self._gpu_load) if self._gpu_load[g] == 0]
        if len(idle) < devices:
            return None
        chosen = tuple(idle[:devices])
        for gpu in chosen:
            self._gpu_load[gpu] = self.runs_per_gpu  # exclusive: nothing else is packed beside a DDP run
        return Allocation(chosen, self.runs_per_gpu * devices, self.threads_per_process())

    def release(self, allocation: Allocation) -> None:
        if not allocation.gpus:
            self._free_cpu += allocation.units
            return
        if len(allocation.gpus) == 1:
            self._gpu_load[allocation.gpus[0]] -= 1
            return
        for gpu in allocation.gpus:
            self._gpu_load[gpu] = 0


def visible_gpus() -> list[int]:
    """The GPU ids this process may hand out: CUDA_VISIBLE_DEVICES' entries, else every device."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [int(x) for x in listed.split(",") if x.strip().isdigit()]
    return list(range(torch.cuda.device_count()))
