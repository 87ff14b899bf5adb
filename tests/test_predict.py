"""mgr.inference.predict: front end equality with the store, streaming windows, DSP tempo against librosa,
every bad input, tampered artifacts, formats. (ONNX export/runtime parity: tests/test_inference.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _classical_helpers import tiny_gtzan57_logreg, tone

from mgr.errors import ArtifactError, AudioError
from mgr.inference.catalog import best_model_name, list_models, resolve_model
from mgr.inference.inputs import check_file, discover_inputs
from mgr.inference.output import InputFailure, Prediction, to_json_line
from mgr.inference.predict import predict_many
from mgr.inference.predictors import load_predictor
from mgr.inference.streaming import (
    StreamingFrontEnd,
    WindowStream,
    dsp_tempo_from_envelope,
    file_spectrogram,
)

FIX = Path(__file__).resolve().parent / "data" / "predict"
TEMPO_MODEL = FIX / "tiny_tempo"  # genre + tempo + tags heads
CNN_MODEL = FIX / "tiny_cnn"  # genre only (DSP tempo)
SR = 22050


@pytest.fixture(autouse=True)
def _test_tones_are_not_music(monkeypatch):
    """The inputs here are beeping test tones, which the no-music gate (tests/test_gate.py) rightly
    refuses; these tests are about other mechanics, so the gate is off unless a test turns it on."""
    from mgr.inference.predictors import Predictor

    monkeypatch.setattr(Predictor, "GATE_DEFAULT", False)


def clip(seconds: float = 3.0, sr: int = SR, bpm: float = 120.0, seed: int = 0) -> np.ndarray:
    """A clicky tone with a clear beat (so the DSP tempo has something to find)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    beat = (np.mod(t, 60.0 / bpm) < 0.03).astype(np.float32)
    y = 0.3 * np.sin(2 * np.pi * 330 * t) * (0.3 + beat) + 0.01 * rng.standard_normal(t.size)
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def deep_cnn():
    return load_predictor(CNN_MODEL, gate=False)  # (test tones: see _test_tones_are_not_music)


@pytest.fixture(scope="module")
def deep_tempo():
    return load_predictor(TEMPO_MODEL, gate=False)


# ------------------------------------------------------------------------- front end
@pytest.mark.parametrize("n_samples", [100, 1023, 1024, 5000, 3 * SR + 17])
@pytest.mark.parametrize("block", [1, 700, 4096, 10**6])
def test_streaming_front_end_equals_compute_spectrogram(n_samples, block):
    from mgr.features.store import compute_spectrogram

    fe = json.loads((TEMPO_MODEL / "model.json").read_text())["frontend"]
    y = clip(n_samples / SR + 0.01)[:n_samples]
    ref = compute_spectrogram(y, SR, fe)
    s = StreamingFrontEnd(fe)
    parts = [s.push(y[i : i + block]) for i in range(0, len(y), block)] + [s.finish()]
    got = np.concatenate(parts).T
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=2e-3)  # dB; numpy.fft vs scipy.fft rounding only


def test_predict_features_equal_the_hdf5_store(tmp_path):
    """The training store and predict compute the same spectrogram for the same file."""
    import pandas as pd

    from mgr.features.extract import load_inputs
    from mgr.features.store import SpectrogramStore, build_store
    from mgr.params import AudioParams, SpectrogramParams

    rows = []
    for i, (secs, sr, ext) in enumerate([(2.0, SR, "wav"), (1.3, SR, "flac"), (2.5, 44100, "flac"), (1.7, 16000, "ogg")]):
        p = tmp_path / f"c{i}.{ext}"
        sf.write(p, clip(secs, sr, seed=i), sr)
        rows.append({"track_id": f"t{i}", "path": p.name, "genre": "ab"[i % 2], "duration_s": secs,
                     "sample_rate": sr, "channels": 1})
    pd.DataFrame(rows).to_csv(tmp_path / "tracks.csv", index=False)
    pd.DataFrame({"track_id": [r["track_id"] for r in rows], "split": ["train", "train", "val", "test"]}).to_csv(
        tmp_path / "split.csv", index=False)
    tracks = load_inputs(tmp_path / "tracks.csv", tmp_path / "split.csv")
    out = tmp_path / "spec.h5"
    build_store(tracks, AudioParams(sample_rate=SR), SpectrogramParams(n_fft=1024, hop_length=512, n_mels=32), out,
                workers=1, progress=False)
    with SpectrogramStore(out) as store:
        for i, tid in enumerate(store.track_ids):
            path = tmp_path / f"c{int(str(tid)[1:])}.{['wav', 'flac', 'flac', 'ogg'][int(str(tid)[1:])]}"
            ref = np.asarray(store.track(i))
            got = file_spectrogram(path, store.frontend)
            assert got.shape == ref.shape, tid
            if sf.info(str(path)).samplerate == SR:  # no resampling: identical up to FFT rounding
                np.testing.assert_allclose(got, ref, atol=2e-3)
            else:  # soxr stream vs one-shot resampling: equal away from the block edges
                assert np.median(np.abs(got - ref)) < 0.05
                assert np.abs(got - ref).mean() < 0.5


