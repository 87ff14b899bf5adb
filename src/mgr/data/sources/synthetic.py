"""The built-in dataset: procedurally synthesized music with exact genre, tempo and tag labels.

Ten genres with the GTZAN names, each a stochastic style template (:mod:`mgr.synth.styles`)
rendered by :mod:`mgr.synth.render`. Every clip is a pure function of ``(seed, genre, index)``:
its random generator is seeded from those three numbers, never from worker order, so the files
and the table are identical whatever the number of worker processes.

Public API
----------
- :func:`generate` -- the ``data.source: synthetic`` fetcher's generator (files + label table).
- :func:`write_examples` -- a few clips and their ``tracks.csv`` to listen to (``mgr synth``).
- :func:`plot_genres` -- one log-mel spectrogram per genre in a grid (PNG).
- :func:`make_plan`, :func:`render_clip`, :func:`render_click` -- one clip, or its metronome alone.
"""

from __future__ import annotations

import os
from concurrent.futures import as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mgr.errors import ParamsError
from mgr.io import atomic_path, n_workers, process_pool
from mgr.params import SyntheticParams
from mgr.synth.render import render
from mgr.synth.render import render_click as _click
from mgr.synth.styles import GENRES, TAG_VOCAB, Plan, sample_plan

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mgr.params import SyntheticParams
    from mgr.synth.render import Rendered

__all__ = [
    "GENRES",
    "TAG_VOCAB",
    "COLUMNS",
    "CORRUPT_KINDS",
    "generate",
    "write_examples",
    "plot_genres",
    "make_plan",
    "render_clip",
    "render_click",
]

COLUMNS = ["track_id", "path", "genre", "tempo_bpm", "meter", "key", "swing", "tags"]
FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}
# Kinds of deliberately broken files, in the order they are written (cycled).
CORRUPT_KINDS = ("truncated-header", "random-bytes", "zero-bytes", "too-short")


