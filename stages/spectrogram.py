"""spectrogram stage: audio + data/split.csv -> data/spectrograms.h5 (+ metrics/spectrogram.json)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish_extraction, run  # noqa: E402

OUT = "data/spectrograms.h5"



def main() -> None:
    from mgr.params import load_params
    from mgr.extract import load_inputs
    from mgr.spectrogram import build_store
    from mgr.validation.features import validate_store

    p = load_params()
    tracks = load_inputs(Path("data/raw") / p.data.source / "tracks.csv", "data/split.csv")
    report = build_store(tracks, p.audio, p.spectrogram, OUT, workers=p.spectrogram.workers,
                         progress=sys.stderr.isatty())
    validate_store(OUT)
    finish_extraction("spectrogram", report, OUT)
    print(f"spectrogram: {report['n_tracks']} tracks, {report['n_skipped']} skipped, "
          f"{report['seconds']:.1f} s -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    run(main)