@pytest.mark.parametrize(("seconds", "n", "hop"), [(9.0, 2 * SR, SR), (9.0, 3 * SR, 3 * SR), (1.3, 2 * SR, SR), (25.0, 7 * SR, 5 * SR)])
def test_stream_segments_cover_like_windows(tmp_path, seconds, n, hop):
    from mgr.audio.decode import load_audio
    from mgr.audio.windows import windows
    from mgr.inference.streaming import stream_segments

    y = np.random.default_rng(1).standard_normal(int(seconds * SR)).astype(np.float32) * 0.1
    path = _write(tmp_path / "x.wav", y)
    got = list(stream_segments(path, SR, n, hop, block_s=0.7))
    want = list(windows(load_audio(path, sr=SR), n, hop=hop))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-6)


def test_window_stream_equals_window_starts():
    from mgr.audio.windows import window_starts

    rng = np.random.default_rng(0)
    for total, length, hop, block in [(100, 44, 22, 7), (44, 44, 22, 5), (45, 44, 22, 100), (1000, 44, 11, 33),
                                      (30, 44, 22, 4)]:
        frames = rng.standard_normal((total, 3)).astype(np.float32)
        ws = WindowStream(length, hop, 3)
        got = []
        for s in range(0, total, block):
            got += ws.push(frames[s : s + block])
            assert len(ws.buf) <= length + block  # bounded: one window plus one block
        got += ws.finish(total, pad_value=-80.0)
        if total < length:
            assert len(got) == 1 and np.all(got[0][total:] == -80.0)
            continue
        starts = window_starts(total, length, hop)
        assert len(got) == len(starts)
        for w, s in zip(got, starts):
            np.testing.assert_array_equal(w, frames[s : s + length])


# ----------------------------------------------------------------------------- tempo
def test_dsp_tempo_matches_librosa():
    import librosa

    rng = np.random.default_rng(1)
    for sr, hop, n, bpm in [(22050, 512, 1300, 70), (22050, 512, 400, 128), (12000, 256, 2500, 171),
                            (22050, 512, 9000, 95)]:
        period = 60 * sr / hop / bpm
        t = np.arange(n)
        env = (np.maximum(0, np.cos(2 * np.pi * t / period)) ** 8 + 0.2 * rng.random(n)).astype(np.float32)
        want = float(librosa.feature.tempo(onset_envelope=env, sr=sr, hop_length=hop)[0])
        assert dsp_tempo_from_envelope(env, sr, hop) == pytest.approx(want, rel=1e-9)
    assert dsp_tempo_from_envelope(np.zeros(100), 22050, 512) is None


# --------------------------------------------------------------------------- runtime
def test_predictor_runs_the_artifacts_onnx_model(deep_cnn, deep_tempo):
    """Deep predictors hold the evaluate-side artifact (mgr.models.deep.load: ONNX on onnxruntime)."""
    from mgr.models.deep import DeepArtifact

    for p in (deep_cnn, deep_tempo):
        assert p.runtime == "onnx" and isinstance(p.model, DeepArtifact)
        assert p.model.model.path.name == "model.onnx"


