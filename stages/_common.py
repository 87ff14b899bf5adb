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

#: glibc's hardware capabilities every stage runs without. glibc's libm picks exp, log, pow,
#: sin, cos ... variants by CPU (FMA/AVX2, FMA4 on old AMD) and the variants differ in the last
#: bit (measured: 10 of 11 functions on 300k arguments). scikit-learn's losses, libsvm's RBF kernel
#: and SciPy call them, so a logistic regression's fit moved (1e-11 in an inner-CV NLL) between a
#: machine with FMA and one without. Without these, every x86-64 CPU runs the same baseline
#: variants. The names before glibc 2.33 carry "_Usable"; glibc ignores the names it does not know.
LIBM_BASELINE = ("-AVX2_Usable", "-FMA_Usable", "-FMA4_Usable", "-AVX2", "-FMA", "-FMA4")

#: NumPy's baseline feature group per machine type (the ``NPY_ENABLE_CPU_FEATURES`` value that
#: turns every dispatched SIMD target off). NumPy's ``exp``/``log``/... loops differ in the last bit
#: between targets (AVX-512, AVX2, baseline), and scikit-learn calls them where the project cannot
#: replace them (e.g. the SVM's temperature fit moved by 5e-9 between AVX-512 and baseline).
NUMPY_BASELINE = {"x86_64": "X86_V2", "amd64": "X86_V2", "aarch64": "ASIMD", "arm64": "ASIMD"}


def _libm_tunables(current: str) -> str | None:
    """``GLIBC_TUNABLES`` with :data:`LIBM_BASELINE` in its ``glibc.cpu.hwcaps`` list (what the
    user set is kept), or ``None`` when it already has them."""
    items = [t for t in current.split(":") if t]
    caps = next((i for i, t in enumerate(items) if t.startswith("glibc.cpu.hwcaps=")), None)
    have = items[caps].split("=", 1)[1].split(",") if caps is not None else []
    missing = [c for c in LIBM_BASELINE if c not in have]
    if not missing:
        return None
    value = "glibc.cpu.hwcaps=" + ",".join([h for h in have if h] + missing)
    if caps is None:
        items.append(value)
    else:
        items[caps] = value
    return ":".join(items)


def machine_pins(env: dict[str, str], machine: str, libc: str) -> dict[str, str | None]:
    """The environment changes (``None``: unset) that make this machine compute like every
    other: glibc's libm without its FMA/AVX2 variants (glibc only) and NumPy's baseline loops
    only (:data:`NUMPY_BASELINE`; a ``NPY_DISABLE_CPU_FEATURES`` the user set is dropped: it cannot
    be combined with the enable list and disables a subset of it). Empty when already pinned."""
    out: dict[str, str | None] = {}
    if libc.startswith("glibc"):
        tunables = _libm_tunables(env.get("GLIBC_TUNABLES", ""))
        if tunables is not None:
            out["GLIBC_TUNABLES"] = tunables
    base = NUMPY_BASELINE.get(machine.lower())
    if base is not None:
        if env.get("NPY_ENABLE_CPU_FEATURES") != base:
            out["NPY_ENABLE_CPU_FEATURES"] = base
        if "NPY_DISABLE_CPU_FEATURES" in env:
            out["NPY_DISABLE_CPU_FEATURES"] = None
    return out


def _pin_machine() -> None:
    """Re-execute this stage script under :func:`machine_pins` (glibc and NumPy read them only at
    start-up). ``MGR_NO_MACHINE_PIN=1`` skips it (results may then differ in the last bits from a
    run on another machine)."""
    import platform

    if os.environ.get("MGR_NO_MACHINE_PIN") == "1" or not getattr(sys, "orig_argv", None):
        return
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):  # not glibc, not POSIX
        libc = ""
    pins = machine_pins(dict(os.environ), platform.machine(), libc)
    if not pins:
        return
    for k, v in pins.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


# only when a stage script is the program (not when a test imports this module)
if sys.argv and Path(sys.argv[0]).resolve().parent == ROOT / "stages":
    _pin_machine()

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
