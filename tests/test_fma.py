"""The FMA source: tracks.csv (3-row header) parsing, subsets, known-bad list, zips with SHA-1, folders."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest
from _fetch_helpers import serve, sha1, write_corrupt, write_tone

from mgr.data.fetch import fetch
from mgr.data.sources.fma import (
    audio_relpath,
    known_bad,
    parse_metadata,
    read_tracks_csv,
)
from mgr.data.tracks import load_rejected, load_tracks
from mgr.errors import DataError
from mgr.params import params_from_dict

# track_id: (subset, split, genre_top, genres_all, artist_id)
META = {
    2: ("small", "training", "Hip-Hop", "[21]", 1),
    5: ("small", "validation", "Hip-Hop", "[21, 10]", 1),
    10: ("small", "test", "Pop", "[10, 76]", 6),
    140: ("medium", "training", "Folk", "[17]", 61),
    666: ("small", "training", "Pop", "[10]", 7),         # audio missing from the zip
    777: ("large", "training", "Pop", "[10]", 8),         # not in small or medium
    888: ("small", "test", "Folk", "[17]", 9),            # corrupt mp3
    99134: ("small", "training", "Folk", "[17]", 10),     # on the shipped known-bad list
}
GENRES = pd.DataFrame({"genre_id": [10, 17, 21, 76], "#tracks": [1, 1, 1, 1], "parent": [0, 0, 0, 10],
                       "title": ["Pop", "Folk", "Hip-Hop", "Experimental Pop"], "top_level": [10, 17, 21, 10]})


def write_metadata(d: Path) -> Path:
    """fma_metadata/tracks.csv in FMA's format (2 column-header rows + the track_id row) and genres.csv."""
    d.mkdir(parents=True, exist_ok=True)
    cols = pd.MultiIndex.from_tuples([
        ("album", "title"), ("artist", "id"), ("artist", "name"), ("set", "split"), ("set", "subset"),
        ("track", "genre_top"), ("track", "genres_all"), ("track", "title"),
    ])
    rows = [["Alb", a, f"Artist {a}", sp, ss, g, ga, f"Song {t}"] for t, (ss, sp, g, ga, a) in META.items()]
    df = pd.DataFrame(rows, index=pd.Index(list(META), name="track_id"), columns=cols)
    df.to_csv(d / "tracks.csv")
    GENRES.to_csv(d / "genres.csv", index=False)
    return d


def write_audio(root: Path, subset: str) -> Path:
    for t in (2, 5, 10, 140, 99134):
        write_tone(root / audio_relpath(t, subset), seconds=1.5, sr=22050, fmt="MP3", subtype="MPEG_LAYER_III")
    write_corrupt(root / audio_relpath(888, subset))
    return root


def _zip_dir(src: Path, arc: Path) -> Path:
    with zipfile.ZipFile(arc, "w") as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(src.parent).as_posix())
    return arc


def _params(path, tmp_path, **fma):
    return params_from_dict({"data": {"source": "fma", "path": None if path is None else str(path), "workers": 2,
                                      "download_dir": str(tmp_path / "downloads"), "fma": fma}})


def test_tracks_csv_three_row_header(tmp_path):
    d = write_metadata(tmp_path / "fma_metadata")
    lines = (d / "tracks.csv").read_text().splitlines()
    assert lines[0].startswith(",album,artist") and lines[2].startswith("track_id,")  # FMA's layout
    raw = read_tracks_csv(d / "tracks.csv")
    assert ("track", "genre_top") in raw.columns and raw.index.name == "track_id"
    m = parse_metadata(d / "tracks.csv", d / "genres.csv", "small").set_index("track_id")
    assert list(m.index) == ["000002", "000005", "000010", "000666", "000888", "099134"]
    assert m.loc["000005", "tags"] == "Hip-Hop|Pop"
    assert m.loc["000010", "tags"] == "Pop|Experimental Pop"
    assert m.loc["000002", "genre"] == "Hip-Hop" and m.loc["000010", "artist"] == "6"
    assert [m.loc[t, "source_split"] for t in ("000002", "000005", "000010")] == ["train", "val", "test"]
    med = parse_metadata(d / "tracks.csv", d / "genres.csv", "medium")
    assert "000140" in set(med.track_id) and "000777" not in set(med.track_id)


