"""Two gloo processes on CPU: each encodes its own contiguous shard, and both get every row in
order, as one process would; the cache agrees on hits and rank 0 writes the file."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bottlenecks.encoders import FeatureCache, PixelEncoder

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


class CountingPixels(PixelEncoder):
    def __init__(self):
        super().__init__()
        self.rows = 0

    def _encode_batch(self, batch):
        self.rows += len(batch)
        return super()._encode_batch(batch)


def images(n=7):
    return torch.arange(n * 9, dtype=torch.float32).reshape(n, 3, 3)


def worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        enc = CountingPixels()
        full = enc.encode(images(), batch_size=2, progress=False)  # shards of 4 and 3 rows
        rows_full = enc.rows
        tiny = enc.encode(images(1), progress=False)  # rank 1 has no row at all
        enc.rows = 0
        alone = enc.encode(images(), distributed=False, progress=False)
        rows_alone = enc.rows

        cache = FeatureCache(os.path.join(out_dir, "cache"))
        enc.rows = 0
        first = cache.get_or_compute(enc, images(), "toy", "train", progress=False)
        rows_first = enc.rows
        second = cache.get_or_compute(enc, images(), "toy", "train", progress=False)
        rows_second = enc.rows - rows_first
        torch.save({"full": full, "tiny": tiny, "alone": alone, "first": first, "second": second,
                    "rows": torch.tensor([rows_full, rows_alone, rows_first, rows_second])},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_shard_and_gather_in_order(tmp_path, free_port):
    world = 2
    mp.start_processes(worker, args=(world, free_port, str(tmp_path)), nprocs=world, join=True,
                       start_method="spawn")
    want = images().reshape(7, 9)
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    for rank, p in enumerate(parts):
        for k in ("full", "alone", "first", "second"):
            torch.testing.assert_close(p[k], want, rtol=0, atol=0)
        torch.testing.assert_close(p["tiny"], images(1).reshape(1, 9), rtol=0, atol=0)
        rows_full, rows_alone, rows_first, rows_second = p["rows"].tolist()
        assert rows_full == (4, 3)[rank]  # its own contiguous shard only
        assert rows_alone == 7  # distributed=False: the whole input
        assert rows_first == (4, 3)[rank] and rows_second == 0  # miss, then a hit on both ranks
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    assert not list((tmp_path / "cache").glob("*.tmp"))
