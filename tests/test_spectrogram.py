"""mgr.features.store: the front end, the HDF5 store (round trip, windows, train-only stats)."""

from __future__ import annotations

import json
from dataclasses import replace

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mgr.audio.decode import load_audio
from mgr.errors import DataError
from mgr.features.extract import load_inputs
from mgr.features.store import (
    SpectrogramStore,
    build_store,
    compute_spectrogram,
    frontend_config,
)
from mgr.params import AudioParams, SpectrogramParams

SR = 8000
AUDIO = AudioParams(sample_rate=SR)
SPEC = SpectrogramParams(n_fft=256, hop_length=128, n_mels=32, top_db=80.0)


def _make_dataset(tmp_path, n=8, *, folds=False, corrupt=True):
    """n short clips (different lengths, loudness per split) + one corrupt file; tracks & split tables."""
    rng = np.random.default_rng(0)
    rows, split_rows = [], []
    splits = ["train", "train", "train", "train", "val", "test", "test", "val"]
    for i in range(n):
        secs = 0.6 + 0.25 * i
        t = np.arange(int(SR * secs)) / SR
        amp = 0.5 if splits[i % len(splits)] == "train" else 0.02  # train tracks much louder
        y = amp * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.01 * rng.standard_normal(t.size)
        fmt = ["wav", "flac", "ogg"][i % 3]
        path = tmp_path / f"c{i:02d}.{fmt}"
        sf.write(path, y.astype(np.float32), SR)
        tid = f"t{i:02d}"
        rows.append({"track_id": tid, "path": path.name, "genre": ["a", "b"][i % 2], "duration_s": secs,
                     "sample_rate": SR, "channels": 1, "tempo_bpm": 100.0 + i if i % 2 else np.nan,
                     "tags": "x|y" if i % 3 == 0 else ("y" if i % 3 == 1 else "")})
        r = {"track_id": tid, "split": splits[i % len(splits)]}
        if folds:
            r["fold"] = i % 4
        split_rows.append(r)
    if corrupt:
        bad = tmp_path / "broken.flac"
        bad.write_bytes(b"fLaC" + b"\x00nonsense" * 40)
        rows.append({"track_id": "zz_bad", "path": bad.name, "genre": "a", "duration_s": 1.0,
                     "sample_rate": SR, "channels": 1, "tempo_bpm": np.nan, "tags": ""})
        split_rows.append({"track_id": "zz_bad", "split": "train", **({"fold": 0} if folds else {})})
    # a track in tracks.csv but not in split.csv is not processed
    rows.append({"track_id": "zz_unsplit", "path": "c00.wav", "genre": "a", "duration_s": 0.6,
                 "sample_rate": SR, "channels": 1, "tempo_bpm": np.nan, "tags": ""})
    pd.DataFrame(rows).to_csv(tmp_path / "tracks.csv", index=False)
    pd.DataFrame(split_rows).to_csv(tmp_path / "split.csv", index=False)
    return load_inputs(tmp_path / "tracks.csv", tmp_path / "split.csv")


@pytest.fixture
def store_path(tmp_path):
    tracks = _make_dataset(tmp_path)
    out = tmp_path / "spec.h5"
    report = build_store(tracks, AUDIO, SPEC, out, workers=2, progress=False)
    return out, report, tracks


def test_frontend_presets():
    fe = frontend_config(AudioParams(), SpectrogramParams())
    assert (fe["sr"], fe["n_fft"], fe["hop"], fe["n_mels"], fe["ref"], fe["floor_db"]) == (22050, 2048, 512, 128, 1.0, -80.0)
    choi = frontend_config(AudioParams(), SpectrogramParams(preset="choi"))
    assert (choi["sr"], choi["n_fft"], choi["hop"], choi["n_mels"]) == (12000, 512, 256, 96)
    stft = frontend_config(AudioParams(), SpectrogramParams(kind="stft", n_fft=512))
    assert stft["n_mels"] == stft["n_bins"] == 257
    json.dumps(fe)  # plain JSON for attrs and model cards


