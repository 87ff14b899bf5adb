"""Shared start-up for the stage scripts: run from the project root, one-line user errors.

Each stage script is thin: it reads params through :func:`mgr.params.load_params`, calls
into ``src/mgr`` and writes its outputs. :func:`run` turns a :class:`mgr.errors.UserError`
into a single ``error: ...`` line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Use this checkout's package even if another copy of mgr is installed in the environment.
sys.path.insert(0, str(ROOT / "src"))


def peak_rss_mb() -> dict:
    """Peak resident memory (MiB) of this process and of its largest finished child."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"main": round(me, 1), "max_worker": round(kids, 1)}


def finish_extraction(name: str, report: dict, out: str) -> None:
    """Write ``metrics/<name>.json`` (with peak RSS and the output path) and warn about skipped tracks."""
    from mgr.utils import write_json

    report["peak_rss_mb"] = peak_rss_mb()
    report["output"] = out
    write_json(f"metrics/{name}.json", report)
    for s in report["skipped"]:
        print(f"warning: skipped {s['track_id']}: {s['reason']}", file=sys.stderr)


def run(main: Callable[[], object]) -> None:
    os.chdir(ROOT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mgr.errors import run_reporting_user_errors

    run_reporting_user_errors(main)