def _rngs(seed: int, genre: str, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the plan and the rendering of clip (seed, genre, index)."""
    ss = np.random.SeedSequence([int(seed), GENRES.index(genre), int(index)])
    a, b = ss.spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b)


def make_plan(seed: int, genre: str, index: int) -> Plan:
    """The song plan of clip ``index`` of ``genre`` (deterministic)."""

    if genre not in GENRES:
        raise ParamsError(f"synthetic: unknown genre {genre!r} (allowed: {', '.join(GENRES)})")
    return sample_plan(genre, _rngs(seed, genre, index)[0])


def render_clip(
    seed: int, genre: str, index: int, *, duration_s: float, sr: int = 22050, keep_stems: bool = False
) -> tuple[Plan, Rendered]:
    """Plan and render one clip: ``(plan, Rendered(audio, tags, stems))``."""

    plan = make_plan(seed, genre, index)
    out = render(plan, sr, duration_s, _rngs(seed, genre, index)[1], keep_stems=keep_stems)
    return plan, out


def render_click(seed: int, genre: str, index: int, *, duration_s: float, sr: int = 22050) -> np.ndarray:
    """Only the metronome of clip (seed, genre, index): one click per labelled beat."""

    return _click(make_plan(seed, genre, index), sr, duration_s)


def _row(plan: Plan, track_id: str, rel: str, tags: list[str]) -> dict[str, Any]:
    return {
        "track_id": track_id,
        "path": rel,
        "genre": plan.genre,
        "tempo_bpm": float(plan.tempo_bpm),
        "meter": plan.meter,
        "key": plan.key,
        "swing": bool(plan.swing),
        "tags": "|".join(sorted(tags)),
    }


def _write_audio(path: Path, audio: np.ndarray, sr: int, fmt: str) -> None:
    import soundfile as sf

    container, subtype = FORMATS[fmt]
    if subtype == "PCM_16":  # quantise here (round to nearest), so every PCM format holds the same samples
        audio = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    # many files per directory, all inside fetch's temporary dataset dir: no stale-temp scan
    with atomic_path(path, clean_stale=False) as tmp:
        sf.write(str(tmp), audio, sr, format=container, subtype=subtype)


def _one(job: tuple[Path, int, str, int, float, int, str]) -> dict[str, Any]:
    out_dir, seed, genre, index, duration_s, sr, fmt = job
    plan, r = render_clip(seed, genre, index, duration_s=duration_s, sr=sr)
    track_id = f"{genre}.{index:05d}"
    rel = f"audio/{genre}/{track_id}.{fmt}"
    _write_audio(out_dir / rel, r.audio, sr, fmt)
    return _row(plan, track_id, rel, r.tags)


def _write_corrupt(out_dir: Path, k: int, seed: int, sr: int, fmt: str) -> dict[str, Any]:
    """Broken file number ``k``: its kind cycles through :data:`CORRUPT_KINDS`."""

    kind = CORRUPT_KINDS[k % len(CORRUPT_KINDS)]
    genre = GENRES[k % len(GENRES)]
    track_id = f"{genre}.corrupt{k:03d}"
    rel = f"audio/{genre}/{track_id}.{fmt}"
    path = out_dir / rel
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1_000_003, k]))
    if kind == "too-short":
        _write_audio(path, (0.1 * rng.standard_normal(int(0.25 * sr))).astype(np.float32), sr, fmt)
    else:
        if kind == "truncated-header":
            import io

            import soundfile as sf

            buf = io.BytesIO()
            container, subtype = FORMATS[fmt]
            sf.write(buf, np.zeros(sr, dtype=np.float32), sr, format=container, subtype=subtype)
            data = buf.getvalue()[:24]  # cut inside the header
        elif kind == "random-bytes":
            data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        else:  # zero-bytes
            data = b""
        with atomic_path(path, clean_stale=False) as tmp:
            tmp.write_bytes(data)
    return {"track_id": track_id, "path": rel, "genre": genre, "tempo_bpm": float("nan"), "meter": "",
            "key": "", "swing": False, "tags": ""}


def _check(sp_format: str) -> None:
    if sp_format not in FORMATS:
        raise ParamsError(f"synthetic: format {sp_format!r} is not allowed (allowed: {', '.join(FORMATS)})")


def generate(
    out_dir: Path, sp: SyntheticParams, *, seed: int, inject_corrupt: int = 0, workers: int = 0
) -> pd.DataFrame:
    """Write ``sp.clips_per_genre`` clips per genre under ``out_dir/audio/<genre>/`` in parallel.

    Returns one row per written file (sorted by genre, then index; the broken files last):
    ``track_id, path`` (relative to ``out_dir``), ``genre, tempo_bpm`` (exact), ``meter, key,
    swing, tags`` (``|``-separated, sorted). ``inject_corrupt`` extra files are deliberately
    broken (see :data:`CORRUPT_KINDS`) and listed too, so that the fetch stage rejects them.

    WAV and FLAC files are byte-identical for equal seeds (PCM is quantised here, by rounding);
    Ogg/Vorbis files decode to identical samples, but libsndfile stamps each stream with a
    random serial number, so their bytes differ from run to run.
    """
    import pandas as pd

    _check(sp.format)
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    jobs = [
        (out_dir, int(seed), g, i, float(sp.duration_s), int(sp.sample_rate), sp.format)
        for g in GENRES
        for i in range(sp.clips_per_genre)
    ]
    n = min(n_workers(workers), len(jobs))
    rows: list[dict[str, Any]] = []
    if n <= 1:
        rows = [_one(j) for j in jobs]
    else:
        with process_pool(n) as ex:  # workers die with the fetch, even on kill -9
            futures = [ex.submit(_one, j) for j in jobs]
            for fut in as_completed(futures):
                rows.append(fut.result())
    rows.sort(key=lambda r: (GENRES.index(r["genre"]), r["track_id"]))
    rows += [_write_corrupt(out_dir, k, seed, int(sp.sample_rate), sp.format) for k in range(inject_corrupt)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["swing"] = df["swing"].astype(bool)
    return df


def write_examples(out: Path, *, per_genre: int = 1, duration_s: float = 10.0, seed: int = 0, fmt: str = "wav") -> list[Path]:
    """Write ``per_genre`` clips per genre and their labels (``tracks.csv``) into ``out``."""

    _check(fmt)
    out = Path(out)
    sp = SyntheticParams(clips_per_genre=per_genre, duration_s=duration_s, format=fmt)  # type: ignore[arg-type]
    df = generate(out, sp, seed=seed, inject_corrupt=0, workers=0)
    with atomic_path(out / "tracks.csv") as tmp:
        df.to_csv(tmp, index=False)
    return [out / p for p in df["path"]]


def plot_genres(png_path: Path, *, seed: int = 0, duration_s: float = 10.0, sr: int = 22050) -> Path:
    """One log-mel spectrogram per genre (clip 0 of each) in a 2 x 5 grid."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 5, figsize=(18, 6.5), sharex=True, sharey=True)
    for ax, genre in zip(axes.ravel(), GENRES):
        plan, r = render_clip(seed, genre, 0, duration_s=duration_s, sr=sr)
        m = librosa.feature.melspectrogram(y=r.audio, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
        db = librosa.power_to_db(m, ref=1.0, top_db=80.0)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                  extent=(0.0, len(r.audio) / sr, 0, 128), vmin=db.max() - 80, vmax=db.max())
        ax.set_title(f"{genre}: {plan.tempo_bpm:.0f} BPM {plan.meter}{' swing' if plan.swing else ''}", fontsize=10)
        ax.text(0.02, 0.03, "\n".join(", ".join(r.tags[i : i + 3]) for i in range(0, len(r.tags), 3)),
                transform=ax.transAxes, fontsize=7, color="white", va="bottom")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("mel bin")
    fig.suptitle(f"synthetic dataset: one log-mel per genre (seed {seed})")
    fig.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=60, format="png")
    plt.close(fig)
    return png_path


if __name__ == "__main__":  # pragma: no cover - manual listening helper
    import sys

    write_examples(Path(sys.argv[1] if len(sys.argv) > 1 else "synth-examples"))
    print(os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "synth-examples"))
