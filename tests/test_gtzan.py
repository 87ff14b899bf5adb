"""The GTZAN source: original archive via a local HTTP server (md5), Kaggle zip, extracted folders, tempo."""

from __future__ import annotations

import math
import tarfile
import zipfile
from pathlib import Path

import pytest
from _fetch_helpers import md5, serve, write_corrupt, write_tone

from mgr.data.fetch import fetch
from mgr.data.sources.gtzan import fault_filtered_split
from mgr.data.tracks import load_rejected, load_tracks
from mgr.errors import DataError
from mgr.params import params_from_dict

# blues.00000 is in valid_filtered, blues.00029 in train_filtered, blues.00012 in test_filtered,
# country.00008 is one of the 70 tracks the fault-filtered lists leave out.
TRACKS = {"blues.00000": "val", "blues.00029": "train", "blues.00012": "test", "country.00008": "",
          "jazz.00054": "train"}


def _params(path, tmp_path, **gtzan):
    return params_from_dict({"data": {
        "source": "gtzan", "path": None if path is None else str(path), "workers": 1,
        "download_dir": str(tmp_path / "downloads"), "gtzan": gtzan,
    }})


def _original_tree(root: Path) -> Path:
    for tid in TRACKS:
        g = tid.split(".")[0]
        write_tone(root / "genres" / g / f"{tid}.au", seconds=1.2, sr=22050, fmt="AU")
    return root


def _kaggle_tree(root: Path) -> Path:
    for tid in TRACKS:
        g = tid.split(".")[0]
        f = root / "Data" / "genres_original" / g / f"{tid}.wav"
        if tid == "jazz.00054":
            write_corrupt(f)  # as in the Kaggle re-release
        else:
            write_tone(f, seconds=1.2, sr=22050)
    (root / "Data" / "features_30_sec.csv").write_text("filename,label\n")
    for g in ("blues", "country"):  # genre-named folders of spectrogram images sort before the audio
        (root / "Data" / "genres_images" / g).mkdir(parents=True)
        (root / "Data" / "genres_images" / g / f"{g}00000.png").write_bytes(b"png")
    return root


def test_fault_filtered_lists_shipped():
    s = fault_filtered_split()
    assert len(s) == 930
    assert sum(v == "train" for v in s.values()) == 443
    assert sum(v == "val" for v in s.values()) == 197
    assert sum(v == "test" for v in s.values()) == 290
    for tid, split in TRACKS.items():
        assert s.get(tid, "") == split


def test_original_archive_through_local_server(tmp_path):
    tree = _original_tree(tmp_path / "src")
    www = tmp_path / "www"
    www.mkdir()
    arc = www / "genres.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        tf.add(tree / "genres", arcname="genres")
    with serve(www, drop_first=1) as (url, state):
        p = _params(None, tmp_path, url=f"{url}/genres.tar.gz", md5=md5(arc))
        res = fetch(p, tmp_path / "raw", progress=False)
    assert any(r[1] for r in state.requests)  # the dropped transfer was resumed with Range
    assert (tmp_path / "downloads" / "genres.tar.gz").is_file()
    tr = load_tracks(res.dataset_dir).set_index("track_id")
    assert sorted(tr.index) == sorted(TRACKS)  # jazz.00054 is fine in the original archive
    for tid, split in TRACKS.items():
        assert tr.loc[tid, "source_split"] == split
        assert tr.loc[tid, "genre"] == tid.split(".")[0]
    assert (tr.sample_rate == 22050).all() and (tr.channels == 1).all()
    assert tr.duration_s.round(3).eq(1.2).all()
    # audio is extracted into the dataset dir and referenced relatively
    raw = (res.dataset_dir / "tracks.csv").read_text()
    assert "extracted/genres/blues/blues.00000.au" in raw and str(tmp_path) not in raw
    assert res.genres[0] == "blues" and len(res.genres) == 10
    assert res.n_rejected == 0


