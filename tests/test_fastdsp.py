"""mgr.dsp.kernels: the NumPy gtzan57 pieces equal librosa (0.11) on real-format clips."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from mgr.audio.decode import load_audio
from mgr.dsp import kernels as fd

SR = 22050


def _clip(tmp_path, fmt: str, seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """A two-tone + gated tone + noise clip written as ``fmt`` at 44.1 kHz stereo, decoded by mgr."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(44100 * seconds)) / 44100
    y = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.2 * np.sin(2 * np.pi * 1234 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
         + 0.05 * rng.standard_normal(t.size))
    path = tmp_path / f"clip.{fmt}"
    sf.write(path, np.stack([y, 0.8 * y], axis=1).astype(np.float32), 44100)
    return load_audio(path, sr=SR)


def _librosa_gtzan57(y: np.ndarray, sr: int) -> dict[str, float]:
    """The previous, librosa-based implementation of mgr.features.tables' gtzan57 (reference)."""
    import librosa

    out: dict[str, float] = {}
    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    power = S**2

    def mv(name, x):
        out[f"{name}_mean"] = float(np.mean(x))
        out[f"{name}_var"] = float(np.var(x))

    mv("chroma_stft", librosa.feature.chroma_stft(S=power, sr=sr))
    mv("rms", librosa.feature.rms(y=y))
    mv("spectral_centroid", librosa.feature.spectral_centroid(S=S, sr=sr))
    mv("spectral_bandwidth", librosa.feature.spectral_bandwidth(S=S, sr=sr))
    mv("rolloff", librosa.feature.spectral_rolloff(S=S, sr=sr))
    mv("zero_crossing_rate", librosa.feature.zero_crossing_rate(y))
    harm, perc = librosa.effects.hpss(y)
    mv("harmony", harm)
    mv("perceptr", perc)
    onset = librosa.onset.onset_strength(S=librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=sr)), sr=sr)
    out["tempo"] = float(librosa.feature.tempo(onset_envelope=onset, sr=sr)[0])
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    for i in range(20):
        out[f"mfcc{i + 1}_mean"] = float(np.mean(mfcc[i]))
        out[f"mfcc{i + 1}_var"] = float(np.var(mfcc[i]))
    return out


def test_stft_spectral_shape_features_and_mfcc_match_librosa(tmp_path):
    import librosa

    y = _clip(tmp_path, "wav", 3.0)
    D = fd.stft(y)
    ref = librosa.stft(y, n_fft=2048, hop_length=512)
    assert D.dtype == np.complex64 and D.shape == ref.shape
    np.testing.assert_allclose(D, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    S = np.abs(ref)
    np.testing.assert_allclose(fd.spectral_centroid(S, SR), librosa.feature.spectral_centroid(S=S, sr=SR)[0], rtol=1e-6)
    np.testing.assert_allclose(fd.spectral_bandwidth(S, SR), librosa.feature.spectral_bandwidth(S=S, sr=SR)[0],
                               rtol=1e-6)
    np.testing.assert_array_equal(fd.spectral_rolloff(S, SR), librosa.feature.spectral_rolloff(S=S, sr=SR)[0])
    np.testing.assert_allclose(fd.mfcc_from_power(S**2, SR), librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20),
                               rtol=1e-4, atol=2e-3)  # dB values up to ~1e3: float32 rounding
    for tuning in (0.0, 0.13, -0.37):
        np.testing.assert_allclose(fd.chroma_filterbank(SR, 2048, tuning=tuning),
                                   librosa.filters.chroma(sr=SR, n_fft=2048, tuning=tuning), rtol=1e-6, atol=1e-7)
    # silence: librosa leaves all-zero frames at 0 (no NaN)
    Z = np.zeros((1025, 5), np.float32)
    assert np.array_equal(fd.spectral_centroid(Z, SR), librosa.feature.spectral_centroid(S=Z, sr=SR)[0])


def test_median_filter_is_scipys_exactly():
    from scipy.ndimage import median_filter

    rng = np.random.default_rng(1)
    X = np.abs(rng.standard_normal((70, 90))).astype(np.float32)
    X[5:9, :] = 0.0  # ties
    for axis, size in ((1, (1, 31)), (0, (31, 1)), (1, (1, 5))):
        k = max(size)
        assert np.array_equal(fd.median_filter_1d(X, k, axis=axis), median_filter(X, size=size, mode="reflect"))
    for n in (1, 2, 3, 5, 16):  # shorter than the window: repeated reflection, as scipy
        assert np.array_equal(fd.median_filter_1d(X[:4, :n], 31, axis=1), median_filter(X[:4, :n], size=(1, 31), mode="reflect"))


def test_istft_inverts_stft_and_matches_librosa():
    import librosa

    rng = np.random.default_rng(2)
    y = rng.standard_normal(SR).astype(np.float32)
    D = fd.stft(y)
    back = fd.istft(D, len(y))
    np.testing.assert_allclose(back, y, atol=1e-5)
    np.testing.assert_allclose(back, librosa.istft(D, n_fft=2048, hop_length=512, length=len(y)), atol=1e-6)


