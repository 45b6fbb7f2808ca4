"""Two gloo processes on CPU, each with a shard, must find what one process finds on all data."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bottlenecks.cluster import KMeans, kmeans

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


def data():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4, size=(10, 6))
    x = centers[rng.integers(0, 10, 2001)] + rng.normal(size=(2001, 6))
    return torch.from_numpy(x.astype(np.float32))


def worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x = data()
        shard = torch.tensor_split(x, world)[rank]  # unequal shard sizes on purpose (2001 rows)
        res = kmeans(shard, 10, seed=5, max_iter=50, distributed=True)
        est = KMeans(10, random_state=5, max_iter=50, distributed=True).fit(shard.numpy())
        torch.save({"centroids": res.centroids, "inertia": res.inertia, "n_iter": res.n_iter,
                    "labels": res.labels, "est_centers": torch.from_numpy(est.cluster_centers_)},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one_process(tmp_path, free_port):
    world = 2
    mp.start_processes(worker, args=(world, free_port, str(tmp_path)), nprocs=world, join=True,
                       start_method="spawn")
    single = kmeans(data(), 10, seed=5, max_iter=50)
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    for p in parts:
        torch.testing.assert_close(p["centroids"], single.centroids, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(p["est_centers"], single.centroids, rtol=1e-6, atol=1e-6)
        assert p["n_iter"] == single.n_iter
        assert abs(p["inertia"] - single.inertia) <= 1e-9 * single.inertia
    assert torch.equal(torch.cat([p["labels"] for p in parts]), single.labels)


def test_distributed_without_process_group_is_a_clear_error():
    with pytest.raises(RuntimeError, match="init_process_group"):
        kmeans(data(), 3, distributed=True)
