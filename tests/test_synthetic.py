"""The synthetic dataset: determinism, exact tempo, rendered tags, corrupt files, separability."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from mgr.data.sources import synthetic as S
from mgr.errors import ParamsError
from mgr.io import file_hash
from mgr.params import SyntheticParams
from mgr.synth import dsp
from mgr.synth.render import beat_times, render, step_time

SR = 22050


def _hashes(root, df: pd.DataFrame) -> list[str]:
    return [file_hash(root / p) for p in df["path"]]


# ------------------------------------------------------------------------------ determinism
def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path):
    sp = SyntheticParams(clips_per_genre=1, duration_s=1.5, format="wav")
    a = S.generate(tmp_path / "a", sp, seed=11, inject_corrupt=2, workers=1)
    b = S.generate(tmp_path / "b", sp, seed=11, inject_corrupt=2, workers=2)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert _hashes(tmp_path / "a", a) == _hashes(tmp_path / "b", b)
    c = S.generate(tmp_path / "c", sp, seed=12, inject_corrupt=0, workers=1)
    assert _hashes(tmp_path / "c", c) != _hashes(tmp_path / "a", a)[: len(c)]


def test_fetch_stage_tables_are_byte_identical_for_the_same_seed(tmp_path):
    """Through the real fetch (probe + tracks.csv/rejected.csv), as `dvc repro` runs it."""
    from mgr.data.fetch import fetch
    from mgr.params import params_from_dict

    p = params_from_dict({"data": {"seed": 5, "inject_corrupt": 2, "workers": 1,
                                   "synthetic": {"clips_per_genre": 1, "duration_s": 1.5}}})
    ra = fetch(p, tmp_path / "a", progress=False)
    rb = fetch(p, tmp_path / "b", progress=False)
    assert ra.n_tracks == 10 and ra.n_rejected == 2
    for name in ("tracks.csv", "rejected.csv"):
        assert (ra.dataset_dir / name).read_bytes() == (rb.dataset_dir / name).read_bytes()
    tracks = pd.read_csv(ra.dataset_dir / "tracks.csv")
    assert {"tempo_bpm", "tags", "meter", "key", "swing"} <= set(tracks.columns)
    assert [file_hash(ra.dataset_dir / q) for q in tracks["path"]] == [file_hash(rb.dataset_dir / q) for q in tracks["path"]]


def test_flac_is_deterministic_and_decodes_to_the_wav_samples(tmp_path):
    import soundfile as sf

    sp = SyntheticParams(clips_per_genre=1, duration_s=1.5, format="flac")
    a = S.generate(tmp_path / "a", sp, seed=3, inject_corrupt=0, workers=1)
    b = S.generate(tmp_path / "b", sp, seed=3, inject_corrupt=0, workers=1)
    assert _hashes(tmp_path / "a", a) == _hashes(tmp_path / "b", b)
    w = S.generate(tmp_path / "w", dataclasses.replace(sp, format="wav"), seed=3, inject_corrupt=0, workers=1)
    for pf, pw in zip(a["path"], w["path"]):
        assert pf.endswith(".flac") and pw.endswith(".wav")
        xf, srf = sf.read(tmp_path / "a" / pf, dtype="int16")
        xw, srw = sf.read(tmp_path / "w" / pw, dtype="int16")
        assert srf == srw == SR and len(xf) == int(1.5 * SR)
        np.testing.assert_array_equal(xf, xw)  # lossless codec, same samples


def test_ogg_decodes_to_the_same_samples(tmp_path):
    """libsndfile gives each Ogg stream a random serial number, so the bytes differ run to run;
    the decoded audio must not."""
    import soundfile as sf

    sp = SyntheticParams(clips_per_genre=1, duration_s=1.2, format="ogg")
    a = S.generate(tmp_path / "a", sp, seed=3, inject_corrupt=0, workers=1)
    b = S.generate(tmp_path / "b", sp, seed=3, inject_corrupt=0, workers=1)
    assert a.equals(b)
    for p in a["path"][:3]:
        xa, sr = sf.read(tmp_path / "a" / p)
        xb, _ = sf.read(tmp_path / "b" / p)
        assert sr == SR and xa.shape == (int(1.2 * SR),)
        np.testing.assert_array_equal(xa, xb)


def test_table_columns_and_label_values(tmp_path):
    sp = SyntheticParams(clips_per_genre=2, duration_s=1.0, format="wav")
    df = S.generate(tmp_path, sp, seed=5, inject_corrupt=0, workers=1)
    assert list(df.columns) == S.COLUMNS
    assert len(df) == 2 * len(S.GENRES) and df["track_id"].is_unique
    assert df["genre"].value_counts().to_dict() == {g: 2 for g in S.GENRES}
    assert df["meter"].isin(["4/4", "3/4", "12/8"]).all()
    assert df["key"].str.fullmatch(r"[A-G][#b]? (major|minor)").all()
    assert df["tempo_bpm"].between(40, 250).all()
    for _, r in df.iterrows():
        tags = r["tags"].split("|")
        assert tags == sorted(tags) and set(tags) <= set(S.TAG_VOCAB)
        assert ("swing" in tags) <= bool(r["swing"])  # a swing tag needs a swung grid
        assert (tmp_path / r["path"]).is_file() and r["path"] == f"audio/{r['genre']}/{r['track_id']}.wav"


def test_bad_format_is_a_params_error(tmp_path):
    with pytest.raises(ParamsError, match="format"):
        S.write_examples(tmp_path, per_genre=1, duration_s=1.0, fmt="mp3")


# ------------------------------------------------------------------------------ corrupt files
def test_injected_corrupt_files_are_rejected_by_the_prober(tmp_path):
    from mgr.data.probe import probe_file

    sp = SyntheticParams(clips_per_genre=1, duration_s=1.2, format="flac")
    df = S.generate(tmp_path, sp, seed=1, inject_corrupt=len(S.CORRUPT_KINDS), workers=1)
    bad = df[df["track_id"].str.contains("corrupt")]
    good = df[~df["track_id"].str.contains("corrupt")]
    assert len(bad) == len(S.CORRUPT_KINDS) and bad["genre"].isin(S.GENRES).all()
    sizes = sorted((tmp_path / p).stat().st_size for p in bad["path"])
    assert sizes[0] == 0  # the zero-byte file
    for p in bad["path"]:
        res = probe_file(tmp_path / p, min_duration_s=1.0)
        assert not res.ok, p
    for p in good["path"]:
        res = probe_file(tmp_path / p, min_duration_s=1.0)
        assert res.ok and res.sample_rate == SR and res.channels == 1 and abs(res.duration_s - 1.2) < 1e-3


# ------------------------------------------------------------------------------ tempo
def _click_tempo(y: np.ndarray, sr: int) -> float:
    """Tempo from the audio alone: onset times regressed on their index (60 / period)."""
    import librosa

    hop = 64
    env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop)
    on = librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=hop, units="time", backtrack=False)
    ioi = np.diff(on)
    period0 = float(np.median(ioi))
    idx = np.concatenate([[0], np.cumsum(np.round(ioi / period0))])
    slope = np.polyfit(idx, on, 1)[0]
    return 60.0 / slope


@pytest.mark.parametrize(("genre", "index"), [("blues", 0), ("jazz", 1), ("metal", 2), ("reggae", 3), ("classical", 4)])
def test_click_only_render_has_the_labelled_tempo(genre, index):
    plan = S.make_plan(9, genre, index)
    y = S.render_click(9, genre, index, duration_s=6.0)
    est = _click_tempo(y, SR)
    assert abs(est - plan.tempo_bpm) / plan.tempo_bpm < 0.01, (genre, plan.tempo_bpm, est)
    # and the labelled grid is the one the instruments are placed on
    beats = beat_times(plan, 6.0)
    assert np.allclose(np.diff(beats), 60.0 / plan.tempo_bpm)
    assert step_time(plan, plan.steps_per_beat * 3) == pytest.approx(3 * 60.0 / plan.tempo_bpm)


def test_swing_moves_only_the_off_beats():
    plan = dataclasses.replace(S.make_plan(0, "jazz", 0), steps_per_beat=4, swing_ratio=0.66, tempo_bpm=120.0)
    assert plan.swing
    assert step_time(plan, 0) == 0.0 and step_time(plan, 4) == pytest.approx(0.5)
    assert step_time(plan, 2) == pytest.approx(0.66 * 0.5)  # the off-beat 8th, late
    straight = dataclasses.replace(plan, swing_ratio=0.5)
    assert step_time(straight, 2) == pytest.approx(0.25) and not straight.swing


# ------------------------------------------------------------------------------ tags
CASES = [(g, i) for g in S.GENRES for i in range(2)]


@pytest.mark.parametrize(("genre", "index"), CASES)
def test_tags_are_what_was_rendered(genre, index):
    plan, r = S.render_clip(4, genre, index, duration_s=2.0, keep_stems=True)
    stem_tags = set()
    for name, x in r.stems.items():
        assert np.sqrt(np.mean(x**2)) > 1e-4, name  # audible, not silently empty
        if name == "drums":
            stem_tags.add("drums")
        else:
            stem_tags.add(next(p.tag for p in plan.parts if f"{p.role}:{p.instrument}" == name))
    assert set(r.tags) - {"swing"} == stem_tags
    assert ("drums" in r.tags) == (plan.drums is not None)
    if "swing" in r.tags:
        assert plan.swing
    if genre == "classical":
        assert "drums" not in r.tags


def test_removing_a_part_removes_its_tag():
    plan = S.make_plan(2, "disco", 0)
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    full = render(plan, SR, 2.0, rng())
    assert "drums" in full.tags and "bass" in full.tags
    no_bass = dataclasses.replace(plan, parts=[p for p in plan.parts if p.role != "bass"])
    assert "bass" not in render(no_bass, SR, 2.0, rng()).tags
    no_drums = dataclasses.replace(plan, drums=None)
    out = render(no_drums, SR, 2.0, rng())
    assert "drums" not in out.tags and set(out.tags) - {"swing"} == set(full.tags) - {"drums", "swing"}


def test_swing_tag_follows_the_grid():
    base = dataclasses.replace(S.make_plan(0, "rock", 0), drums="backbeat", steps_per_beat=4, meter="4/4")
    swung = dataclasses.replace(base, swing_ratio=0.64)
    assert "swing" in render(swung, SR, 3.0, np.random.default_rng(0)).tags
    assert "swing" not in render(dataclasses.replace(base, swing_ratio=0.5), SR, 3.0, np.random.default_rng(0)).tags
    compound = dataclasses.replace(base, steps_per_beat=3, meter="12/8", swing_ratio=0.64)
    assert not compound.swing and "swing" not in render(compound, SR, 3.0, np.random.default_rng(0)).tags
    # the templates draw both feels: jazz mostly swung, metal never
    jazz = [S.make_plan(0, "jazz", i).swing for i in range(20)]
    assert sum(jazz) >= 10 and not any(S.make_plan(0, "metal", i).swing for i in range(20))


# ------------------------------------------------------------------------------ dsp
def test_vectorised_karplus_strong_equals_the_per_sample_loop():
    rng = np.random.default_rng(0)
    for period, n in [(101, 5000), (300, 3001), (13, 4000), (2, 777), (40, 40), (25, 10)]:
        exc = rng.uniform(-1, 1, period)
        g = dsp.ks_gain(period, SR, 0.5)
        fast = dsp._ks_blocks(exc, n, g)
        slow = dsp.karplus_strong_naive(exc, n, g)
        assert fast.shape == (n,)
        np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)
    # pitch: the autocorrelation peaks at the loop length (N + 1/2 samples, N = round(sr / f))
    y = dsp.karplus_strong(220.0, SR, SR, rng, brightness=0.5, decay_s=2.0)
    ac = np.array([np.dot(y[:4000], y[lag : lag + 4000]) for lag in range(400)])
    assert int(np.argmax(ac[50:])) + 50 in (100, 101)


def test_rendered_audio_is_sane():
    for genre in S.GENRES:
        _, r = S.render_clip(1, genre, 0, duration_s=1.5)
        assert r.audio.dtype == np.float32 and r.audio.shape == (int(1.5 * SR),)
        assert np.isfinite(r.audio).all() and 0.2 < np.abs(r.audio).max() <= 1.0


# ------------------------------------------------------------------------------ examples / CLI
def test_mgr_synth_writes_examples_and_a_plot(tmp_path):
    from typer.testing import CliRunner

    from mgr.cli import app

    png = tmp_path / "genres.png"
    res = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "ex"), "--duration", "1.5", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "ex" / "tracks.csv")
    assert sorted(df["genre"]) == sorted(S.GENRES)
    assert all((tmp_path / "ex" / p).is_file() for p in df["path"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


# ------------------------------------------------------------------------------ separability
@pytest.mark.slow
def test_not_trivially_separable():
    """Tempo alone < 50 %; MFCC means + logistic regression well above chance, well below 100 %."""
    import librosa
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    X, y, tempo = [], [], []
    for gi, g in enumerate(S.GENRES):
        for i in range(16):
            plan, r = S.render_clip(2024, g, i, duration_s=3.0)
            X.append(librosa.feature.mfcc(y=r.audio, sr=SR, n_mfcc=20).mean(axis=1))
            y.append(gi)
            tempo.append([plan.tempo_bpm])
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    acc_tempo = max(
        cross_val_score(DecisionTreeClassifier(max_depth=d, random_state=0), tempo, y, cv=cv).mean() for d in (2, 3, 4, 6)
    )
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    acc_mfcc = cross_val_score(lr, np.asarray(X), y, cv=cv).mean()
    print(f"tempo-only tree: {acc_tempo:.3f}  mfcc-mean logreg: {acc_mfcc:.3f}")
    assert acc_tempo < 0.5
    assert 0.25 < acc_mfcc < 0.9
