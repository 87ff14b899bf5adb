"""spectrogram stage: audio + data/split.csv -> data/spectrograms.h5 (+ metrics/spectrogram.json)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, run  # noqa: E402

OUT = "data/spectrograms.h5"



def main() -> None:
    from mgr.params import load_params
    from mgr.extract import load_inputs
    from mgr.spectrogram import build_store
    from mgr.utils import write_json
    from mgr.validation.features import validate_store

    p = load_params()
    tracks = load_inputs(Path("data/raw") / p.data.source / "tracks.csv", "data/split.csv")
    report = build_store(tracks, p.audio, p.spectrogram, OUT, workers=p.spectrogram.workers,
                         progress=sys.stderr.isatty())
    validate_store(OUT)
    report["peak_rss_mb"] = peak_rss_mb()
    report["output"] = OUT
    write_json("metrics/spectrogram.json", report)
    for s in report["skipped"]:
        print(f"warning: skipped {s['track_id']}: {s['reason']}", file=sys.stderr)
    print(f"spectrogram: {report['n_tracks']} tracks, {report['n_skipped']} skipped, "
          f"{report['seconds']:.1f} s -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    run(main)
