"""Regenerate the tiny deep artifacts used by tests/test_predict.py and tests/test_cli.py.

Run: ``uv run python tests/data/predict/make_fixtures.py`` (needs Keras; the tests themselves do
not). Two untrained-but-deterministic models on a small front end (22.05 kHz, n_fft 1024, hop
512, 32 mels, 44-frame ~1 s windows): ``tiny_tempo`` (tempo_genre: genre + tempo + tags heads)
and ``tiny_cnn`` (cnn2d: genre only, so predict falls back to the DSP tempo). The cards follow
``mgr.models.training.make_card``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
LABELS = ["blues", "classical", "rock"]
TAGS = ["calm", "drums", "loud"]
WINDOW_FRAMES = 44


def frontend() -> dict:
    from mgr.features.store import frontend_config
    from mgr.params import AudioParams, SpectrogramParams

    return frontend_config(AudioParams(sample_rate=22050), SpectrogramParams(n_fft=1024, hop_length=512, n_mels=32))


def make(out: Path, name: str, arch: str, *, tempo: bool, tags: bool, seed: int = 0) -> Path:
    import keras

    from mgr.io import library_versions
    from mgr.models import deep
    from mgr.models.training import save_artifact
    from mgr.params import DlModelParams

    keras.utils.set_random_seed(seed)
    fe = frontend()
    rng = np.random.default_rng(seed)
    mean = rng.normal(-40, 5, 32)
    std = rng.uniform(8, 15, 32)
    bins = deep.tempo_bins("10bpm", 30.0, 300.0) if tempo else None
    shape = (32, WINDOW_FRAMES, 1)
    model = deep.build(arch, shape, len(LABELS), n_tempo_classes=len(bins["centres"]) if bins else 0,
                       n_tags=len(TAGS) if tags else 0, params=DlModelParams(width=0.125, dropout=0.1),
                       mean=mean, std=std)
    outputs = sorted(["genre"] + (["tempo"] if tempo else []) + (["tags"] if tags else []))
    card = {
        "name": name, "kind": "deep", "labels": LABELS, "created": "2026-01-01T00:00:00+00:00",
        "versions": library_versions("keras", "numpy"), "params": {"model": {"arch": arch}},
        "train_data_hash": None, "val_metrics": {},
        "frontend": fe, "audio": {"sample_rate": 22050, "duration_s": None, "offset_s": 0.0, "pad": True},
        "window_s": WINDOW_FRAMES * fe["hop"] / fe["sr"], "window_frames": WINDOW_FRAMES,
        "input_shape": list(shape),
        "normalisation": {"where": "inside the model", "mean": mean.tolist(), "std": std.tolist()},
        "tempo_bins": bins, "tag_vocab": TAGS if tags else [], "outputs": outputs, "model_file": "model.keras",
    }
    return save_artifact(model, card, out / name)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    make(out, "tiny_tempo", "tempo_genre", tempo=True, tags=True)
    make(out, "tiny_cnn", "cnn2d", tempo=False, tags=False)
    print("wrote", sorted(p.name for p in out.iterdir()))