@pytest.mark.slow  # librosa JIT-compiles piptrack / zero_crossings / tempo on first use
@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_gtzan57_equals_the_librosa_implementation(tmp_path, fmt):
    y = _clip(tmp_path, fmt, 6.0, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _librosa_gtzan57(y, SR)
    ours = fd.gtzan57(y, SR)
    assert set(ours) == set(ref)
    for k, v in ref.items():
        # all 57 values within 1e-5 relative (float32 rounding of sums); tempo and tuning exact
        assert ours[k] == pytest.approx(v, rel=1e-5, abs=1e-9), k
    assert ours["tempo"] == ref["tempo"]


@pytest.mark.slow
def test_tuning_rms_zcr_tempo_match_librosa_on_edge_signals(tmp_path):
    import librosa

    t = np.arange(SR * 3) / SR
    detuned = (0.5 * np.sin(2 * np.pi * 440 * 2 ** (0.3 / 12) * t)).astype(np.float32)  # 30 cents sharp
    P = np.abs(fd.stft(detuned)) ** 2
    assert fd.estimate_tuning(P, SR) == pytest.approx(librosa.estimate_tuning(S=P, sr=SR), abs=1e-12)
    assert fd.estimate_tuning(P, SR) == pytest.approx(0.3, abs=0.05)  # theory, within the bin resolution
    clicks = librosa.clicks(times=np.arange(0, 3, 0.4), sr=SR, length=SR * 3).astype(np.float32)
    quiet = np.zeros(SR, np.float32)
    quiet[100::7] = 1e-11  # below zero_crossings' threshold
    for y in (detuned, clicks, quiet, -clicks):
        np.testing.assert_allclose(fd.rms(y), librosa.feature.rms(y=y)[0], rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(fd.zero_crossing_rate(y), librosa.feature.zero_crossing_rate(y)[0], atol=1e-12)
    env = librosa.onset.onset_strength(y=clicks, sr=SR)
    assert fd.tempo_from_envelope(env, SR) == librosa.feature.tempo(onset_envelope=env, sr=SR)[0]
    flat = np.zeros(200, np.float32)
    assert fd.tempo_from_envelope(flat, SR) is None
    assert fd.tempo_from_envelope(flat, SR, none_if_flat=False) == librosa.feature.tempo(onset_envelope=flat, sr=SR)[0]
    # silence through the whole feature set: finite, as librosa
    f = fd.gtzan57(np.zeros(SR, np.float32), SR)
    assert np.isfinite(list(f.values())).all()


@pytest.mark.parametrize("sr", [22050, 16000])
def test_tempo_of_a_signal_equals_librosa(sr):
    """fastdsp.tempo(y, sr) is what the evaluate stage's DSP baseline and predict report as
    librosa.feature.tempo(y=y, sr=sr)."""
    import librosa

    rng = np.random.default_rng(3)
    t = np.arange(int(8 * sr)) / sr
    clicks = (np.mod(t, 60 / 132) < 0.01).astype(np.float32)
    for y in (clicks + 0.01 * rng.standard_normal(t.size).astype(np.float32),
              0.1 * rng.standard_normal(t.size).astype(np.float32)):
        want = float(librosa.feature.tempo(y=y, sr=sr)[0])
        assert fd.tempo(y, sr) == pytest.approx(want, rel=1e-6)



def _gtzan_close(got: dict, want: dict) -> None:
    """Streamed vs per-segment gtzan57: rtol 1e-4, plus atol 1e-7 for the means of the HPSS
    signals (zero-mean audio: their means are ~1e-5 and differ by float32 summation order)."""
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-7), k


def test_streamed_gtzan57_equals_the_per_segment_features():
    """Overlapping segments on the frame grid: the STFT and HPSS computed once over the stream
    (mgr.dsp.gtzan_stream) give each segment the features kernels.gtzan57 gives it alone; the
    end-aligned last segment and the cover are those of stream_segments."""
    from mgr.dsp.gtzan_stream import MIN_FRAMES, H, stream_gtzan57

    rng = np.random.default_rng(3)
    t = np.arange(int(31.3 * SR)) / SR
    y = (0.3 * np.sin(2 * np.pi * (220 + 40 * np.sin(2 * np.pi * 0.1 * t)) * t)
         + 0.2 * np.sin(2 * np.pi * 1234 * t) * (np.mod(t, 0.5) < 0.05)
         + 0.03 * rng.standard_normal(t.size)).astype(np.float32)
    n, hop = MIN_FRAMES * H + 300, 90 * H  # not a whole number of frames; hop on the grid
    blocks = [y[i : i + 12345] for i in range(0, len(y), 12345)]
    got = [(s, seg.copy(), real, f()) for s, seg, real, f in stream_gtzan57(blocks, SR, n, hop)]
    starts = list(range(0, len(y) - n + 1, hop))
    if starts[-1] + n < len(y):
        starts.append(len(y) - n)
    assert [s for s, *_ in got] == starts and all(r == n for _, _, r, _ in got)
    for s, seg, _, feats in got:
        assert np.array_equal(seg, y[s : s + n])
        _gtzan_close(feats, fd.gtzan57(y[s : s + n], SR))
    # a signal shorter than one segment: one zero-padded segment, computed directly
    (s, seg, real, f), = list(stream_gtzan57([y[: n // 2]], SR, n, hop))
    assert (s, real, len(seg)) == (0, n // 2, n)
    _gtzan_close(f(), fd.gtzan57(seg, SR))