def test_md5_mismatch_stops_before_extraction(tmp_path):
    tree = _original_tree(tmp_path / "src")
    arc = tmp_path / "genres.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        tf.add(tree / "genres", arcname="genres")
    with pytest.raises(DataError, match=r"checksum mismatch for genres\.tar\.gz: expected md5 0{32}"):
        fetch(_params(arc, tmp_path, md5="0" * 32), tmp_path / "raw", progress=False)
    assert not (tmp_path / "raw" / "gtzan").exists()
    www = tmp_path / "www"
    www.mkdir()
    arc.rename(www / "genres.tar.gz")
    with serve(www) as (url, _), pytest.raises(DataError, match="checksum mismatch"):
        fetch(_params(f"{url}/genres.tar.gz", tmp_path, md5="0" * 32), tmp_path / "raw", progress=False)
    assert not (tmp_path / "downloads" / "genres.tar.gz").exists()
    assert not (tmp_path / "raw" / "gtzan").exists()


def test_kaggle_zip_known_bad_and_tempo(tmp_path):
    tree = _kaggle_tree(tmp_path / "src")
    arc = tmp_path / "archive.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        for f in sorted(tree.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(tree).as_posix())
    www = tmp_path / "www"
    www.mkdir()
    tempo_zip = www / "main.zip"
    with zipfile.ZipFile(tempo_zip, "w") as zf:
        zf.writestr("gtzan_tempo_beat-main/tempo/gtzan_blues_00000.bpm", "120.5\n")
        zf.writestr("gtzan_tempo_beat-main/tempo/gtzan_country_00008.bpm", "95\n")
        zf.writestr("gtzan_tempo_beat-main/beats/gtzan_blues_00000.beats", "0.5 1\n")
    with serve(www) as (url, _):
        p = _params(arc, tmp_path, md5="0" * 32,  # the md5 belongs to genres.tar.gz, not to a Kaggle zip
                    tempo=True, tempo_url=f"{url}/main.zip", tempo_md5=md5(tempo_zip))
        res = fetch(p, tmp_path / "raw", progress=False)
    tr = load_tracks(res.dataset_dir).set_index("track_id")
    assert "jazz.00054" not in tr.index
    rej = load_rejected(res.dataset_dir).set_index("track_id")
    assert "Kaggle re-release" in rej.loc["jazz.00054", "reason"]
    assert rej.loc["jazz.00054", "reason"].startswith("known bad")
    assert tr.loc["blues.00000", "tempo_bpm"] == 120.5 and tr.loc["country.00008", "tempo_bpm"] == 95.0
    assert math.isnan(tr.loc["blues.00029", "tempo_bpm"])  # no annotation (like reggae.00086)
    assert res.n_tracks == 4 and res.n_rejected == 1


@pytest.mark.parametrize("layout", ["original", "kaggle"])
def test_extracted_folder_used_in_place(tmp_path, layout):
    tree = (_original_tree if layout == "original" else _kaggle_tree)(tmp_path / "src")
    res = fetch(_params(tree, tmp_path), tmp_path / "raw", progress=False)
    tr = load_tracks(res.dataset_dir)
    assert all(Path(x).is_absolute() and str(x).startswith(str(tree.resolve())) for x in tr.path)
    assert not (res.dataset_dir / "extracted").exists()
    expected = sorted(TRACKS) if layout == "original" else sorted(set(TRACKS) - {"jazz.00054"})
    assert sorted(tr.track_id) == expected


def test_no_gtzan_folders_is_a_clear_error(tmp_path):
    (tmp_path / "x" / "foo").mkdir(parents=True)
    with pytest.raises(DataError, match="no GTZAN genre folders"):
        fetch(_params(tmp_path / "x", tmp_path), tmp_path / "raw", progress=False)
    with pytest.raises(DataError, match="does not exist"):
        fetch(_params(tmp_path / "nope.tar.gz", tmp_path), tmp_path / "raw", progress=False)


def test_extracted_folder_copy_mode(tmp_path):
    tree = _original_tree(tmp_path / "src")
    p = params_from_dict({"data": {"source": "gtzan", "path": str(tree), "copy": True, "workers": 1}})
    res = fetch(p, tmp_path / "raw", progress=False)
    raw = (res.dataset_dir / "tracks.csv").read_text()
    assert "audio/blues/blues.00000.au" in raw and str(tree) not in raw
    assert (res.dataset_dir / "audio" / "jazz" / "jazz.00054.au").is_file()