# ------------------------------------------------------------------------- formats
@pytest.mark.parametrize("ext", ["wav", "au", "flac", "ogg", "mp3"])
def test_answers_on_every_format(tmp_path, deep_tempo, ext):
    y = clip(3.0)
    path = tmp_path / f"song.{ext}"
    sf.write(path, y, SR)
    res = deep_tempo.predict_file(path)
    assert isinstance(res, Prediction)
    assert res.genre in deep_tempo.labels and len(res.top_k) == 3
    assert res.top_k[0][0] == res.genre
    assert sum(p for _, p in res.top_k) == pytest.approx(1.0, abs=1e-3)  # 3 labels, top-3
    assert 30.0 <= res.tempo_bpm <= 300.0 and res.tempo_source == "model"
    assert {t for t, _ in res.tags} <= {"calm", "drums", "loud"}
    assert [s for _, s in res.tags] == sorted((s for _, s in res.tags), reverse=True)  # scored, best first
    assert all(s >= 0.5 for _, s in res.tags)  # the default --tag-threshold
    if ext in ("wav", "au", "flac"):  # lossless formats give the same answer as the wav
        ref = deep_tempo.predict_file(_write(tmp_path / "ref.wav", y))
        np.testing.assert_allclose([p for _, p in res.top_k], [p for _, p in ref.top_k], atol=2e-3)


def _write(path: Path, y: np.ndarray, sr: int = SR) -> Path:
    sf.write(path, y, sr)
    return path


def test_dsp_tempo_when_the_model_has_no_tempo_head(tmp_path, deep_cnn):
    res = deep_cnn.predict_file(_write(tmp_path / "beat.wav", clip(8.0, bpm=120.0)))
    assert res.tempo_source == "dsp"
    assert res.tempo_bpm == pytest.approx(120.0, rel=0.04) or res.tempo_bpm == pytest.approx(60.0, rel=0.04)
    assert res.tags == []


def test_stereo_and_other_sample_rates(tmp_path, deep_cnn):
    y = clip(3.0, sr=44100)
    res = deep_cnn.predict_file(_write(tmp_path / "st.flac", np.stack([y, 0.5 * y], axis=1), 44100))
    assert isinstance(res, Prediction) and res.duration_s == pytest.approx(3.0, abs=0.05)


def test_musicnn_backbones_run_few_windows_at_a_time(tmp_path):
    """Bounded memory for musicnn front ends (transfer models, built-in taggers): at most
    MUSICNN_BATCH_WINDOWS windows per ONNX run (their activations are ~60 MB per window), the
    same answer as 16 at a time."""
    import mgr.inference.predictors as P

    d = shutil.copytree(CNN_MODEL, tmp_path / "m")
    card = json.loads((d / "model.json").read_text())
    card["frontend"]["preset"] = "musicnn"
    (d / "model.json").write_text(json.dumps(card))
    path = _write(tmp_path / "x.wav", clip(20.0))
    pred = load_predictor(d)
    assert pred.batch_windows == P.MUSICNN_BATCH_WINDOWS == 2
    sizes = []
    run = pred.model.model.session.run
    pred.model.model.session.run = lambda names, feed: sizes.append(len(next(iter(feed.values())))) or run(names, feed)
    got = pred.predict_file(path)
    assert sizes and max(sizes) <= 2
    want = load_predictor(CNN_MODEL).predict_file(path)
    assert got.n_windows == want.n_windows > 16
    assert dict(got.top_k) == pytest.approx(dict(want.top_k), abs=1e-5)


def test_top_k_window_overlap_and_vote(tmp_path):
    path = _write(tmp_path / "long.wav", clip(6.0))
    p1 = load_predictor(CNN_MODEL, top_k=1)
    r1 = p1.predict_file(path)
    assert len(r1.top_k) == 1
    p2 = load_predictor(CNN_MODEL, window_s=3.0, overlap=0.0, aggregate="vote")
    r2 = p2.predict_file(path)
    assert r2.n_windows > 1
    probs = [p for _, p in r2.top_k]
    # vote: probabilities are vote fractions of the 2 three-second segments
    assert all(abs(p * 2 - round(p * 2)) < 1e-6 for p in probs)
    r3 = load_predictor(CNN_MODEL, overlap=0.75).predict_file(path)
    r4 = load_predictor(CNN_MODEL, overlap=0.0).predict_file(path)
    assert r3.n_windows > r4.n_windows
    from mgr.inference.inputs import UsageError

    with pytest.raises(UsageError, match="shorter than the model's window"):
        load_predictor(CNN_MODEL, window_s=0.6)  # valid (>= 0.5 s) but below this model's 1 s window
    with pytest.raises(UsageError, match=r"--window must be a number of seconds in \[0.5, 600\]"):
        load_predictor(CNN_MODEL, window_s=0.2)


