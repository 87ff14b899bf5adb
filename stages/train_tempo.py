"""train-tempo stage: the learned tempo estimator (models/tempo/) and the tempo protocol.

Renders the synthetic tempo sets (train styles, held-out styles, click tracks; exact tempo),
adds the ``data.source`` tracks that have a ``tempo_bpm`` (by split part), trains
:mod:`mgr.tempo.model` with scale augmentation, and writes ``models/tempo/model.onnx`` +
``card.json``, ``metrics/tempo.json`` (DSP vs learned: Acc1, Acc2, MAE, octave breakdown and
per-genre Acc1 on every set) and ``reports/tempo.md``. The work is in :func:`mgr.tempo.train.run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import run, write_metrics  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    from mgr.params import load_params
    from mgr.tempo import protocol
    from mgr.tempo.train import run as train_tempo
    from mgr.utils import atomic_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    args = ap.parse_args(argv)
    p = load_params(args.params)
    metrics, facts = train_tempo(p, ".", log=lambda s: print(s, flush=True))
    write_metrics("tempo", metrics, extra_facts=facts)
    Path("reports").mkdir(exist_ok=True)
    with atomic_path(Path("reports") / "tempo.md") as tmp:
        tmp.write_text("# Tempo: learned estimator vs DSP (`librosa.feature.tempo`)\n\n"
                       f"Beats DSP on validation (Acc1 higher, Acc2 not lower): {metrics['beats_dsp_on_validation']}\n\n"
                       + protocol.table_markdown(metrics["sets"]))
    print(f"train-tempo: {facts['seconds']:.1f} s (render {facts['render_seconds']:.1f} s, fit {facts['train_seconds']:.1f} s)")


if __name__ == "__main__":
    run(main)
