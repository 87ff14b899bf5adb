"""Dask distributed vs Ray as the engine of the sharded extraction: the costs that differ.

Usage: ``python benchmarks/engines.py [--workers 2] [--tasks 2000] [--json out.json]`` in an
environment holding ``distributed`` and/or ``ray`` (each engine found is measured; Ray is not a
dependency of this project, install it in a scratch environment to compare).

Per engine, on a local cluster of ``--workers`` single-threaded worker processes:

* ``start_s``: starting the cluster and connecting (``LocalCluster`` + ``Client`` /
  ``ray.init``), ``stop_s``: shutting it down;
* ``noop_task_ms``: wall time per task for ``--tasks`` no-op tasks submitted at once and gathered
  (scheduling + serialization + round trip: what a shard task pays on top of its work);
* ``shard_like_ms``: per task for 200 tasks each doing ~20 ms of NumPy work and returning a
  shard-sized result (256 x 128 float64 sums, as a spectrogram shard returns);
* ``import_s``: importing the client library in a fresh interpreter.

A shard of 128-256 tracks costs seconds of decode + DSP, so per-task overheads of a few ms are
noise either way; start-up and footprint decide for a one-machine user.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _noop(x):
    return x


def _shard_like(i):
    import numpy as np

    rng = np.random.default_rng(i)
    a = rng.standard_normal((400, 1024))
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.02:
        a = np.tanh(a)
    return {"shard": i, "sums": np.zeros((256, 128)), "sumsq": np.zeros((256, 128))}


def import_seconds(mod: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {mod}"], check=True)
    return round(time.perf_counter() - t0, 3)


def bench_dask(workers: int, tasks: int) -> dict:
    import logging

    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.ERROR)
    c = Client(cluster)
    start = time.perf_counter() - t0
    c.gather(c.map(_noop, range(50), pure=False))  # warm
    t0 = time.perf_counter()
    c.gather(c.map(_noop, range(tasks), pure=False))
    noop = (time.perf_counter() - t0) / tasks
    t0 = time.perf_counter()
    c.gather(c.map(_shard_like, range(200), pure=False))
    shard = (time.perf_counter() - t0) / 200
    t0 = time.perf_counter()
    c.close()
    cluster.close()
    return {"start_s": round(start, 3), "noop_task_ms": round(noop * 1e3, 3),
            "shard_like_ms": round(shard * 1e3, 2), "stop_s": round(time.perf_counter() - t0, 3),
            "import_s": import_seconds("distributed")}


def bench_ray(workers: int, tasks: int) -> dict:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    noop_r = ray.remote(num_cpus=1)(_noop)
    shard_r = ray.remote(num_cpus=1)(_shard_like)
    ray.get([noop_r.remote(i) for i in range(workers)])  # workers up
    start = time.perf_counter() - t0
    ray.get([noop_r.remote(i) for i in range(50)])
    t0 = time.perf_counter()
    ray.get([noop_r.remote(i) for i in range(tasks)])
    noop = (time.perf_counter() - t0) / tasks
    t0 = time.perf_counter()
    ray.get([shard_r.remote(i) for i in range(200)])
    shard = (time.perf_counter() - t0) / 200
    t0 = time.perf_counter()
    ray.shutdown()
    return {"start_s": round(start, 3), "noop_task_ms": round(noop * 1e3, 3),
            "shard_like_ms": round(shard * 1e3, 2), "stop_s": round(time.perf_counter() - t0, 3),
            "import_s": import_seconds("ray")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    res = {}
    for name, fn, mod in (("dask", bench_dask, "distributed"), ("ray", bench_ray, "ray")):
        try:
            __import__(mod)
        except ImportError:
            print(f"{name}: not installed, skipped")
            continue
        res[name] = fn(args.workers, args.tasks)
        print(name, json.dumps(res[name]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"workers": args.workers, "tasks": args.tasks, **res}, f, indent=1)


if __name__ == "__main__":
    main()