# ----------------------------------------------------------------------- bad inputs
def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    good = _write(tmp_path / "good.wav", clip(2.0))
    trunc = tmp_path / "truncated.wav"
    data = _write(tmp_path / "full.wav", clip(2.0)).read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    rnd = tmp_path / "random.wav"
    rnd.write_bytes(np.random.default_rng(0).bytes(4000))
    txt = tmp_path / "notes.txt"
    txt.write_text("not audio at all\n" * 50)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    m4a = tmp_path / "song.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isommp42" + bytes(3000))
    tiny = _write(tmp_path / "tiny.wav", clip(0.2))
    short = _write(tmp_path / "short.wav", clip(0.7))
    nodir = tmp_path / "empty_dir"
    nodir.mkdir()
    (nodir / "readme.md").write_text("no audio here")
    return dict(good=good, truncated=trunc, random=rnd, text=txt, empty=empty, m4a=m4a, tiny=tiny, short=short,
                nodir=nodir, missing=tmp_path / "does_not_exist.wav")


def test_each_bad_input_is_one_clear_failure_and_others_still_run(tmp_path, deep_cnn):
    b = _bad_inputs(tmp_path)
    order = ["missing", "nodir", "empty", "truncated", "random", "text", "m4a", "tiny", "good", "short"]
    results = predict_many(deep_cnn, discover_inputs([b[k] for k in order]))
    by = dict(zip(order, results))
    expect = {
        "missing": "no such file or directory",
        "nodir": "directory has no audio files",
        "empty": "empty file (0 bytes)",
        "truncated": "truncated",
        "random": "not an audio file",
        "text": "not an audio file",
        "m4a": "not an audio file (AAC/ALAC in MP4 expected; ",
        "tiny": "too short",
    }
    for key, words in expect.items():
        r = by[key]
        assert isinstance(r, InputFailure), key
        assert words in r.error, (key, r.error)
        assert "\n" not in r.error and "Traceback" not in r.error
        assert json.loads(to_json_line(r)) == {"path": str(b[key]), "error": r.error}
    assert isinstance(by["good"], Prediction) and not by["good"].warnings
    # shorter than one window but long enough: padded, with a warning
    assert isinstance(by["short"], Prediction)
    assert any("padded" in w for w in by["short"].warnings)


def test_unsupported_codec_inside_a_wav_container(tmp_path):
    import struct

    # a RIFF/WAVE header declaring format tag 0x1234, which neither libsndfile nor FFmpeg decodes
    # (a WMA tag, 0x0161, is decoded by FFmpeg now: tests/test_predict_formats.py)
    fmt = struct.pack("<HHIIHHH", 0x1234, 1, 22050, 4000, 1, 16, 0)
    data = bytes(2000)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    p = tmp_path / "oddinwav.wav"
    p.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioError) as e:
        check_file(p)
    assert str(e.value) == "unsupported codec (WAV format tag 0x1234, unknown; convert to PCM WAV/FLAC)"


def test_directory_discovery_and_recursive(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sub").mkdir()
    _write(tmp_path / "a" / "x.wav", clip(1.0))
    _write(tmp_path / "a" / "sub" / "y.flac", clip(1.0))
    (tmp_path / "a" / "notes.txt").write_text("x")
    flat = discover_inputs([tmp_path / "a"])
    assert [p.name for p in flat] == ["x.wav"]
    deep = discover_inputs([tmp_path / "a"], recursive=True)
    assert sorted(p.name for p in deep) == ["x.wav", "y.flac"]
    (tmp_path / "b" / "c").mkdir(parents=True)
    _write(tmp_path / "b" / "c" / "z.wav", clip(1.0))
    (fail,) = discover_inputs([tmp_path / "b"])
    assert isinstance(fail, InputFailure) and "--recursive" in fail.error


@pytest.mark.slow
def test_long_file_streams_with_bounded_memory(tmp_path):
    """A 10-minute file peaks at about the memory of a 20-second one (NumPy allocations traced),
    far below its whole-file audio (50 MB) and spectrogram; the process's peak RSS is printed."""
    import tracemalloc

    path = tmp_path / "long.flac"
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, format="FLAC") as f:
        for i in range(60):  # 10 minutes in 10 s pieces
            f.write(clip(10.0, seed=i))
    short = _write(tmp_path / "short.wav", clip(20.0))
    pred = load_predictor(CNN_MODEL)
    peaks = {}
    for name, p in (("short", short), ("long", path)):
        tracemalloc.start()
        tracemalloc.reset_peak()
        res = pred.predict_file(p)
        peaks[name] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    assert res.duration_s == pytest.approx(600.0, abs=0.1) and res.n_windows > 1000
    whole_audio_mb = 600 * SR * 4 / 2**20
    print(f"traced peak: 20 s file {peaks['short']:.1f} MB, 10 min file {peaks['long']:.1f} MB "
          f"(whole audio alone would be {whole_audio_mb:.0f} MB)")
    assert peaks["long"] < 1.5 * peaks["short"] + 5.0
    assert peaks["long"] < whole_audio_mb  # less than holding the decoded audio alone


