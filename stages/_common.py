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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Machine-independent linear algebra in every stage (set before NumPy is imported): OpenBLAS
# picks its kernels by CPU and splits sums by thread count, which moved scikit-learn's fitted
# coefficients in their last bits from one machine to the next. One core type with AVX (what
# TensorFlow's wheel needs anyway) and one BLAS thread make them the same bits everywhere
# (docs: README "Same results on every machine"). What the user set is kept.
for _k, _v in (("OPENBLAS_CORETYPE", "Sandybridge"), ("OPENBLAS_NUM_THREADS", "1")):
    os.environ.setdefault(_k, _v)

# Use this checkout's package even if another copy of mgr is installed in the environment.
sys.path.insert(0, str(ROOT / "src"))


def peak_rss_mb() -> dict:
    """Peak resident memory (MiB) of this process and of its largest finished child."""
    from mgr.runs import peak_rss_mb as _peak

    return _peak()


def write_metrics(path: str | Path, report: dict, *, extra_facts: dict | None = None) -> dict:
    """Write the metrics file ``path`` (e.g. ``metrics/split.json``) with the results of ``report``
    only, and the run facts in it (durations, workers, memory; :data:`mgr.runs.RUN_KEYS`) plus
    ``extra_facts`` to ``reports/runs/<stem>.json``. ``report`` is not modified; returns the
    metrics written."""
    from mgr.io import write_json
    from mgr.runs import split_run_facts, write_run_facts

    quality, facts = split_run_facts(report)
    write_json(path, quality)
    write_run_facts(Path(path).stem, {**facts, **(extra_facts or {})})
    return quality


def finish_extraction(metrics: str | Path, report: dict, out: str) -> None:
    """Write the metrics file ``metrics`` (results and the output path; the duration, workers and
    peak RSS go to ``reports/runs/<stem>.json``) and warn about skipped tracks."""
    report["output"] = out
    write_metrics(metrics, report)
    for s in report["skipped"]:
        print(f"warning: skipped {s['track_id']}: {s['reason']}", file=sys.stderr)


def stage_args(ap: Any, *, out: str, metrics: str, tracks: bool = True, split: bool = True,
               validation: bool = True) -> Any:
    """The arguments every data stage shares (dvc.yaml's cmd names each path): ``--params``,
    ``--tracks`` (tracks.csv; default ``data/raw/<data.source>/tracks.csv``), ``--split``,
    ``--out``, ``--metrics`` and ``--validation-reports``; returns ``ap``."""
    ap.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    if tracks:
        ap.add_argument("--tracks", default=None, help="tracks.csv (default: data/raw/<data.source>/tracks.csv)")
    if split:
        ap.add_argument("--split", default="data/split.csv", help="split file (default: %(default)s)")
    ap.add_argument("--out", default=out, help="output (default: %(default)s)")
    ap.add_argument("--metrics", default=metrics, help="metrics file (default: %(default)s)")
    if validation:
        ap.add_argument("--validation-reports", default="reports/validation",
                        help="data-validation reports (default: %(default)s)")
    return ap


class Timer:
    """``with Timer() as t: ...``; then ``t.seconds`` (wall clock, 3 decimals)."""

    def __enter__(self) -> "Timer":
        import time

        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        import time

        self.seconds = round(time.perf_counter() - self._t0, 3)


def run(main: Callable[[], object]) -> None:
    os.chdir(ROOT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mgr.errors import run_reporting_user_errors

    run_reporting_user_errors(main)
