"""Where shard tasks run: inline, a local Dask cluster, or a remote Dask scheduler.

:func:`map_tasks` runs ``fn(task)`` for every task and streams each result to ``on_result`` in
completion order (callers that need a fixed order sort by the shard index they put in the task).

- ``scheduler`` (``distributed.scheduler`` or the ``MGR_SCHEDULER`` environment variable, the
  latter winning): a ``tcp://host:port`` address -> the tasks go to that cluster's workers
  (which must see the same paths: a shared filesystem, see docs/SCALE.md).
- otherwise ``workers > 1`` -> a :class:`distributed.LocalCluster` of ``workers`` single-threaded
  processes on 127.0.0.1 (the same code path as a real cluster, on this machine's cores). Its
  worker processes die with this process (``PR_SET_PDEATHSIG``), its scratch space is a
  temporary directory removed on exit, its HTTP endpoints on a free loopback port.
- otherwise (``workers <= 1``) -> inline in this process, no Dask import at all.

A task that raises is retried (``retries`` times, possibly on another worker); shard writers are
idempotent (a complete shard with the same job key is kept), so a failed shard is recomputed
alone, and a rerun after a crash recomputes only the shards that are missing.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mgr.io import _set_pdeathsig

SCHEDULER_ENV = "MGR_SCHEDULER"

__all__ = ["SCHEDULER_ENV", "client", "map_tasks", "scheduler_address", "shard_dir", "shard_ranges",
           "worker_peak_rss_mb"]


def scheduler_address(configured: str | None = None) -> str | None:
    """The scheduler to use: ``$MGR_SCHEDULER`` if set (non-empty), else ``configured``, else None."""
    env = os.environ.get(SCHEDULER_ENV, "").strip()
    return env or (configured or None)


def _worker_setup() -> None:
    """Run in each local worker process: die with the parent (Linux), one BLAS thread."""

    _set_pdeathsig()
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # pragma: no cover - optional
        pass


@contextlib.contextmanager
def client(workers: int, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask ``Client``: connected to ``scheduler``, or to a local cluster of ``workers`` processes."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        c = Client(scheduler, timeout="30s")
        try:
            yield c
        finally:
            c.close()
        return
    scratch = tempfile.mkdtemp(prefix="mgr-dask-")
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(dask.config.set({"distributed.admin.tick.limit": "60s", "temporary-directory": scratch}))
            # the scheduler's HTTP endpoints (/health, /metrics) on a free loopback port, never 8787
            cluster = stack.enter_context(LocalCluster(
                n_workers=int(workers), threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", local_directory=scratch, silence_logs=logging.ERROR,
            ))
            c = stack.enter_context(Client(cluster))
            c.run(_worker_setup)
            yield c
    finally:
        # the scheduler's closing can still touch its work dir: remove now and again at exit
        shutil.rmtree(scratch, ignore_errors=True)
        atexit.register(shutil.rmtree, scratch, True)


def map_tasks(
    fn: Callable[[Any], Any],
    tasks: list,
    on_result: Callable[[Any], None],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    retries: int = 2,
) -> dict:
    """Run ``fn`` over ``tasks`` (inline / local cluster / remote scheduler, see the module doc).

    ``on_result`` gets each result as it completes. Returns run facts: ``engine``
    (``inline|local|remote``), ``workers`` (processes that ran tasks), ``worker_peak_rss_mb``
    (the largest worker's peak resident memory, MiB; this process's when inline).
    """
    scheduler = scheduler_address(scheduler)
    if not scheduler and workers <= 1:
        for t in tasks:
            on_result(fn(t))
        return {"engine": "inline", "workers": 1, "worker_peak_rss_mb": _peak_rss_mb()}
    from distributed import as_completed

    with client(workers, scheduler) as c:
        futures = c.map(fn, tasks, pure=False, retries=int(retries))
        try:
            for fut in as_completed(futures):
                on_result(fut.result())
                fut.release()
        except BaseException:
            c.cancel(futures)
            raise
        rss = worker_peak_rss_mb(c)
        return {"engine": "remote" if scheduler else "local", "workers": len(rss),
                "worker_peak_rss_mb": max(rss.values()) if rss else None}


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def worker_peak_rss_mb(c: Any) -> dict[str, float]:
    """Peak resident memory (MiB) of each worker process of client ``c``."""
    return {str(k): float(v) for k, v in c.run(_peak_rss_mb).items()}


# ------------------------------------------------------------------ shard layout (track ranges)
def shard_dir(out_path: str | os.PathLike) -> Path:
    """``data/spectrograms.h5`` -> ``data/spectrograms.shards/`` (beside the index)."""
    p = Path(out_path)
    return p.with_name(p.stem + ".shards")


def empty_shard_dir(out_path: str | os.PathLike) -> Path:
    """One-file mode: the shards folder beside ``out_path`` exists and is empty (stale shards of an
    earlier sharded run removed), so the stage's DVC outputs are the same in both modes."""
    d = shard_dir(out_path)
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        if f.is_file() or f.is_symlink():
            f.unlink()
        else:
            import shutil

            shutil.rmtree(f)
    return d


def shard_ranges(n: int, shard_tracks: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of ``shard_tracks`` consecutive items covering ``range(n)``."""
    if shard_tracks < 1:
        raise ValueError("shard_tracks must be >= 1")
    return [(s, min(s + shard_tracks, n)) for s in range(0, n, shard_tracks)]


def _job_key(kind: str, spec: dict, ids: list[str], paths: list[str]) -> str:
    h = hashlib.sha256(kind.encode() + b"\0" + json.dumps(spec, sort_keys=True).encode())
    for t, p in zip(ids, paths):
        h.update(f"{t}\0{p}\0".encode())
    return h.hexdigest()


def _atomic_write(final: Path, write: Any) -> None:
    """``write(tmp)`` then rename onto ``final`` (a killed worker leaves no half shard)."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