@pytest.mark.slow  # librosa's first call JIT-compiles (~20 s on a busy machine)
def test_compute_spectrogram_matches_librosa_with_fixed_reference():
    import librosa

    rng = np.random.default_rng(1)
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(22050 * 2) / 22050) + 0.05 * rng.standard_normal(44100)).astype(np.float32)
    fe = frontend_config(AudioParams(), SpectrogramParams())
    S = compute_spectrogram(y, 22050, fe)
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22050, n_fft=2048, hop_length=512, n_mels=128),
                              ref=1.0, amin=1e-10, top_db=None)
    assert S.shape == ref.shape == (128, 1 + len(y) // 512)
    np.testing.assert_allclose(S, np.maximum(ref, -80.0), atol=1e-3)
    # fixed reference: a quieter copy is lower by exactly 20 dB where above the floor (not re-normalised)
    quiet = compute_spectrogram(y * 0.1, 22050, fe)
    mask = S > -50
    np.testing.assert_allclose(S[mask] - quiet[mask], 20.0, atol=1e-2)
    stft_fe = frontend_config(AudioParams(), SpectrogramParams(kind="stft", n_fft=512, hop_length=256))
    P = compute_spectrogram(y, 22050, stft_fe)
    ref_p = librosa.power_to_db(np.abs(librosa.stft(y, n_fft=512, hop_length=256)) ** 2, ref=1.0, amin=1e-10, top_db=None)
    np.testing.assert_allclose(P, np.maximum(ref_p, -80.0), atol=0.05)  # float32 rounding in near-empty bins
    assert np.abs(P - np.maximum(ref_p, -80.0)).mean() < 1e-3


def test_round_trip_attributes_and_data(store_path):
    out, report, tracks = store_path
    with SpectrogramStore(out) as st:
        assert st.memmapped
        assert st.labels == ["a", "b"]
        assert st.tag_vocab == ["x", "y"]
        assert st.frontend == frontend_config(AUDIO, SPEC)
        assert set(st.versions) >= {"numpy", "librosa", "h5py"}
        assert len(st.content_hash) == 64
        assert list(st.track_ids) == [f"t{i:02d}" for i in range(8)]  # not zz_bad, not zz_unsplit
        assert list(st.genre_idx) == [i % 2 for i in range(8)]
        assert st.split[4] == "val" and list(st.fold) == [-1] * 8
        assert np.isnan(st.tempo_bpm[0]) and st.tempo_bpm[1] == pytest.approx(101.0)
        assert st.tags[0].tolist() == [1, 1] and st.tags[1].tolist() == [0, 1] and st.tags[2].tolist() == [0, 0]
        for i in (0, 3, 7):
            y = load_audio(tracks.loc[i, "path"], sr=SR)
            expect = compute_spectrogram(y, SR, st.frontend)
            got = st.track(i)
            assert got.shape == (32, st.n_valid_frames[i]) == expect.shape
            np.testing.assert_allclose(got, expect, atol=1e-5)
        assert st.frames_for_seconds(1.0) == round(SR / 128)
    with h5py.File(out) as h5:
        assert h5["spec"].chunks is None  # contiguous by default
        assert h5["stats/mean"].shape == (32,)
    # deterministic: a second build (later, with other workers) gives the same content hash and
    # the same bytes, so DVC sees an unchanged store and does not retrain what depends on it
    import time

    time.sleep(1.1)  # HDF5 timestamps have 1 s resolution
    out2 = out.with_name("again.h5")
    build_store(tracks, AUDIO, SPEC, out2, workers=2, progress=False)
    with SpectrogramStore(out2) as a, SpectrogramStore(out) as b:
        assert a.content_hash == b.content_hash
    assert out2.read_bytes() == out.read_bytes()


def test_compressed_store_reads_the_same(store_path, tmp_path):
    out, _, tracks = store_path
    gz = tmp_path / "gz.h5"
    build_store(tracks, AUDIO, replace(SPEC, compression="gzip"), gz, workers=1, progress=False)
    with SpectrogramStore(gz) as c, SpectrogramStore(out) as u:
        assert not c.memmapped and u.memmapped
        np.testing.assert_array_equal(c.track(5), u.track(5))
        Xc, ic = c.random_windows(c.indices("train"), 6, 5, rng=3)
        Xu, iu = u.random_windows(u.indices("train"), 6, 5, rng=3)
        np.testing.assert_array_equal(Xc, Xu)
        np.testing.assert_array_equal(ic, iu)


def test_corrupt_file_is_skipped_and_reported(store_path):
    out, report, _ = store_path
    assert report["n_tracks"] == 8 and report["n_skipped"] == 1
    (s,) = report["skipped"]
    assert s["track_id"] == "zz_bad" and "broken.flac" in s["reason"]
    with SpectrogramStore(out) as st:
        assert "zz_bad" not in set(st.track_ids)


def test_random_windows_never_cross_track_boundaries(store_path):
    out, _, _ = store_path
    with SpectrogramStore(out) as st:
        idx = st.indices("train")
        assert set(st.split[idx]) == {"train"}
        w = 12
        X, tix = st.random_windows(idx, 64, w, rng=np.random.default_rng(0))
        assert X.shape == (64, 32, w) and set(tix) <= set(idx)
        for x, i in zip(X, tix):
            spec = st.track(i)
            n = spec.shape[1]
            if n < w:
                assert np.all(x[:, n:] == st.floor_db)
                np.testing.assert_array_equal(x[:, :n], spec)
                continue
            # the window is a contiguous slice of its own track
            assert any(np.array_equal(x, spec[:, s : s + w]) for s in range(n - w + 1))
        # a window longer than every track is padded, never filled from the neighbour
        big = int(st.n_valid_frames.max()) + 7
        Xb, tb = st.random_windows(idx, 4, big, rng=1)
        for x, i in zip(Xb, tb):
            n = int(st.n_valid_frames[i])
            assert np.all(x[:, n:] == st.floor_db)


def test_track_windows_cover_the_whole_clip(store_path):
    out, _, _ = store_path
    with SpectrogramStore(out) as st:
        for i in range(len(st)):
            spec = st.track(i)
            n = spec.shape[1]
            w = 10
            X = st.track_windows(i, w, overlap=0.5)
            if n <= w:
                assert X.shape[0] == 1
                continue
            np.testing.assert_array_equal(X[0], spec[:, :w])
            np.testing.assert_array_equal(X[-1], spec[:, n - w :])  # last window aligned to the end
            covered = np.zeros(n, dtype=bool)
            hop = 5
            starts = list(range(0, n - w + 1, hop))
            if starts[-1] + w < n:
                starts.append(n - w)
            assert X.shape == (len(starts), 32, w)
            for k, s in enumerate(starts):
                np.testing.assert_array_equal(X[k], spec[:, s : s + w])
                covered[s : s + w] = True
            assert covered.all()


def test_stats_come_from_train_tracks_only(store_path):
    out, _, _ = store_path
    with SpectrogramStore(out) as st:
        mean, std = st.stats()
        train = np.concatenate([st.track(i) for i in st.indices("train")], axis=1)
        np.testing.assert_allclose(mean, train.mean(axis=1), atol=1e-3)
        np.testing.assert_allclose(std, train.std(axis=1), atol=1e-3)
        every = np.concatenate([st.track(i) for i in range(len(st))], axis=1)
        assert np.abs(every.mean(axis=1) - mean).max() > 1.0  # val/test are quieter: they would shift it
    with h5py.File(out) as h5:
        np.testing.assert_allclose(h5["stats/mean"][...], mean, atol=1e-5)


def test_kfold_indices_and_stats(tmp_path):
    tracks = _make_dataset(tmp_path, folds=True, corrupt=False)
    out = tmp_path / "k.h5"
    build_store(tracks, AUDIO, SPEC, out, workers=1, progress=False)
    with SpectrogramStore(out) as st:
        assert st.n_folds == 4
        test1, val1, train1 = st.indices("test", 1), st.indices("val", 1), st.indices("train", 1)
        assert set(st.fold[test1]) == {1} and set(st.fold[val1]) == {2} and set(st.fold[train1]) == {0, 3}
        assert len(set(test1) | set(val1) | set(train1)) == len(st)
        mean, _ = st.stats(1)
        ref = np.concatenate([st.track(i) for i in train1], axis=1).mean(axis=1)
        np.testing.assert_allclose(mean, ref, atol=1e-3)
        with h5py.File(out) as h5:
            np.testing.assert_allclose(h5["stats/fold_1/mean"][...], mean, atol=1e-5)
        with pytest.raises(DataError):
            st.indices("train", 9)


@pytest.mark.slow  # great-expectations import
def test_store_validation_catches_inconsistent_metadata(store_path, tmp_path):
    from mgr.data.validation.features import validate_store

    out, _, _ = store_path
    validate_store(out, report_dir=tmp_path / "rep")
    with h5py.File(out, "r+") as h5:
        h5["tracks/genre_idx"][0] = 7  # no such label
    with pytest.raises(DataError, match="genre_idx"):
        validate_store(out, report_dir=tmp_path / "rep")
    with h5py.File(out, "r+") as h5:
        del h5.attrs["content_hash"]
    with pytest.raises(DataError, match="content_hash"):
        validate_store(out, report_dir=None)


@pytest.mark.slow  # great-expectations import
def test_store_validation_numpy_checks_agree_with_great_expectations(store_path, tmp_path):
    """The exact NumPy pre-check and GE's suite give the same verdict and the same unexpected
    values, expectation by expectation, on a good store and on a store with several faults."""
    from mgr.data.validation import _check
    from mgr.data.validation.features import store_checks, validate_store

    out, _, _ = store_path
    good_np = validate_store(out, report_dir=tmp_path / "np")
    good_ge = validate_store(out, report_dir=tmp_path / "ge", engine="ge")
    assert good_np["meta"]["engine"] == "numpy" and "engine" not in good_ge["meta"]
    assert good_np["success"] and good_ge["success"]
    with h5py.File(out, "r+") as h5:
        h5["tracks/genre_idx"][0] = 5  # no such label
        h5["tracks/track_id"][2] = h5["tracks/track_id"][1]  # duplicate id
        h5["tracks/split"][3] = "holdout"  # unknown split
        h5["tracks/offset"][4] = h5["tracks/offset"][3]  # overlapping frame ranges
    with pytest.raises(DataError, match="genre_idx") as ei:
        validate_store(out, report_dir=tmp_path / "bad")  # NumPy fails -> GE's report and message
    msg = str(ei.value)
    assert "\n" not in msg and "expect_column_values_to_be_unique(track_id)" in msg and "'holdout'" in msg
    ge = json.loads((tmp_path / "bad" / "spectrogram_store.json").read_text())
    assert ge["success"] is False and "engine" not in ge["meta"]
    ge_by = {(r["expectation_config"]["type"], r["expectation_config"]["kwargs"].get("column")): r
             for r in ge["results"]}
    cols, checks = store_checks(out)
    n_failed = 0
    for kind, kw in checks:
        ok, mine = _check(kind, kw, cols, len(cols["track_id"]))
        theirs = ge_by[(kind, kw.get("column"))]
        assert ok == theirs["success"], (kind, kw)
        n_failed += not ok
        for k in ("unexpected_count", "partial_unexpected_list", "observed_value"):
            if k in theirs["result"]:
                assert mine[k] == theirs["result"][k], (kind, kw, k)
    assert n_failed >= 4


def test_store_validation_passes_without_importing_great_expectations(store_path, tmp_path):
    import subprocess
    import sys

    out, _, _ = store_path
    code = (
        "import sys, json\n"
        "from mgr.data.validation.features import validate_store\n"
        f"r = validate_store({str(out)!r}, report_dir={str(tmp_path / 'rep')!r})\n"
        "assert r['success'] and r['meta']['engine'] == 'numpy', r\n"
        "assert 'great_expectations' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    rep = json.loads((tmp_path / "rep" / "spectrogram_store.json").read_text())
    assert rep["success"] and rep["suite_name"] == "spectrogram_store"
    assert [r["expectation_config"]["type"] for r in rep["results"]][:3] == [
        "expect_table_row_count_to_equal", "expect_column_values_to_not_be_null", "expect_column_values_to_be_unique"]


def _padded_reference(y, n_fft, hop, reflect):
    """|STFT|^2 the straightforward way (whole padded copy, float64)."""
    half = n_fft // 2
    mode = "reflect" if reflect and y.size > half else "constant"
    yp = np.pad(y.astype(np.float64), (half, half), mode=mode)
    n_frames = 1 + (yp.size - n_fft) // hop
    if yp.size < n_fft:
        yp, n_frames = np.pad(yp, (0, n_fft - yp.size)), 1
    frames = np.stack([yp[k * hop : k * hop + n_fft] for k in range(n_frames)])
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    return np.abs(np.fft.rfft(frames * win, axis=1)) ** 2


@pytest.mark.parametrize("n_fft,hop", [(2048, 512), (512, 256), (128, 64), (64, 48), (255, 100), (16, 40)])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_frames_without_a_padded_copy_equal_the_padded_reference(n_fft, hop, pad_mode):
    """The frame views (edges from small padded copies, interior from the signal itself) give the
    frames of the whole padded signal, for every length around the edge cases and any block size."""
    from mgr.dsp.frontend import _frames_major

    rng = np.random.default_rng(n_fft + hop)
    fe = {"n_fft": n_fft, "hop": hop, "kind": "stft", "n_mels": n_fft // 2 + 1, "pad_mode": pad_mode,
          "scale": "db", "amin": 1e-30, "ref": 1.0, "top_db": None, "floor_db": 0.0}
    lengths = {0, 1, 5, n_fft // 2, n_fft // 2 + 1, n_fft - 1, n_fft, n_fft + 1, 2 * n_fft - 1, 2 * n_fft,
               2 * n_fft + 1, 3 * n_fft + 7, 5 * n_fft + hop - 1, 10 * n_fft + 3}
    for n in sorted(lengths):
        y = rng.standard_normal(n).astype(np.float32)
        ref = _padded_reference(y, n_fft, hop, pad_mode == "reflect")
        got = 10 ** (_frames_major(y, fe) / 10)
        assert got.shape == ref.shape, n
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=1e-3 * ref.max() + 1e-20, err_msg=f"n={n}")
        np.testing.assert_array_equal(_frames_major(y, fe, block=3), _frames_major(y, fe))


def test_missing_inputs_are_user_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_inputs(tmp_path / "tracks.csv", tmp_path / "split.csv")
    with pytest.raises(DataError, match="not found"):
        SpectrogramStore(tmp_path / "nope.h5")


@pytest.mark.parametrize("args", [(22050, 2048, 128, 0.0, 11025.0), (12000, 512, 96, 0.0, 6000.0), (16000, 1024, 40, 20.0, 5000.0)])
def test_mel_filterbank_equals_librosa(args):
    import librosa

    from mgr.features.store import mel_filterbank

    sr, n_fft, n_mels, fmin, fmax = args
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney")
    np.testing.assert_allclose(mel_filterbank(sr, n_fft, n_mels, fmin, fmax), ref, rtol=1e-5, atol=1e-8)


def test_dvc_stage_wiring_keeps_features_independent_of_spectrogram(project_root):
    import yaml

    stages = yaml.safe_load((project_root / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((project_root / "params.yaml").read_text())
    spec, feat = stages["spectrogram"], stages["features"]
    # params by key; `workers` (an execution knob) is tracked by no stage
    # (+ distributed.shard_tracks: one store file or shards, mgr.distributed)
    spec_params = set(spec["params"]) - {"distributed.shard_tracks"}
    assert spec_params == {f"audio.{k}" for k in params["audio"]} | {
        f"spectrogram.{k}" for k in params["spectrogram"] if k != "workers"} or \
        spec_params == {"audio"} | {f"spectrogram.{k}" for k in params["spectrogram"] if k != "workers"}
    assert not any(p.startswith("spectrogram") for p in feat["params"]) and "features.set" in feat["params"]
    assert not any("spectrogram" in d for d in feat["deps"])  # code, params and output of spectrogram
    def covered(f: str, deps: list[str]) -> bool:  # a file, or a directory above it
        return any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)

    for d in ("src/mgr/audio/decode.py", "src/mgr/features/extract.py", "data/split.csv"):
        assert covered(d, spec["deps"]) and covered(d, feat["deps"])
    # the store / table and the shards folder beside it (empty in one-file mode): one output set in both modes
    assert spec["outs"] == ["data/spectrograms.h5", "data/spectrograms.shards"]
    assert feat["outs"] == ["data/features.parquet", "data/features.shards"]
    # every module the stages import from src/mgr is a declared dependency
    assert covered("src/mgr/features/store.py", spec["deps"]) and covered("src/mgr/features/tables.py", feat["deps"])
    # the one front end (mgr.dsp.frontend) is shared: musicnn embeddings in the features table use it
    assert covered("src/mgr/dsp/frontend.py", spec["deps"]) and covered("src/mgr/dsp/frontend.py", feat["deps"])
    mus = stages["spectrogram-musicnn"]
    assert "--preset musicnn" in mus["cmd"] and mus["outs"] == ["data/spectrograms_musicnn.h5", "data/spectrograms_musicnn.shards"]
    assert set(mus["params"]) == {"audio", "distributed.shard_tracks"}  # musicnn's front end is fixed by the weights


@pytest.mark.slow  # librosa's first call JIT-compiles
def test_musicnn_preset_equals_musicnn_front_end():
    """musicnn's front end: librosa melspectrogram at 16 kHz (n_fft 512, hop 256, 96 mels, the
    reflect padding of the librosa it was trained with), then log10(1 + 10000 x), in float32."""
    import librosa

    fe = frontend_config(AudioParams(), SpectrogramParams(preset="musicnn"))
    assert (fe["sr"], fe["n_fft"], fe["hop"], fe["n_mels"], fe["scale"]) == (16000, 512, 256, 96, "log10_1p")
    rng = np.random.default_rng(3)
    t = np.arange(16000 * 4) / 16000
    y = (0.5 * np.sin(2 * np.pi * 220 * t) + 0.2 * rng.standard_normal(t.size)).astype(np.float32)
    S = compute_spectrogram(y, 16000, fe)
    ref = np.log10(1 + 10000 * librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96,
                                                               pad_mode="reflect"))
    assert S.shape == ref.shape == (96, 1 + y.size // 256)
    np.testing.assert_allclose(S, ref, rtol=1e-5, atol=1e-4)
    assert float(compute_spectrogram(np.zeros(4000, np.float32), 16000, fe).max()) == 0.0  # silence is 0, no floor
    # another rate is resampled to 16 kHz first
    assert compute_spectrogram(librosa.resample(y, orig_sr=16000, target_sr=22050), 22050, fe).shape[0] == 96


@pytest.mark.parametrize("spec", [SpectrogramParams(preset="choi"), SpectrogramParams(preset="musicnn"),
                                  SpectrogramParams(kind="stft", n_fft=128, hop_length=64)])
def test_presets_and_stft_kind_build_and_read(tmp_path, spec):
    tracks = _make_dataset(tmp_path, n=3, corrupt=False)
    out = tmp_path / "p.h5"
    build_store(tracks, AUDIO, spec, out, workers=1, progress=False)
    with SpectrogramStore(out) as st:
        fe = st.frontend
        assert st.n_mels == fe["n_mels"] == (96 if spec.preset in ("choi", "musicnn") else 65)
        y = load_audio(tracks.loc[1, "path"], sr=fe["sr"])
        np.testing.assert_allclose(st.track(1), compute_spectrogram(y, fe["sr"], fe), atol=1e-4)
        assert st.track_windows(1, 8, 0.5).shape[1:] == (fe["n_mels"], 8)


@pytest.mark.parametrize("folds", [False, True])
def test_read_inputs_equals_load_inputs_and_builds_the_same_store(tmp_path, folds):
    """The pandas-free reader of the spectrogram stage gives the tracks, order and values of
    load_inputs (tags, unknown tempo, folds, relative paths, an unsplit track) and the same store."""
    from mgr.features.extract import as_track_table, read_inputs

    frame = _make_dataset(tmp_path, folds=folds)
    light = read_inputs(tmp_path / "tracks.csv", tmp_path / "split.csv")
    ref = as_track_table(frame)
    assert set(light.columns) == set(ref.columns) == {"track_id", "path", "genre", "split", "fold", "tempo_bpm", "tags"}
    for c in ref.columns:
        if c == "tempo_bpm":
            np.testing.assert_array_equal(light[c], ref[c])  # NaN == NaN here
        else:
            assert light[c].tolist() == ref[c].tolist(), c
    assert "zz_unsplit" not in light["track_id"].tolist() and light["fold"].tolist() == frame["fold"].tolist()
    a = build_store(frame, AUDIO, SPEC, tmp_path / "a.h5", workers=1, progress=False)
    b = build_store(light, AUDIO, SPEC, tmp_path / "b.h5", workers=1, progress=False)
    assert a["content_hash"] == b["content_hash"] and a["skipped"] == b["skipped"]
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_read_inputs_refuses_what_load_inputs_refuses(tmp_path):
    from mgr.features.extract import read_inputs

    _make_dataset(tmp_path, n=3, corrupt=False)
    (tmp_path / "bad_split.csv").write_text("track_id,split\nt00,holdout\n")
    with pytest.raises(DataError, match="unknown split values"):
        read_inputs(tmp_path / "tracks.csv", tmp_path / "bad_split.csv")
    (tmp_path / "no_genre.csv").write_text("track_id,path\nt00,c00.wav\n")
    with pytest.raises(DataError, match="no 'genre' column"):
        read_inputs(tmp_path / "no_genre.csv", tmp_path / "split.csv")
    with pytest.raises(DataError, match="not found"):
        read_inputs(tmp_path / "missing.csv", tmp_path / "split.csv")


def test_the_spectrogram_stage_imports_no_pandas(tmp_path):
    """What the stage runs (read the inputs, build and validate the store) leaves pandas unimported:
    ~0.3 s of its start-up (issue 13's extraction goal)."""
    import subprocess
    import sys

    _make_dataset(tmp_path, n=4, corrupt=False)
    code = (
        "import sys\n"
        "from mgr.features.extract import read_inputs\n"
        "from mgr.features.store import build_store\n"
        "from mgr.data.validation.features import validate_store\n"
        "from mgr.params import AudioParams, SpectrogramParams\n"
        f"t = read_inputs({str(tmp_path / 'tracks.csv')!r}, {str(tmp_path / 'split.csv')!r})\n"
        f"build_store(t, AudioParams(sample_rate={SR}), SpectrogramParams(n_fft=256, hop_length=128, n_mels=32),\n"
        f"            {str(tmp_path / 's.h5')!r}, workers=1, progress=False)\n"
        f"validate_store({str(tmp_path / 's.h5')!r}, report_dir=None)\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