def test_tracks_csv_errors(tmp_path):
    f = tmp_path / "tracks.csv"
    f.write_text("track_id,genre\n1,Pop\n")
    with pytest.raises(DataError):
        read_tracks_csv(f)


def test_known_bad_list_shipped():
    bad = known_bad()
    assert {"099134", "108925", "133297", "098565", "098567", "098569"} <= set(bad)
    assert all(r for r in bad.values())


def test_fetch_from_local_zips_with_sha1(tmp_path):
    base = tmp_path / "fma"
    base.mkdir()
    staging = tmp_path / "staging"
    meta_zip = _zip_dir(write_metadata(staging / "fma_metadata"), base / "fma_metadata.zip")
    audio_zip = _zip_dir(write_audio(staging, "small") / "fma_small", base / "fma_small.zip")
    p = _params(base, tmp_path, metadata_sha1=sha1(meta_zip), small_sha1=sha1(audio_zip))
    res = fetch(p, tmp_path / "raw", progress=False)
    tr = load_tracks(res.dataset_dir).set_index("track_id")
    assert list(tr.index) == ["000002", "000005", "000010"]
    assert tr.loc["000005", "tags"] == "Hip-Hop|Pop" and tr.loc["000005", "source_split"] == "val"
    assert tr.loc["000002", "path"].endswith("extracted/fma_small/000/000002.mp3")
    assert tr.loc["000002", "sample_rate"] == 22050 and tr.loc["000002", "duration_s"] > 1.0
    rej = load_rejected(res.dataset_dir).set_index("track_id")
    assert rej.loc["099134", "reason"].startswith("known bad")
    assert rej.loc["000888", "reason"].startswith("does not decode")
    assert "missing" in rej.loc["000666", "reason"]
    assert res.n_per_genre == {"Hip-Hop": 2, "Pop": 1}
    # a wrong SHA-1 is a clear error and nothing is left behind
    with pytest.raises(DataError, match=r"checksum mismatch for fma_small\.zip: expected sha1 a{40}"):
        fetch(_params(base, tmp_path, metadata_sha1=None, small_sha1="a" * 40), tmp_path / "raw2", progress=False)
    assert not (tmp_path / "raw2" / "fma").exists()


def test_fetch_downloads_through_local_server(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    staging = tmp_path / "staging"
    meta_zip = _zip_dir(write_metadata(staging / "fma_metadata"), www / "fma_metadata.zip")
    audio_zip = _zip_dir(write_audio(staging, "medium") / "fma_medium", www / "fma_medium.zip")
    with serve(www) as (url, state):
        p = _params(None, tmp_path, subset="medium", metadata_url=f"{url}/fma_metadata.zip",
                    metadata_sha1=sha1(meta_zip), medium_url=f"{url}/fma_medium.zip", medium_sha1=sha1(audio_zip))
        res = fetch(p, tmp_path / "raw", progress=False)
    assert {r[0] for r in state.requests} == {"/fma_metadata.zip", "/fma_medium.zip"}
    tr = load_tracks(res.dataset_dir)
    assert sorted(tr.track_id) == ["000002", "000005", "000010", "000140"]


def test_fetch_from_extracted_folders_in_place(tmp_path):
    base = tmp_path / "fma"
    write_metadata(base / "fma_metadata")
    write_audio(base, "small")
    res = fetch(_params(base, tmp_path), tmp_path / "raw", progress=False)
    tr = load_tracks(res.dataset_dir)
    assert sorted(tr.track_id) == ["000002", "000005", "000010"]
    assert all(str(x).startswith(str(base.resolve())) for x in tr.path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither fma_metadata.zip nor"):
        fetch(_params(tmp_path / "empty", tmp_path), tmp_path / "raw3", progress=False)
