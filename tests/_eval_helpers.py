"""The repository layout evaluate reads and writes, for tests that run it under a temporary root."""

from __future__ import annotations

from pathlib import Path

from mgr.evaluation.scoring import EvaluatePaths


def eval_paths(root: Path, source: str = "synthetic") -> EvaluatePaths:
    """What ``dvc.yaml``'s evaluate ``cmd`` passes, under ``root``."""
    root = Path(root)
    return EvaluatePaths(
        split=root / "data" / "split.csv",
        tracks_dir=root / "data" / "raw" / source,
        features=root / "data" / "features.parquet",
        models=root / "models",
        train_metrics=root / "metrics" / "train-ml",
        stores=(root / "data" / "spectrograms.h5", root / "data" / "spectrograms_musicnn.h5"),
        metrics=root / "metrics",
        reports=root / "reports",
    )
