"""evaluate stage: score every trained model on the test split with one protocol.

Usage (from dvc.yaml, which names every path): ``python stages/evaluate.py --split data/split.csv
--tracks-dir data/raw/<source> --features data/features.parquet --models models --train-metrics
metrics/train-ml --stores S ... --metrics metrics --reports reports``. For each model in ``ml.models`` +
``dl.models`` that has an artifact under ``models/<name>/`` it writes ``metrics/<name>.json``,
then ``metrics/summary.json``, ``metrics/tempo_baseline.json`` (when the dataset has tempo),
``reports/leaderboard.md``, ``reports/confusion/<name>.csv`` (DVC confusion plots),
``reports/predictions/<name>.csv`` (per-track predictions, for ``mgr compare``), ``reports/runs/evaluate.json``
(duration: a run fact, not a metric) and
``reports/figures/confusion_<name>.png``. The protocol is documented in :mod:`mgr.evaluation.scoring`
(:func:`mgr.evaluation.scoring.run_evaluate`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Timer, run  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    from mgr.evaluation.scoring import EvaluatePaths, run_evaluate
    from mgr.params import load_params
    from mgr.tempo.protocol import side_by_side

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    ap.add_argument("--root", default=".", help="project root holding data/, models/, metrics/ (default: %(default)s)")
    ap.add_argument("--split", default="data/split.csv", help="split.csv (default: %(default)s)")
    ap.add_argument("--tracks-dir", default=None,
                    help="dataset directory holding tracks.csv (default: data/raw/<data.source>)")
    ap.add_argument("--features", default="data/features.parquet", help="feature table (default: %(default)s)")
    ap.add_argument("--models", default="models", help="trained artifacts (default: %(default)s)")
    ap.add_argument("--train-metrics", default="metrics/train-ml",
                    help="train-ml metrics (per-fold test scores; default: %(default)s)")
    ap.add_argument("--stores", nargs="+", default=["data/spectrograms.h5", "data/spectrograms_musicnn.h5"],
                    help="spectrogram stores, one per front end; each deep model is scored on its own (default: %(default)s)")
    ap.add_argument("--metrics", default="metrics", help="metrics directory (default: %(default)s)")
    ap.add_argument("--reports", default="reports", help="reports directory (default: %(default)s)")
    args = ap.parse_args(argv)

    p = load_params(args.params)
    root = Path(args.root)
    paths = EvaluatePaths(
        split=root / args.split,
        tracks_dir=root / (args.tracks_dir or f"data/raw/{p.data.source}"),
        features=root / args.features,
        models=root / args.models,
        train_metrics=root / args.train_metrics,
        stores=tuple(root / s for s in args.stores),
        metrics=root / args.metrics,
        reports=root / args.reports,
    )
    with Timer() as t:
        summary = run_evaluate(p, paths, log=lambda s: print(s, flush=True),
                               tempo_hook=side_by_side)  # tempo estimators side by side (mgr.tempo)
    from mgr.io import n_workers
    from mgr.runs import write_run_facts

    # run facts, not metrics (metrics/ holds results only)
    write_run_facts("evaluate", {"seconds": t.seconds, "workers": n_workers(p.evaluate.workers)}, root=args.root)
    if not summary:
        print("evaluate: no trained model found; wrote an empty leaderboard")
    else:
        best = max(summary, key=lambda n: summary[n]["accuracy"] or 0.0)
        print(f"evaluate: {len(summary)} model(s); best {best} (accuracy {summary[best]['accuracy']:.3f})")


if __name__ == "__main__":
    run(main)
