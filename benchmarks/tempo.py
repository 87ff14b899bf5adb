"""Cost per 30 s clip of the learned tempo estimator (models/tempo) against the DSP estimate.

Run: uv run python benchmarks/tempo.py [--model-dir models/tempo] [--clips 10] [--repeat 3]
Both start from the decoded audio of synthetic 30 s clips. DSP = ``mgr.dsp.kernels.tempo``
(``librosa.feature.tempo`` in NumPy: STFT, mel, onset envelope, autocorrelation tempogram).
Learned = what ``mgr predict --tempo learned`` runs: the same STFT/mel, six onset envelopes, the
tempo evidence and one ONNX call (one thread). Without a trained model (``dvc repro train-tempo``)
only the feature part is timed. Times are medians over ``--repeat`` passes, per clip.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default="models/tempo")
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    from mgr.dsp import kernels as fastdsp
    from mgr.tempo import features as F
    from mgr.tempo.dataset import render_item
    from mgr.tempo.estimate import CARD_FILE, LearnedTempo

    sr = 22050
    clips = [render_item(0, "heldout", "jazz", i, 30.0, sr)[0] for i in range(a.clips)]
    learned = LearnedTempo(a.model_dir) if (Path(a.model_dir) / CARD_FILE).is_file() else None

    def per_clip(fn) -> float:
        fn(clips[0])  # warm-up (onnxruntime session, FFT plans)
        runs = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            for y in clips:
                fn(y)
            runs.append((time.perf_counter() - t) / len(clips))
        return statistics.median(runs)

    dsp = per_clip(lambda y: fastdsp.tempo(y, sr))
    feats = per_clip(lambda y: F.evidence(F.envelopes(y, sr), F.fps(sr)))
    print(f"DSP (fastdsp.tempo)          : {dsp * 1000:7.1f} ms per 30 s clip")
    print(f"learned: features only       : {feats * 1000:7.1f} ms per 30 s clip")
    if learned is not None:
        full = per_clip(lambda y: learned.estimate([F.envelopes(y, sr)], sr))
        print(f"learned: features + ONNX     : {full * 1000:7.1f} ms per 30 s clip ({full / dsp:.2f}x DSP)")
    else:
        print(f"learned: no model in {a.model_dir} (run `dvc repro train-tempo`)")


if __name__ == "__main__":
    main()
