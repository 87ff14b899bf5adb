"""Run facts: what a stage run cost and where it ran, kept apart from the metrics.

``metrics/**.json`` hold model and data quality only, so that ``dvc metrics diff`` between two
commits (or after ``dvc repro --force``) shows a change only when a result changed. Durations,
peak memory, worker counts, library versions and the host go to ``reports/runs/<stage>.json``
instead: git-ignored, not a DVC output, rewritten by every run (read them for profiling).

:func:`split_run_facts` separates the two (recursively, e.g. per fold), :func:`write_run_facts`
writes the run file with the host facts added. No heavy imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mgr.io import write_json

RUNS_DIR = Path("reports") / "runs"
# keys (at any depth) that describe a run, not a result
RUN_KEYS = frozenset({
    "seconds", "train_seconds", "seconds_per_epoch", "peak_rss_mb", "workers", "threads", "versions",
    "host", "created", "started", "finished",
})


def split_run_facts(d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(quality, facts)``: ``d`` without the :data:`RUN_KEYS` (at any depth), and those keys
    with their nesting kept (empty sub-dicts left out). ``d`` is not modified."""
    quality: dict[str, Any] = {}
    facts: dict[str, Any] = {}
    for k, v in d.items():
        if k in RUN_KEYS:
            facts[k] = v
        elif isinstance(v, dict):
            q, f = split_run_facts(v)
            quality[k] = q
            if f:
                facts[k] = f
        else:
            quality[k] = v
    return quality, facts


def host_facts() -> dict[str, Any]:
    """Python, platform and CPU count of this machine."""
    import os
    import platform

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory (MiB) of this process and of its largest finished child."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"main": round(me, 1), "max_worker": round(kids, 1)}


def write_run_facts(stage: str, facts: dict[str, Any], root: str | Path = ".") -> Path:
    """Write ``reports/runs/<stage>.json`` (``stage`` may hold a ``/``, e.g. ``train-dl/cnn2d``)
    with the host facts and the peak memory added. Never raises for an unwritable folder: run
    facts are informative only."""

    path = Path(root) / RUNS_DIR / f"{stage}.json"
    out = {"stage": stage, "host": host_facts(), "peak_rss_mb": peak_rss_mb(), **facts}
    try:
        write_json(path, out)
    except OSError:
        pass
    return path