# ------------------------------------------------------------------- artifacts
def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


class _Boom:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_in_place_of_the_model_is_refused_without_running_it(tmp_path):
    import pickle

    for fn in ("model.onnx", "model.keras"):
        d = _copy_model(CNN_MODEL, tmp_path / f"evil_{fn}")
        marker = tmp_path / "PWNED"
        (d / fn).write_bytes(pickle.dumps(_Boom(str(marker))))
        with pytest.raises(ArtifactError, match="does not match the sha256 in its model card"):
            load_predictor(d)
        assert not marker.exists()


def test_artifact_without_onnx_or_with_a_changed_model_is_refused(tmp_path):
    d = _copy_model(CNN_MODEL, tmp_path / "extra")
    with zipfile.ZipFile(d / "model.keras", "a") as zf:  # the native file changed: artifact refused
        zf.writestr("payload.py", "import os")
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        load_predictor(d)

    d1 = _copy_model(CNN_MODEL, tmp_path / "old")  # a card from before model.onnx existed
    card = json.loads((d1 / "model.json").read_text())
    (d1 / "model.json").write_text(json.dumps({k: v for k, v in card.items() if not k.startswith("onnx_")}))
    with pytest.raises(ArtifactError, match="names no ONNX model.*retrain"):
        load_predictor(d1)


