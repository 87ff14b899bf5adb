"""Tempo sets: exact-tempo audio at any size, as onset envelopes (what the estimator trains on).

Three synthetic sources, each deterministic in ``(seed, kind, style, index)``:

* ``train`` / ``val``: :func:`mgr.synth.styles.sample_tempo_plan` clips of the *train* styles
  (different clip indices, so no clip is in both);
* ``heldout``: clips of the held-out styles only (whole styles training never saw);
* ``click``: metronome clicks (:func:`mgr.synth.render.render_click`, exact beat grid; accented
  downbeats) at the tempo plans' tempi, with noise;
* ``click_sub``: the same with a softer click (-9 dB) on every 8th (triplet 8th in compound
  meters): the beat is marked by loudness alone, an octave trap for any estimator;
* ``feels``: clips of the held-out styles, each with one of the real-music feels of
  :func:`mgr.synth.styles.apply_feel` (heavy backbeat, 16th hats over a slow pulse, half-time,
  double-time, dense, rubato; in turn): the rhythms on which an estimator halves or doubles, at
  tempi drawn like real music's (:data:`REAL_TEMPO`: GTZAN's annotated tempi as a log-normal),
  not log-uniformly like the other sets;
* ``calib``: clips of the *train* styles for the confidence calibration
  (:mod:`mgr.tempo.calibration`), neither trained on nor used to stop training, in turn: one with
  a feel at real music's tempi (as ``feels``), one plain plan (as ``val``), one metronome with
  soft subdivision clicks (as ``click_sub``: the rhythm on which the model makes confident octave
  errors; a calibration that never saw it over-claimed there).

``train``/``val``/``heldout`` plans get a feel half of the time (:data:`mgr.synth.styles.FEEL_PROBABILITY`).

And any dataset with a ``tempo_bpm`` column (the synthetic genre set, GTZAN with
``data.gtzan.tempo``, a folder manifest): :func:`dataset_items` decodes its tracks with the
pipeline's audio policy. :func:`generate` writes a synthetic tempo set to disk as a folder dataset
(``tracks.csv`` with ``path, genre, tempo_bpm``) of any size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mgr.audio.decode import load_audio
from mgr.data.sources.synthetic import _write_audio
from mgr.dsp import portable
from mgr.io import n_workers, process_pool
from mgr.synth import dsp
from mgr.synth.render import render, render_click
from mgr.synth.styles import FEELS, GENRES, SLOW_PULSE_BPM, sample_tempo_plan
from mgr.tempo.features import dsp_tempo, envelopes

KINDS = ("train", "val", "heldout", "click", "click_sub", "feels", "calib")  # (append only: the index seeds the clips)
#: the ``feels`` set's tempo distribution: a log-normal (median BPM, sd in octaves) with GTZAN's
#: annotated mean 94.3 and sd 24.5 BPM (tempo_eval_report): median 94.3 / sqrt(1 + (24.5 / 94.3)^2),
#: sd sqrt(ln(1 + (24.5 / 94.3)^2)) / ln 2
REAL_TEMPO = (91.27, 0.369)
_KIND_ID = {k: i for i, k in enumerate(KINDS)}


@dataclass
class Item:
    """One clip of a tempo set: its onset envelopes (:func:`mgr.tempo.features.envelopes`),
    exact tempo, style/genre, the DSP estimate and where it came from."""

    env: np.ndarray
    sr: int
    tempo_bpm: float
    genre: str
    dsp_bpm: float
    source: str  # "synthetic:<kind>" | "dataset:<part>"
    track_id: str = ""


LOG2_10 = 3.32192809488736234787  # log2(10): 10 ** x = 2 ** (x log2 10)


def _rng(seed: int, kind: str, style: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 1414, _KIND_ID[kind], GENRES.index(style), int(index)]))


def render_item(seed: int, kind: str, style: str, index: int, duration_s: float, sr: int = 22050) -> tuple[np.ndarray, float]:
    """The audio (float32, on the 16-bit grid a file would hold: the synthesizer's float64 last
    bits depend on the machine's libm, a 16-bit sample does not) and exact tempo of one synthetic
    tempo-set clip."""
    y, bpm = _render_item(seed, kind, style, index, duration_s, sr)
    return np.round(np.clip(y, -1.0, 1.0).astype(np.float64) * 32767.0).astype(np.float32) / np.float32(32767.0), bpm


def _render_item(seed: int, kind: str, style: str, index: int, duration_s: float, sr: int = 22050) -> tuple[np.ndarray, float]:

    rng = _rng(seed, kind, style, index)
    sub = kind == "click_sub" or (kind == "calib" and index % 3 == 2)  # clicks on every subdivision
    click = kind == "click" or sub
    feel = None
    if kind == "feels" or (kind == "calib" and index % 3 == 0):
        feel = FEELS[(int(index) // (3 if kind == "calib" else 1)) % len(FEELS)]
    plan = sample_tempo_plan(style, rng, pulse=not click, feel=feel)  # clicks: no comping to draw
    if feel is not None:  # real music's tempi (the 16th-hat feel: within its slow pulses)
        lo, hi = SLOW_PULSE_BPM if feel == "sixteenths" else (50.0, 220.0)
        plan.tempo_bpm = round(real_tempo(rng, lo, hi), 2)
        plan.phase_s = float(rng.uniform(0, plan.beats_per_bar * 60.0 / plan.tempo_bpm))
    if click:
        y = render_click(plan, sr, duration_s).astype(np.float64)
        if sub:  # a softer click on every subdivision: the beat stays the label
            n_sub = plan.steps_per_beat // 2 if plan.steps_per_beat == 4 else 3
            step = plan.beat_s / n_sub
            off = (-plan.phase_s) % plan.beat_s
            for b in np.arange(off, duration_s, plan.beat_s):
                for j in range(1, n_sub):
                    i = int(round((b + j * step) * sr))
                    if i < len(y):
                        dsp.add_at(y, 0.35 * dsp.click(sr, accent=False), i)
        y = y + float(portable.exp2(rng.uniform(-70, -30) / 20 * LOG2_10)) * rng.standard_normal(y.shape[0])
        return np.clip(y, -1, 1).astype(np.float32), float(plan.tempo_bpm)
    return render(plan, sr, duration_s, rng).audio, float(plan.tempo_bpm)


def real_tempo(rng: np.random.Generator, lo: float = 50.0, hi: float = 220.0) -> float:
    """One tempo from :data:`REAL_TEMPO` within ``[lo, hi]`` (redrawn until inside)."""
    med, octv = REAL_TEMPO
    for _ in range(1000):
        t = med * float(portable.exp2(octv * rng.standard_normal()))
        if lo <= t <= hi:
            return float(t)
    return float(np.clip(med, lo, hi))


def _synth_job(job: tuple) -> Item:
    seed, kind, style, index, duration_s, sr = job
    y, bpm = render_item(seed, kind, style, index, duration_s, sr)
    env = envelopes(y, sr)
    return Item(env, sr, bpm, style, dsp_tempo(env, sr), f"synthetic:{kind}", f"{kind}.{style}.{index:05d}")


def synthetic_jobs(kind: str, n: int, styles: Sequence[str], *, seed: int, duration_s: float, sr: int = 22050) -> list[tuple]:
    """``n`` clips spread round-robin over ``styles``."""
    styles = list(styles)
    if not styles:
        return []
    return [(seed, kind, styles[i % len(styles)], i // len(styles), duration_s, sr) for i in range(int(n))]


def _map(fn: Any, jobs: list, workers: int) -> list:
    n = min(n_workers(workers), max(1, len(jobs)))
    if n > 1 and len(jobs) >= 8:
        with process_pool(n) as ex:
            return list(ex.map(fn, jobs, chunksize=max(1, len(jobs) // (4 * n))))
    return [fn(j) for j in jobs]


def synthetic_items(jobs: list[tuple], workers: int = 0) -> list[Item]:
    return _map(_synth_job, jobs, workers)


def _dataset_job(job: tuple) -> Item | None:
    track_id, path, genre, bpm, part, audio = job
    try:
        y = load_audio(path, sr=audio["sample_rate"], offset_s=audio["offset_s"], duration_s=audio["duration_s"], pad=audio["pad"])
    except Exception:  # a broken file is skipped (the fetch/spectrogram stages report it)
        return None
    env = envelopes(y, audio["sample_rate"])
    return Item(env, audio["sample_rate"], float(bpm), str(genre), dsp_tempo(env, audio["sample_rate"]), f"dataset:{part}", track_id)


def dataset_items(tracks: Any, split: Any, audio: dict, *, exclude_genres: Sequence[str] = (), workers: int = 0) -> dict[str, list[Item]]:
    """The tracks of a dataset with a finite ``tempo_bpm``, by split part (``train``/``val``/
    ``test``); ``split`` is ``data/split.csv`` (``track_id, split[, fold]``: a k-fold split's
    ``split`` column is fold 0's). Tracks of ``exclude_genres`` are left out of train and val."""
    if tracks is None or "tempo_bpm" not in tracks:
        return {"train": [], "val": [], "test": []}
    t = tracks[np.isfinite(tracks["tempo_bpm"].astype(float))]
    if "split" not in split:
        return {"train": [], "val": [], "test": []}
    s = split
    part_of = dict(zip(s["track_id"].astype(str), s["split"].astype(str)))
    jobs = []
    for r in t.itertuples(index=False):
        part = part_of.get(str(r.track_id))
        if part not in ("train", "val", "test") or (part != "test" and r.genre in exclude_genres):
            continue
        jobs.append((str(r.track_id), str(r.path), r.genre, float(r.tempo_bpm), part, audio))
    items = [i for i in _map(_dataset_job, jobs, workers) if i is not None]
    return {p: [i for i in items if i.source == f"dataset:{p}"] for p in ("train", "val", "test")}


def generate(out_dir: str | Path, n: int, *, kind: str = "train", styles: Sequence[str] = GENRES, seed: int = 0,
             duration_s: float = 30.0, sr: int = 22050, fmt: str = "flac", workers: int = 0) -> Path:
    """Write ``n`` synthetic tempo-set clips (``kind`` in :data:`KINDS`) to ``out_dir/audio/`` and a
    ``tracks.csv`` manifest (``track_id, path, genre, tempo_bpm``) usable as a folder dataset."""
    import pandas as pd

    out_dir = Path(out_dir)
    jobs = [(out_dir, j, fmt) for j in synthetic_jobs(kind, n, styles, seed=seed, duration_s=duration_s, sr=sr)]
    rows = _map(_write_job, jobs, workers)
    csv = out_dir / "tracks.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def _write_job(job: tuple) -> dict:
    out_dir, (seed, kind, style, index, duration_s, sr), fmt = job
    y, bpm = render_item(seed, kind, style, index, duration_s, sr)
    track_id = f"{kind}.{style}.{index:05d}"
    rel = f"audio/{style}/{track_id}.{fmt}"
    (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    _write_audio(out_dir / rel, y, sr, fmt)
    return {"track_id": track_id, "path": rel, "genre": style, "tempo_bpm": bpm}


def main(argv: list[str] | None = None) -> None:
    """``python -m mgr.tempo.dataset OUT_DIR --n 1000``: write a tempo set of any size."""
    import argparse

    ap = argparse.ArgumentParser(description="write a synthetic tempo set (audio + tracks.csv with tempo_bpm)")
    ap.add_argument("out_dir")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--kind", choices=KINDS, default="train")
    ap.add_argument("--styles", default=",".join(GENRES), help="comma-separated synth styles")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--format", default="flac", choices=["wav", "flac", "ogg"])
    a = ap.parse_args(argv)
    styles = [s for s in a.styles.split(",") if s]
    bad = [s for s in styles if s not in GENRES]
    if bad:
        raise SystemExit(f"error: unknown style(s) {bad} (allowed: {', '.join(GENRES)})")
    print(generate(a.out_dir, a.n, kind=a.kind, styles=styles, seed=a.seed, duration_s=a.duration, fmt=a.format))


if __name__ == "__main__":  # pragma: no cover
    main()
