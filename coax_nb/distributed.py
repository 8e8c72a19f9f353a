"""Fan a CoAx scan out over several workers with ``torch.distributed``.

Variants are independent, so each worker holds a model replica and scores a shard of the
heads (round-robin by flat id); the per-head results are gathered and every worker ends
with the same :class:`UnitScores` a single process computes.

Why torch.distributed: it ships with torch (no extra service), ``torchrun`` launches it
on one machine or many, NCCL serves GPUs and gloo serves CPUs — which is how the test
suite checks it here. Ray would add a cluster service for no gain on a workload that is
one static shard per worker.

On a cluster::

    torchrun --nproc-per-node 8 my_scan.py        # inside: scan_distributed(engine, primaries)

Locally (or in a test), :func:`run_local` spawns the processes itself.
"""
from __future__ import annotations

import os
import socket
import tempfile
import numpy as np
import torch
import torch.distributed as dist

from .compat import renamed
from .results import UnitScores
from .scores import coax_scan
from .units import all_units

SHARDED_COLUMNS = ("single", "conditional", "comp", "coupling", "ratio")


def shard(units, rank: int, world: int) -> list:
    """Round-robin shard of a head list."""
    return [u for i, u in enumerate(units) if i % world == rank]


@renamed(seed="primaries")
def scan_distributed(engine, primaries, **scan_kwargs) -> UnitScores:
    """A CoAx scan split over the initialised process group; every rank returns the
    combined result. Heads that are not the rank's own come back NaN from its shard and
    are filled from the rank that scored them."""
    if not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialised: launch with torchrun, or use run_local()")
    rank, world = dist.get_rank(), dist.get_world_size()
    units = all_units(engine.n_layers, engine.n_heads)
    mine = shard(units, rank, world)
    part = coax_scan(engine, primaries=primaries, heads=mine, progress=False, **scan_kwargs)
    parts = [None] * world
    dist.all_gather_object(parts, {k: part.scores[k] for k in SHARDED_COLUMNS} | {"meta": part.meta})
    H = engine.n_heads
    scores = dict(part.scores)
    for k in SHARDED_COLUMNS:
        col = np.full(len(units), np.nan)
        for r, p in enumerate(parts):
            ids = [u.flat(H) for u in shard(units, r, world)]
            col[ids] = p[k][ids]
        scores[k] = col
    meta = dict(part.meta, world_size=world,
                forward_passes=sum(p["meta"]["forward_passes"] for p in parts),
                wall_seconds=max(p["meta"]["wall_seconds"] for p in parts))
    return UnitScores(part.n_layers, part.n_heads, part.primaries, scores, meta)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, model_spec: str, task, primaries, scan_kwargs: dict, out: str,
            threads: int):
    from .engine import Engine
    from .models import load_model

    torch.set_num_threads(threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        engine = Engine(load_model(model_spec, device="cpu"), task, progress=False)
        result = scan_distributed(engine, primaries, **scan_kwargs)
        if rank == 0:
            result.to_json(out)
    finally:
        dist.destroy_process_group()


@renamed(seed="primaries")
def run_local(model_spec: str, task, primaries, world_size: int = 2, threads_per_worker: int = 1,
              **scan_kwargs) -> UnitScores:
    """Spawn ``world_size`` CPU workers (gloo on 127.0.0.1), each loading ``model_spec``
    (an organism or a local directory) and scoring its shard of ``task``; returns the
    combined scores."""
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError("world_size must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "scores.json")
        mp.spawn(_worker, args=(world_size, _free_port(), str(model_spec), task, primaries, scan_kwargs, out,
                                threads_per_worker), nprocs=world_size, join=True)
        return UnitScores.from_json(out)