def test_broken_cards_are_refused(tmp_path):
    d2 = _copy_model(CNN_MODEL, tmp_path / "card")
    card = json.loads((d2 / "model.json").read_text())
    card["kind"] = "pytorch"
    (d2 / "model.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="not an mgr model card"):
        load_predictor(d2)
    (d2 / "model.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_predictor(d2)
    (d2 / "model.json").unlink()
    with pytest.raises(ArtifactError, match="no model.json"):
        load_predictor(d2)

    d3 = _copy_model(CNN_MODEL, tmp_path / "labels")
    card = json.loads((d3 / "model.json").read_text())
    card["outputs"] = ["genre", "tempo"]
    (d3 / "model.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="do not match the card"):
        load_predictor(d3)


# ----------------------------------------------------------------- model choice
def test_resolve_model_and_best_from_summary(tmp_path):
    (tmp_path / "models").mkdir()
    _copy_model(CNN_MODEL, tmp_path / "models" / "cnn2d")
    _copy_model(TEMPO_MODEL, tmp_path / "models" / "tempo_genre")
    (tmp_path / "models" / "broken").mkdir()
    assert resolve_model("cnn2d", tmp_path) == tmp_path / "models" / "cnn2d"
    assert resolve_model(str(TEMPO_MODEL), tmp_path) == TEMPO_MODEL
    with pytest.raises(ArtifactError, match="available: cnn2d, tempo_genre"):
        resolve_model("svm", tmp_path)
    with pytest.raises(ArtifactError, match="no leaderboard"):
        resolve_model(None, tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "summary.json").write_text(json.dumps(
        {"models": {"cnn2d": {"accuracy": 0.61}, "tempo_genre": {"accuracy": 0.72}}}))
    assert best_model_name(tmp_path) == "tempo_genre"
    assert resolve_model(None, tmp_path) == tmp_path / "models" / "tempo_genre"
    (tmp_path / "metrics" / "cnn2d.json").write_text(json.dumps({"track": {"accuracy": 0.61, "macro_f1": 0.5}}))
    recs = {r["name"]: r for r in list_models(tmp_path)}
    assert recs["cnn2d"]["kind"] == "deep" and recs["cnn2d"]["test"] == {"accuracy": 0.61, "macro_f1": 0.5}
    assert recs["tempo_genre"]["test"] is None
    assert "error" in recs["broken"]


def test_best_model_from_leaderboard_markdown(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "leaderboard.md").write_text(
        "| model | kind | accuracy | macro-F1 |\n|---|---|---|---|\n| svm | classical | 0.700 | 0.69 |\n"
        "| cnn2d | deep | 0.810 | 0.80 |\n| logreg | classical | 0.650 | 0.60 |\n")
    assert best_model_name(tmp_path) == "cnn2d"


# -------------------------------------------------------------------- cold start
def test_deep_predict_imports_no_heavy_library(tmp_path):
    """The deep predict path (ONNX on onnxruntime) never imports TensorFlow, Keras, librosa,
    scipy or sklearn."""
    path = _write(tmp_path / "a.wav", clip(2.0))
    code = (
        "import sys\nfrom pathlib import Path\nfrom mgr.inference.predict import load_predictor\n"
        f"p = load_predictor(Path({str(CNN_MODEL)!r}))\n"
        f"r = p.predict_file(Path({str(path)!r}))\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'librosa', 'scipy', 'sklearn', 'numba', 'pandas') if m in sys.modules]\n"
        "print(p.runtime, r.tempo_source, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "onnx dsp []"


# ----------------------------------------------------------------------- classical
def test_classical_long_file_streamed_features_give_the_per_segment_answer(tmp_path):
    """A long file with a gtzan57 model: segments on the 512-sample frame grid, their STFT / HPSS
    shared (mgr.dsp.gtzan_stream); the answer is that of the per-segment features of the same
    segments (limits shrunk so the test stays fast)."""
    import pandas as pd

    import mgr.inference.predictors as P
    from mgr.audio.decode import load_audio
    from mgr.features.tables import extract_features
    from mgr.models import classical_artifact

    tiny_gtzan57_logreg(tmp_path / "logreg")
    y = np.concatenate([tone(8.0, 910.0, 140.0), tone(12.0, 160.0, 90.0)])
    path = _write(tmp_path / "long.wav", y)
    orig = (P.CLASSICAL_WHOLE_MAX_S, P.CLASSICAL_SEGMENT_S)
    P.CLASSICAL_WHOLE_MAX_S, P.CLASSICAL_SEGMENT_S = 8.0, 7.0
    try:
        res = load_predictor(tmp_path / "logreg", top_k=2, timeline=True).predict_file(path)
    finally:
        P.CLASSICAL_WHOLE_MAX_S, P.CLASSICAL_SEGMENT_S = orig
    yd = load_audio(path, sr=SR)
    n, hop = 7 * SR, 150 * 512  # the hop (3.5 s) rounded down to the frame grid
    starts = [0, hop, 2 * hop, 3 * hop, len(yd) - n]
    assert [sg.start_s for sg in res.segments] == [round(s / SR, 3) for s in starts]
    art = classical_artifact.load(tmp_path / "logreg")
    seg_p = art.predict_proba(pd.DataFrame([extract_features(yd[s : s + n], SR, "gtzan57") for s in starts]))
    for sg, p in zip(res.segments, seg_p):
        assert dict(sg.top_k) == pytest.approx({lab: p[i] for i, lab in enumerate(art.card["labels"])}, abs=1e-5)
    assert dict(res.top_k) == pytest.approx(dict(zip(art.card["labels"], seg_p.mean(axis=0))), abs=1e-5)


@pytest.mark.slow
def test_classical_artifact_end_to_end(tmp_path):
    """A logreg trained on gtzan57 features answers on wav/au/flac/ogg/mp3, with the DSP tempo
    from its own `tempo` feature, and the same answer as the features table route."""
    import pandas as pd

    from mgr.features.tables import extract_features
    from mgr.models import classical, classical_artifact
    from mgr.params import MlParams

    rows = []
    for g, (f0, bpm) in {"low": (150.0, 90.0), "high": (900.0, 140.0)}.items():
        for i in range(3):
            t = np.arange(int(2.5 * SR)) / SR
            y = (0.3 * np.sin(2 * np.pi * (f0 + 20 * i) * t) * (0.3 + (np.mod(t, 60 / bpm) < 0.03))).astype(np.float32)
            rows.append({"track_id": f"{g}{i}", "split": "train", "genre": g, **extract_features(y, SR, "gtzan57")})
    o = classical.train("logreg", pd.DataFrame(rows), MlParams(), feature_set="gtzan57")
    classical_artifact.save(o.model, tmp_path / "models" / "logreg", o.card)
    pred = load_predictor(tmp_path / "models" / "logreg", top_k=2)
    assert pred.kind == "classical"
    t = np.arange(int(3.0 * SR)) / SR
    y = (0.3 * np.sin(2 * np.pi * 910 * t) * (0.3 + (np.mod(t, 60 / 140) < 0.03))).astype(np.float32)
    from mgr.audio.decode import load_audio

    art = classical_artifact.load(tmp_path / "models" / "logreg")
    for ext in ("wav", "au", "flac", "ogg", "mp3"):
        path = _write(tmp_path / f"q.{ext}", y)
        res = pred.predict_file(path)
        assert res.genre == "high", ext
        assert res.tempo_source == "dsp" and 60 < res.tempo_bpm < 300
        if ext == "wav":  # the same numbers as the features-table route on the decoded file
            want = art.predict_proba(pd.DataFrame([extract_features(load_audio(path, sr=SR), SR, "gtzan57")]))[0]
            assert dict(res.top_k)["high"] == pytest.approx(want[pred.labels.index("high")], abs=1e-6)
    # --window: segments aggregated
    seg = load_predictor(tmp_path / "models" / "logreg", window_s=1.0, overlap=0.0).predict_file(tmp_path / "q.wav")
    assert seg.n_windows == 3 and seg.genre == "high"
    # a file longer than CLASSICAL_WHOLE_MAX_S: streamed segments, the same numbers as the
    # segments of the decoded file (limits shrunk so the test stays fast)
    import mgr.inference.predictors as P

    long_y = np.concatenate([y] * 3)  # 9 s
    long_path = _write(tmp_path / "long.wav", long_y)
    orig = (P.CLASSICAL_WHOLE_MAX_S, P.CLASSICAL_SEGMENT_S)
    P.CLASSICAL_WHOLE_MAX_S, P.CLASSICAL_SEGMENT_S = 4.0, 2.0
    try:
        res = load_predictor(tmp_path / "models" / "logreg", top_k=2).predict_file(long_path)
    finally:
        P.CLASSICAL_WHOLE_MAX_S, P.CLASSICAL_SEGMENT_S = orig
    from mgr.audio.windows import windows

    segs = list(windows(load_audio(long_path, sr=SR), 2 * SR, overlap=0.5))
    assert res.n_windows == len(segs) == 8
    want = art.predict_proba(pd.DataFrame([extract_features(s_, SR, "gtzan57") for s_ in segs])).mean(axis=0)
    assert dict(res.top_k)["high"] == pytest.approx(want[pred.labels.index("high")], abs=1e-6)
    # tampered model file: refused by the card's sha256, never unpickled
    (tmp_path / "models" / "logreg" / "model.skops").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        load_predictor(tmp_path / "models" / "logreg")


def test_vote_aggregation_is_evaluates_vote_rule():
    """--aggregate vote ranks labels with mgr.evaluation.metrics.vote (most votes, then higher mean
    probability, then lower index); the reported probabilities are the vote fractions."""
    from mgr.evaluation.metrics import vote
    from mgr.inference.predictors import Predictor

    p = Predictor(aggregate="vote", top_k=4)
    p.labels = ["a", "b", "c", "d"]
    seg = np.array([[0.5, 0.1, 0.4, 0.0],   # votes a
                    [0.1, 0.2, 0.6, 0.1],   # votes c
                    [0.4, 0.0, 0.3, 0.3],   # votes a
                    [0.0, 0.3, 0.7, 0.0]])  # votes c: a and c tie on votes, c has the higher mean
    top = p._top(*p._combine(seg))
    pred, scores = vote(seg)
    assert [lab for lab, _ in top] == [p.labels[i] for i in np.argsort(-scores, kind="stable")]
    assert top[0][0] == p.labels[pred] == "c"
    assert dict(top) == {"c": 0.5, "a": 0.5, "b": 0.0, "d": 0.0}
    # mean: the mean probability
    m = Predictor(aggregate="mean", top_k=1)
    m.labels = p.labels
    assert m._top(*m._combine(seg)) == [("c", round(float(seg[:, 2].mean()), 6))]
