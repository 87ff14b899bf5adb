"""A tiny trained gtzan57 classical model and the tones it tells apart, for predict tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SR = 22050


def tone(seconds: float, f0: float, bpm: float) -> np.ndarray:
    """A sine at ``f0`` Hz, louder for 30 ms on every beat at ``bpm`` (float32, 22.05 kHz)."""
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * f0 * t) * (0.3 + (np.mod(t, 60 / bpm) < 0.03))).astype(np.float32)


def tiny_gtzan57_logreg(out_dir: Path) -> Path:
    """A logreg on gtzan57 features of six 2.5 s tones ("low": 150-190 Hz at 90 BPM, "high":
    900-940 Hz at 140 BPM), saved as a classical artifact in ``out_dir``; returns ``out_dir``."""
    import pandas as pd

    from mgr.features.tables import extract_features
    from mgr.models import classical, classical_artifact
    from mgr.params import MlParams

    rows = []
    for g, (f0, bpm) in {"low": (150.0, 90.0), "high": (900.0, 140.0)}.items():
        for i in range(3):
            rows.append({"track_id": f"{g}{i}", "split": "train", "genre": g,
                         **extract_features(tone(2.5, f0 + 20 * i, bpm), SR, "gtzan57")})
    o = classical.train("logreg", pd.DataFrame(rows), MlParams(), feature_set="gtzan57")
    classical_artifact.save(o.model, Path(out_dir), o.card)
    return Path(out_dir)
