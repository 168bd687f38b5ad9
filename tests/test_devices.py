"""Device assignment with a simulated device list: CI has no GPU, so the logic is tested on its own."""

from __future__ import annotations

import pytest

from experiments.sweeps.devices import Allocation, DevicePool


def test_cpu_workers_share_the_cores_without_oversubscribing() -> None:
    pool = DevicePool(workers=2, cpu_count=2)
    first, second = pool.acquire(1), pool.acquire(1)
    assert first == second == Allocation((), 1, 1)
    assert pool.acquire(1) is None
    pool.release(first)
    assert pool.acquire(1) is not None
    assert DevicePool(workers=3, cpu_count=16).threads_per_process() == 5
    assert first.environment() == {
        "OMP_NUM_THREADS": "1",
        "LITBENCH_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }


def test_cpu_ddp_run_takes_as_many_slots_as_processes() -> None:
    pool = DevicePool(workers=4, cpu_count=8)
    ddp = pool.acquire(2)
    assert ddp.units == 2 and ddp.threads == 2
    assert pool.acquire(3) is None and pool.acquire(2) is not None
    with pytest.raises(ValueError, match="asks for 5 devices but there are 4"):
        pool.acquire(5)


def test_one_run_per_gpu_by_default_spread_over_devices() -> None:
    pool = DevicePool(workers=1, gpus=[0, 1, 2], cpu_count=12)
    got = [pool.acquire(1) for _ in range(3)]
    assert [a.gpus for a in got] == [(0,), (1,), (2,)]
    assert all(a.threads == 4 for a in got)
    assert pool.acquire(1) is None
    pool.release(got[1])
    assert pool.acquire(1).gpus == (1,)
    assert got[0].environment()["CUDA_VISIBLE_DEVICES"] == "0"


def test_runs_per_gpu_packs_small_runs() -> None:
    pool = DevicePool(workers=1, gpus=[3, 5], runs_per_gpu=2, cpu_count=8)
    got = [pool.acquire(1).gpus for _ in range(4)]
    assert sorted(got) == [(3,), (3,), (5,), (5,)]
    assert pool.acquire(1) is None


def test_multi_gpu_run_gets_idle_devices_exclusively() -> None:
    pool = DevicePool(workers=1, gpus=[0, 1, 2, 3], runs_per_gpu=2, cpu_count=8)
    small = pool.acquire(1)  # lands on GPU 0
    ddp = pool.acquire(2)
    assert ddp.gpus == (1, 2)
    assert ddp.environment()["CUDA_VISIBLE_DEVICES"] == "1,2"
    # nothing is packed beside the DDP run; GPU 0 still has a free slot, GPU 3 two
    assert sorted(pool.acquire(1).gpus for _ in range(3)) == [(0,), (3,), (3,)]
    assert pool.acquire(1) is None
    assert pool.acquire(2) is None  # no two idle GPUs left
    pool.release(ddp)
    assert pool.acquire(2).gpus == (1, 2)
    pool.release(small)


def test_invalid_pool_settings() -> None:
    with pytest.raises(ValueError, match="--workers"):
        DevicePool(workers=0)
    with pytest.raises(ValueError, match="--runs-per-gpu"):
        DevicePool(workers=1, gpus=[0], runs_per_gpu=0)


def test_cpu_runs_beside_gpus_take_worker_slots() -> None:
    pool = DevicePool(workers=2, gpus=[0], cpu_count=4)
    cpu_run = pool.acquire(1, gpu=False)
    assert cpu_run.gpus == () and cpu_run.environment()["CUDA_VISIBLE_DEVICES"] == ""
    assert pool.acquire(1).gpus == (0,)  # the GPU is still free for a GPU run
    assert pool.acquire(1, gpu=False) is not None and pool.acquire(1, gpu=False) is None
