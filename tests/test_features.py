"""mgr.features.tables: feature values against theory and librosa, the table builder, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mgr.audio.decode import load_audio
from mgr.errors import DataError
from mgr.features.extract import load_inputs
from mgr.features.tables import (
    build_feature_table,
    extract_features,
    feature_names,
    read_feature_table,
)
from mgr.params import AudioParams

SR = 22050


def test_feature_names_follow_public_conventions():
    g = feature_names("gtzan57")
    assert len(g) == 57 == len(set(g))
    assert g[:4] == ["chroma_stft_mean", "chroma_stft_var", "rms_mean", "rms_var"]
    assert g[14:19] == ["perceptr_mean", "perceptr_var", "tempo", "mfcc1_mean", "mfcc1_var"]
    assert g[-1] == "mfcc20_var"
    f = feature_names("fma518")
    assert len(f) == 518 == len(set(f))
    assert "mfcc_mean_01" in f and "spectral_contrast_kurtosis_07" in f and "rmse_std_01" in f
    assert f[0] == "chroma_cens_kurtosis_01" and f == sorted(f)  # FMA's sorted MultiIndex, flattened


@pytest.mark.slow  # HPSS + tempo: librosa JIT-compiles on first use (10-25 s)
def test_pure_tone_centroid_and_click_track_tempo():
    t = np.arange(SR * 4) / SR
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    f = extract_features(tone, SR, "gtzan57")
    assert f["spectral_centroid_mean"] == pytest.approx(1000, rel=0.03)
    assert f["rolloff_mean"] == pytest.approx(1000, rel=0.05)
    assert f["zero_crossing_rate_mean"] == pytest.approx(2 * 1000 / SR, rel=0.05)  # two crossings a period
    assert f["rms_mean"] == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    import librosa

    click = librosa.clicks(times=np.arange(0, 8, 0.5), sr=SR, length=SR * 8).astype(np.float32)  # 120 BPM
    c = extract_features(click, SR, "gtzan57")
    assert c["tempo"] == pytest.approx(120, rel=0.04)  # Acc1 tolerance
    assert c["perceptr_var"] > c["harmony_var"]  # clicks are percussive


@pytest.mark.parametrize("fmt", ["flac", "ogg"])
def test_real_format_clip_matches_librosa_directly(tmp_path, fmt):
    import librosa

    rng = np.random.default_rng(0)
    t = np.arange(int(44100 * 3)) / 44100
    y = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.2 * np.sin(2 * np.pi * 1234 * t) + 0.05 * rng.standard_normal(t.size)
    path = tmp_path / f"clip.{fmt}"
    sf.write(path, np.stack([y, y * 0.8], axis=1).astype(np.float32), 44100)
    ours = extract_features(load_audio(path, sr=SR), SR, "gtzan57")
    x, sr = librosa.load(path, sr=SR)  # librosa's own decode + resample
    ref = {
        "spectral_centroid_mean": librosa.feature.spectral_centroid(y=x, sr=sr).mean(),
        "spectral_bandwidth_mean": librosa.feature.spectral_bandwidth(y=x, sr=sr).mean(),
        "rolloff_mean": librosa.feature.spectral_rolloff(y=x, sr=sr).mean(),
        "rms_mean": librosa.feature.rms(y=x).mean(),
        "zero_crossing_rate_mean": librosa.feature.zero_crossing_rate(x).mean(),
        "chroma_stft_mean": librosa.feature.chroma_stft(y=x, sr=sr).mean(),
        "mfcc1_mean": librosa.feature.mfcc(y=x, sr=sr, n_mfcc=20)[0].mean(),
        "mfcc5_var": librosa.feature.mfcc(y=x, sr=sr, n_mfcc=20)[4].var(),
    }
    for k, v in ref.items():
        assert ours[k] == pytest.approx(float(v), rel=0.01, abs=1e-4), k


@pytest.mark.slow  # CQT + numba JIT on first use
def test_fma518_values_are_finite_and_sensible(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(SR * 3) / SR
    y = (0.4 * np.sin(2 * np.pi * 440 * t) + 1e-5 * rng.standard_normal(t.size)).astype(np.float32)
    f = extract_features(y, SR, "fma518")
    assert list(f) == feature_names("fma518")
    v = np.array(list(f.values()))
    assert np.isfinite(v).all()
    assert f["spectral_centroid_median_01"] == pytest.approx(440, rel=0.15)
    assert 0 <= f["chroma_stft_min_01"] <= f["chroma_stft_median_01"] <= f["chroma_stft_max_01"] <= 1
    # silence has undefined higher moments: reported as 0, never NaN
    assert np.isfinite(list(extract_features(np.zeros(SR, np.float32), SR, "fma518").values())).all()


def _dataset(tmp_path, n=6, folds=False):
    rows, split = [], []
    for i in range(n):
        t = np.arange(int(SR * 1.5)) / SR
        y = 0.3 * np.sin(2 * np.pi * (220 * (i + 1)) * t)
        p = tmp_path / f"c{i}.wav"
        sf.write(p, y.astype(np.float32), SR)
        rows.append({"track_id": f"t{i}", "path": p.name, "genre": "ab"[i % 2], "duration_s": 1.5,
                     "sample_rate": SR, "channels": 1})
        split.append({"track_id": f"t{i}", "split": ["train", "val", "test"][i % 3], **({"fold": i % 3} if folds else {})})
    (tmp_path / "bad.ogg").write_bytes(b"OggS" + b"\x01junk" * 30)
    rows.append({"track_id": "t_bad", "path": "bad.ogg", "genre": "a", "duration_s": 1.0, "sample_rate": SR,
                 "channels": 1})
    split.append({"track_id": "t_bad", "split": "train", **({"fold": 0} if folds else {})})
    pd.DataFrame(rows).to_csv(tmp_path / "tracks.csv", index=False)
    pd.DataFrame(split).to_csv(tmp_path / "split.csv", index=False)
    return load_inputs(tmp_path / "tracks.csv", tmp_path / "split.csv")


@pytest.mark.parametrize("suffix,folds", [(".parquet", False), (".csv", True)])
def test_feature_table_one_row_per_track_and_skips_bad_files(tmp_path, suffix, folds):
    tracks = _dataset(tmp_path, folds=folds)
    out = tmp_path / f"features{suffix}"
    rep = build_feature_table(tracks, AudioParams(sample_rate=SR), "gtzan57", out, workers=2, progress=False,
                              batch_rows=2)
    assert rep["n_tracks"] == 6 and rep["n_skipped"] == 1
    assert rep["skipped"][0]["track_id"] == "t_bad" and "bad.ogg" in rep["skipped"][0]["reason"]
    df = read_feature_table(out)
    lead = ["track_id", "split", "genre"] + (["fold"] if folds else [])
    assert list(df.columns) == lead + feature_names("gtzan57")
    assert df["track_id"].tolist() == [f"t{i}" for i in range(6)]  # input order, whatever the completion order
    assert df["split"].tolist() == ["train", "val", "test"] * 2
    # each row is that track's features (centroid follows the tone)
    np.testing.assert_allclose(df["spectral_centroid_mean"], [220 * (i + 1) for i in range(6)], rtol=0.05)
    one = extract_features(load_audio(tmp_path / "c3.wav", sr=SR), SR, "gtzan57")
    assert df.loc[3, "mfcc2_mean"] == pytest.approx(one["mfcc2_mean"], rel=1e-6)
    assert not list(tmp_path.glob(".features*.tmp-*"))  # no temporary left behind


@pytest.mark.slow  # great-expectations import
def test_feature_table_validation(tmp_path):
    from mgr.data.validation.features import validate_feature_table

    tracks = _dataset(tmp_path, n=3)
    out = tmp_path / "f.parquet"
    build_feature_table(tracks, AudioParams(sample_rate=SR), "gtzan57", out, workers=1, progress=False)
    df = read_feature_table(out)
    names = feature_names("gtzan57")
    validate_feature_table(df, names, sample_rate=SR, expected_tracks=tracks["track_id"].tolist(), report_dir=tmp_path)
    bad = df.copy()
    bad.loc[0, "mfcc3_mean"] = np.inf
    with pytest.raises(DataError, match="mfcc3_mean"):
        validate_feature_table(bad, names, sample_rate=SR, report_dir=None)
    dup = pd.concat([df, df.iloc[:1]], ignore_index=True)
    with pytest.raises(DataError, match="unique"):
        validate_feature_table(dup, names, sample_rate=SR, report_dir=None)
    odd = df.copy()
    odd.loc[1, "spectral_centroid_mean"] = SR  # above Nyquist: implausible
    with pytest.raises(DataError, match="spectral_centroid_mean"):
        validate_feature_table(odd, names, sample_rate=SR, report_dir=None)


def test_unknown_feature_set_is_a_params_error():
    from mgr.errors import ParamsError

    with pytest.raises(ParamsError, match="features.set"):
        feature_names("mfcc13")


def test_feature_sets_combine_with_plus():
    from mgr.errors import ParamsError
    from mgr.features.tables import feature_set_of

    both = feature_names("gtzan57+musicnn_msd")
    assert both == feature_names("gtzan57") + feature_names("musicnn_msd")
    assert len(both) == 57 + 400 and len(set(both)) == len(both)
    assert feature_names("musicnn_mtt")[0] == "musicnn_mtt_mean_000" and feature_names("musicnn_mtt")[-1] == "musicnn_mtt_max_199"
    assert {feature_set_of(c) for c in both} == {"gtzan57", "musicnn_msd"}
    for bad in ("gtzan57+mfcc13", "gtzan57+gtzan57", "+"):
        with pytest.raises(ParamsError, match="features.set"):
            feature_names(bad)


@pytest.mark.slow  # builds the musicnn backbone once (TensorFlow, in a child process)
def test_musicnn_embedding_features_in_the_table(tmp_path):
    """Pretrained embeddings as a feature set: 400 finite columns per track, run through the
    exported ONNX backbone in forked workers, different tracks giving different embeddings, next to
    the handcrafted columns when combined."""
    tracks = _dataset(tmp_path)
    out = tmp_path / "f.parquet"
    rep = build_feature_table(tracks, AudioParams(sample_rate=SR), "gtzan57+musicnn_msd", out, workers=2,
                              progress=False)
    assert rep["n_tracks"] == 6 and rep["n_features"] == 457
    df = read_feature_table(out)
    emb = df[feature_names("musicnn_msd")].to_numpy()
    assert np.isfinite(emb).all() and emb.std(axis=0).max() > 0.01
    assert np.abs(emb[0] - emb[1]).max() > 0.01  # 220 Hz vs 440 Hz tones differ
    one = extract_features(load_audio(tmp_path / "c2.wav", sr=SR), SR, "musicnn_msd")
    np.testing.assert_allclose(emb[2], list(one.values()), rtol=1e-4, atol=1e-5)  # workers == one process


def test_classical_models_on_the_embedding_and_the_feature_sets_needed():
    from mgr.errors import ParamsError
    from mgr.params import (
        classical_models,
        feature_sets_needed,
        ml_instance,
        params_from_dict,
    )

    assert ml_instance("svm", "gtzan57") == ("svm", "gtzan57")
    assert ml_instance("logreg-musicnn_mtt", "gtzan57") == ("logreg", "musicnn_mtt")
    with pytest.raises(ParamsError, match="knn"):
        ml_instance("knn-gtzan57")
    p = params_from_dict({"features": {"set": "fma518+gtzan57", "embedding": "musicnn_mtt"},
                          "ml": {"models": ["svm"], "embedding_models": ["svm", "xgboost"]}})
    assert classical_models(p) == ["svm", "svm-musicnn_mtt", "xgboost-musicnn_mtt", "fusion"]
    # one table holds them all: the embedding candidates add the taggram
    assert feature_sets_needed(p) == ["fma518", "gtzan57", "musicnn_mtt", "musicnn_mtt_tags"]
    none = params_from_dict({"ml": {"embedding_models": [], "stacked_models": []}})
    assert classical_models(none) == none.ml.models and feature_sets_needed(none) == ["gtzan57"]
    for doc, needle in (({"ml": {"embedding_models": ["knn"]}}, "ml.embedding_models"),
                        ({"features": {"embedding": "gtzan57"}}, "features.embedding"),
                        ({"ml": {"embedding_models": ["svm", "svm"]}}, "more than once")):
        with pytest.raises(ParamsError, match=needle):
            params_from_dict(doc)
