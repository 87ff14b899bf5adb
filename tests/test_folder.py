"""The folder source end to end through mgr.data.fetch.fetch (genre dirs, GTZAN layout, manifests)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from _fetch_helpers import write_corrupt, write_tone

from mgr.data.fetch import dataset_dir, fetch
from mgr.data.tracks import load_rejected, load_tracks
from mgr.errors import DataError
from mgr.params import params_from_dict


def _params(path, **data):
    return params_from_dict({"data": {"source": "folder", "path": str(path), "workers": 1, **data}})


@pytest.fixture
def gtzan_like(tmp_path) -> Path:
    """GTZAN-layout folder: blues/blues.00000.wav, .au files, one corrupt file, one too short."""
    src = tmp_path / "music"
    write_tone(src / "blues" / "blues.00000.wav", seconds=1.5)
    write_tone(src / "blues" / "blues.00001.au", seconds=1.5, fmt="AU", sr=22050)
    write_tone(src / "rock" / "rock.00000.au", seconds=2.0, fmt="AU")
    write_tone(src / "rock" / "sub" / "deep.flac", seconds=1.2)
    write_corrupt(src / "rock" / "rock.00001.wav")
    write_tone(src / "jazz" / "jazz.00000.wav", seconds=0.4)
    (src / "jazz" / "notes.txt").write_text("not audio")
    (src / "jazz" / ".hidden.wav").write_bytes(b"x")
    return src


def test_folder_with_corrupt_file(gtzan_like, tmp_path):
    p = _params(gtzan_like)
    res = fetch(p, tmp_path / "raw", progress=False)
    d = dataset_dir(p, tmp_path / "raw")
    assert res.dataset_dir == d and d.is_dir()
    tracks = load_tracks(d)
    rej = load_rejected(d)
    assert list(tracks.columns[:6]) == ["track_id", "path", "genre", "duration_s", "sample_rate", "channels"]
    assert sorted(tracks.track_id) == ["blues.00000", "blues.00001", "deep", "rock.00000"]
    assert "rock.00001" not in set(tracks.track_id)
    row = rej.set_index("track_id").loc["rock.00001"]
    assert row["path"].endswith("rock/rock.00001.wav") and row["reason"].startswith("does not decode")
    assert rej.set_index("track_id").loc["jazz.00000", "reason"].startswith("too short")
    assert res.n_tracks == 4 and res.n_rejected == 2
    assert res.n_per_genre == {"blues": 2, "rock": 2}
    t = tracks.set_index("track_id")
    assert t.loc["blues.00001", "sample_rate"] == 22050 and t.loc["rock.00000", "duration_s"] == pytest.approx(2.0)
    # referenced in place: absolute paths to the original files, nothing copied
    assert all(Path(x).is_absolute() and Path(x).is_file() for x in tracks.path)
    assert Path(t.loc["blues.00000", "path"]) == (gtzan_like / "blues" / "blues.00000.wav").resolve()
    assert not (d / "audio").exists()
    m = res.metrics()
    assert m["duplicates"]["exact_sets"] == 0 and m["paths_outside_folder"] == 0
    assert {k: m[k] for k in ("source", "n_tracks", "n_rejected", "n_per_genre")} == {
        "source": "folder", "n_tracks": 4, "n_rejected": 2,
                             "n_per_genre": {"blues": 2, "rock": 2}}


def test_folder_copy_mode_is_self_contained(gtzan_like, tmp_path):
    p = _params(gtzan_like, copy=True)
    fetch(p, tmp_path / "raw", progress=False)
    d = tmp_path / "raw" / "folder"
    raw = pd.read_csv(d / "tracks.csv", dtype=str)
    assert all(not Path(x).is_absolute() for x in raw.path)  # relative to the dataset dir
    assert (d / "audio" / "blues" / "blues.00000.wav").is_file()
    moved = tmp_path / "moved"
    d.rename(moved)
    tr = load_tracks(moved)
    assert all(Path(x).is_file() and str(x).startswith(str(moved.resolve())) for x in tr.path)


def test_duplicate_stems_get_unique_deterministic_ids(tmp_path):
    src = tmp_path / "m"
    write_tone(src / "pop" / "song.wav")
    write_tone(src / "rock" / "song.wav")
    write_tone(src / "rock" / "a" / "song.flac")
    ids1 = sorted(load_tracks(fetch(_params(src), tmp_path / "r1", progress=False).dataset_dir).track_id)
    ids2 = sorted(load_tracks(fetch(_params(src), tmp_path / "r2", progress=False).dataset_dir).track_id)
    assert ids1 == ids2 and len(set(ids1)) == 3
    assert "song.pop" in ids1


def test_manifest_with_optional_columns(tmp_path):
    audio = tmp_path / "a"
    write_tone(audio / "x1.wav")
    write_tone(audio / "x2.wav")
    write_corrupt(audio / "x3.wav")
    manifest = tmp_path / "list.csv"
    pd.DataFrame({
        "path": ["a/x1.wav", str((audio / "x2.wav").resolve()), "a/x3.wav", "a/missing.wav"],
        "genre": ["pop", "rock", "rock", "pop"],
        "artist": ["A", "B", "B", "C"],
        "tempo_bpm": ["120", "", "90", "100"],
        "tags": ["pop|dance", "", "rock", "x"],
        "source_split": ["training", "test", "val", "train"],
        "mood": ["happy", "sad", "sad", "ok"],
    }).to_csv(manifest, index=False)
    res = fetch(_params(manifest), tmp_path / "raw", progress=False)
    tr = load_tracks(res.dataset_dir).set_index("track_id")
    assert list(tr.index) == ["x1", "x2"]
    assert tr.loc["x1", "tags"] == "pop|dance" and tr.loc["x2", "tags"] == ""
    assert tr.loc["x1", "tempo_bpm"] == 120.0 and math.isnan(tr.loc["x2", "tempo_bpm"])
    assert tr.loc["x1", "source_split"] == "train" and tr.loc["x2", "artist"] == "B"
    assert tr.loc["x1", "mood"] == "happy"  # extra columns are kept
    rej = load_rejected(res.dataset_dir).set_index("track_id")
    assert rej.loc["missing", "reason"] == "file not found"
    assert rej.loc["x3", "reason"].startswith("does not decode")


def test_manifest_errors_are_one_line(tmp_path):
    m = tmp_path / "bad.csv"
    m.write_text("file,label\na.wav,pop\n")
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['path', 'genre'\]"):
        fetch(_params(m), tmp_path / "raw", progress=False)
    with pytest.raises(DataError, match="does not exist"):
        fetch(_params(tmp_path / "nowhere"), tmp_path / "raw", progress=False)
    empty = tmp_path / "empty"
    (empty / "pop").mkdir(parents=True)
    with pytest.raises(DataError, match="no audio files"):
        fetch(_params(empty), tmp_path / "raw", progress=False)
    assert not (tmp_path / "raw" / "folder").exists()


def test_all_files_bad_is_an_error_and_leaves_nothing(tmp_path):
    src = tmp_path / "m"
    write_corrupt(src / "pop" / "a.wav")
    with pytest.raises(DataError, match="no usable audio"):
        fetch(_params(src), tmp_path / "raw", progress=False)
    assert not (tmp_path / "raw" / "folder").exists()
    assert not list((tmp_path / "raw").glob(".folder.tmp-*"))
