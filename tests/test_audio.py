"""mgr.audio: decoding, resampling, the clip policy, the streaming block reader (decode) and windows."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from mgr.audio.decode import (
    audio_info,
    clip_policy,
    expected_samples,
    load_audio,
    stream_blocks,
)
from mgr.audio.windows import n_windows, window_starts, windows
from mgr.errors import AudioError, UserError


def _tone(sr: int, seconds: float, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    y = 0.5 * np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return y.astype(np.float32)
    return np.stack([y, 0.5 * y], axis=1).astype(np.float32)


def test_load_audio_stereo_flac_mixes_and_resamples(tmp_path):
    p = tmp_path / "a.flac"
    sf.write(p, _tone(44100, 2.0, channels=2), 44100)
    y = load_audio(p, sr=22050)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 44100) <= 1
    # mono = mean of channels (0.5 and 0.25 amplitude) -> peak ~0.375
    assert 0.36 < np.abs(y[1000:-1000]).max() < 0.39
    stereo = load_audio(p, sr=44100, mono=False)
    assert stereo.shape == (2, 88200)


def test_offset_duration_and_padding(tmp_path):
    sr = 8000
    p = tmp_path / "ramp.wav"
    ramp = np.linspace(-0.9, 0.9, sr * 3).astype(np.float32)
    sf.write(p, ramp, sr, subtype="FLOAT")
    y = load_audio(p, sr=sr, offset_s=1.0, duration_s=1.0)
    np.testing.assert_allclose(y, ramp[sr : 2 * sr], atol=1e-6)
    padded = load_audio(p, sr=sr, offset_s=2.5, duration_s=1.0, pad=True)
    assert len(padded) == sr and np.all(padded[sr // 2 :] == 0) and np.any(padded[: sr // 2] != 0)
    short = load_audio(p, sr=sr, offset_s=2.5, duration_s=1.0, pad=False)
    assert len(short) == sr // 2
    assert expected_samples(3 * sr, sr, sr=sr, offset_s=2.5, duration_s=1.0, pad=True) == sr
    assert expected_samples(3 * sr, sr, sr=sr, offset_s=2.5, duration_s=1.0, pad=False) == sr // 2
    assert expected_samples(3 * sr, sr, sr=2 * sr) == 6 * sr


def test_clip_policy():
    y = np.ones(100, dtype=np.float32)
    assert len(clip_policy(y, 10, duration_s=5.0)) == 50
    out = clip_policy(y, 10, duration_s=20.0, pad=True)
    assert len(out) == 200 and out[100:].sum() == 0
    assert len(clip_policy(y, 10, duration_s=20.0, pad=False)) == 100
    assert clip_policy(y, 10, duration_s=None) is y


def test_undecodable_file_is_one_clear_audio_error(tmp_path):
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"fLaC" + b"\x00garbage" * 50)
    with pytest.raises(AudioError, match="broken.flac"):
        load_audio(bad, sr=22050)
    with pytest.raises(UserError, match="not found"):
        audio_info(tmp_path / "missing.wav")


@pytest.mark.parametrize("total,length,hop", [(100, 30, 15), (90, 30, 30), (31, 30, 10), (30, 30, 5)])
def test_windows_cover_everything_and_end_aligned(total, length, hop):
    x = np.arange(total, dtype=np.float32)[None, :].repeat(2, axis=0)
    ws = list(windows(x, length, hop=hop))
    assert len(ws) == n_windows(total, length, hop)
    assert all(w.shape == (2, length) for w in ws)
    covered = np.zeros(total, dtype=bool)
    for w in ws:
        covered[w[0].astype(int)] = True
        assert np.all(np.diff(w[0]) == 1)  # contiguous slices of the input
    assert covered.all()
    assert ws[0][0, 0] == 0 and ws[-1][0, -1] == total - 1
    starts = window_starts(total, length, hop)
    assert np.all(np.diff(starts) <= hop)


def test_windows_overlap_and_short_input():
    x = np.arange(10, dtype=np.float32)
    ws = list(windows(x, 4, overlap=0.5))
    assert [int(w[0]) for w in ws] == [0, 2, 4, 6]
    (only,) = list(windows(x, 16, overlap=0.5, pad_value=-80.0))
    assert only.shape == (16,) and np.all(only[10:] == -80.0)
    with pytest.raises(ValueError):
        list(windows(x, 4, hop=2, overlap=0.5))


def test_stream_blocks_matches_one_shot_and_stays_bounded(tmp_path):
    p = tmp_path / "long.wav"
    y = _tone(44100, 7.3, freq=300.0, channels=2)
    sf.write(p, y, 44100)
    blocks = list(stream_blocks(p, 22050, block_s=2.0))
    assert len(blocks) >= 4
    assert max(len(b) for b in blocks) <= int(2.0 * 22050) + 64
    joined = np.concatenate(blocks)
    ref = load_audio(p, sr=22050)
    assert abs(len(joined) - len(ref)) <= 2
    n = min(len(joined), len(ref))
    # identical up to the resampler's edge behaviour
    np.testing.assert_allclose(joined[2000 : n - 2000], ref[2000 : n - 2000], atol=2e-3)
    same_rate = np.concatenate(list(stream_blocks(p, 44100, block_s=1.0)))
    np.testing.assert_allclose(same_rate, y.mean(axis=1), atol=1e-4)  # 16-bit PCM
