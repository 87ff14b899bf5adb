"""mgr.data.probe: full decode, duration/sr/channels, one-line reasons, parallel order."""

from __future__ import annotations

from _fetch_helpers import write_corrupt, write_tone

from mgr.data.probe import probe_file, probe_files


def test_probe_good_files(tmp_path):
    r = probe_file(write_tone(tmp_path / "a.wav", seconds=1.5, sr=8000))
    assert r.ok and r.sample_rate == 8000 and r.channels == 1
    assert abs(r.duration_s - 1.5) < 1e-9
    r = probe_file(write_tone(tmp_path / "b.au", seconds=2.0, sr=11025, fmt="AU", channels=2))
    assert r.ok and r.sample_rate == 11025 and r.channels == 2 and abs(r.duration_s - 2.0) < 1e-9
    r = probe_file(write_tone(tmp_path / "c.flac", seconds=1.0, sr=16000))
    assert r.ok and r.reason == ""


def test_probe_rejections_have_one_line_reasons(tmp_path):
    bad = probe_file(write_corrupt(tmp_path / "x.wav"))
    assert not bad.ok and bad.reason.startswith("does not decode") and "\n" not in bad.reason
    empty = tmp_path / "e.wav"
    empty.write_bytes(b"")
    assert probe_file(empty).reason == "empty file (0 bytes)"
    assert probe_file(tmp_path / "missing.wav").reason == "file not found"
    short = probe_file(write_tone(tmp_path / "s.wav", seconds=0.5), min_duration_s=1.0)
    assert not short.ok and short.reason.startswith("too short: 0.500 s")
    # a WAV whose data chunk was cut off: header says more than is there -> decodes what is there
    good = write_tone(tmp_path / "t.wav", seconds=2.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:60])
    r = probe_file(cut, min_duration_s=0.1)
    assert not r.ok


def test_probe_files_parallel_keeps_order(tmp_path):
    paths = []
    for i in range(6):
        if i == 3:
            paths.append(write_corrupt(tmp_path / f"{i}.wav", seed=i))
        else:
            paths.append(write_tone(tmp_path / f"{i}.wav", seconds=1.0 + 0.25 * i))
    res = probe_files(paths, min_duration_s=0.5, workers=2, progress=False)
    assert [r.path for r in res] == [str(p) for p in paths]
    assert [r.ok for r in res] == [True, True, True, False, True, True]
    assert abs(res[5].duration_s - 2.25) < 1e-9
    assert probe_files([], workers=2) == []


def test_reason_names_the_file_not_its_directory(tmp_path):
    r = probe_file(write_corrupt(tmp_path / "deep" / "x.flac"))
    assert "x.flac" in r.reason and str(tmp_path) not in r.reason
