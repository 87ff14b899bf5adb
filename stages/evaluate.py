"""evaluate stage: score every trained model on the test split with one protocol.

Usage: ``python stages/evaluate.py [--stores S ...]`` (from dvc.yaml). For each model in ``ml.models`` +
``dl.models`` that has an artifact under ``models/<name>/`` it writes ``metrics/<name>.json``,
then ``metrics/summary.json``, ``metrics/tempo_baseline.json`` (when the dataset has tempo),
``reports/leaderboard.md``, ``reports/confusion/<name>.csv`` (DVC confusion plots),
``reports/predictions/<name>.csv`` (per-track predictions, for ``mgr compare``), ``reports/runs/evaluate.json``
(duration: a run fact, not a metric) and
``reports/figures/confusion_<name>.png``. The protocol is documented in :mod:`mgr.evaluation`
(:func:`mgr.evaluation.run_evaluate`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Timer, run  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    from mgr.evaluation import run_evaluate
    from mgr.params import load_params
    from mgr.tempo.protocol import side_by_side

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    ap.add_argument("--root", default=".", help="project root holding data/, models/, metrics/ (default: %(default)s)")
    ap.add_argument("--stores", nargs="+", default=["data/spectrograms.h5", "data/spectrograms_musicnn.h5"],
                    help="spectrogram stores, one per front end; each deep model is scored on its own (default: %(default)s)")
    args = ap.parse_args(argv)

    p = load_params(args.params)
    with Timer() as t:
        summary = run_evaluate(p, root=args.root, log=lambda s: print(s, flush=True), stores=args.stores,
                               tempo_hook=side_by_side)  # tempo estimators side by side (mgr.tempo)
    from mgr.runs import write_run_facts
    from mgr.utils import n_workers

    # run facts, not metrics (metrics/ holds results only)
    write_run_facts("evaluate", {"seconds": t.seconds, "workers": n_workers(p.evaluate.workers)}, root=args.root)
    if not summary:
        print("evaluate: no trained model found; wrote an empty leaderboard")
    else:
        best = max(summary, key=lambda n: summary[n]["accuracy"] or 0.0)
        print(f"evaluate: {len(summary)} model(s); best {best} (accuracy {summary[best]['accuracy']:.3f})")


if __name__ == "__main__":
    run(main)
