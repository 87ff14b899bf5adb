"""FMA large and full: fetched like small/medium (zips with SHA-1, served from 127.0.0.1), the
official split from tracks.csv, and full-length tracks cropped by ``audio.*`` while streaming into
shards."""

from __future__ import annotations

from pathlib import Path

import pytest
from _fetch_helpers import serve, sha1, write_tone
from test_fma import _params, _zip_dir, write_audio, write_metadata

from mgr.data.fetch import fetch
from mgr.data.sources.fma import SUBSETS, audio_relpath, parse_metadata
from mgr.data.tracks import load_rejected, load_tracks
from mgr.params import AudioParams, FmaParams, SpectrogramParams


def test_official_checksums_are_the_defaults():
    f = FmaParams()
    # the FMA README's SHA-1s (also ../shared/REFERENCES.md)
    assert f.large_sha1 == "497109f4dd721066b5ce5e5f250ec604dc78939e"
    assert f.full_sha1 == "0f0ace23fbe9ba30ecb7e95f763e435ea802b8ab"
    assert f.large_url.endswith("/fma_large.zip") and f.full_url.endswith("/fma_full.zip")
    assert SUBSETS == ("small", "medium", "large", "full")


def test_large_and_full_select_every_subset(tmp_path):
    d = write_metadata(tmp_path / "fma_metadata")
    for subset in ("large", "full"):
        m = parse_metadata(d / "tracks.csv", d / "genres.csv", subset)
        assert "000777" in set(m.track_id) and "000140" in set(m.track_id)  # large-only and medium tracks
    assert "000777" not in set(parse_metadata(d / "tracks.csv", d / "genres.csv", "medium").track_id)


def _archive(staging: Path, www: Path, subset: str, seconds: float) -> Path:
    root = write_audio(staging, subset)
    write_tone(root / audio_relpath(777, subset), seconds=seconds, sr=22050, fmt="MP3", subtype="MPEG_LAYER_III")
    for t in (2, 5, 10, 140):  # longer "untrimmed" tracks in full
        write_tone(root / audio_relpath(t, subset), seconds=seconds, sr=22050, fmt="MP3", subtype="MPEG_LAYER_III")
    return _zip_dir(root / f"fma_{subset}", www / f"fma_{subset}.zip")


@pytest.mark.parametrize("subset,seconds", [("large", 1.5), ("full", 4.0)])
def test_fetch_large_and_full_through_local_server(tmp_path, subset, seconds):
    www = tmp_path / "www"
    www.mkdir()
    staging = tmp_path / "staging"
    meta_zip = _zip_dir(write_metadata(staging / "fma_metadata"), www / "fma_metadata.zip")
    audio_zip = _archive(staging, www, subset, seconds)
    with serve(www) as (url, state):
        p = _params(None, tmp_path, subset=subset, metadata_url=f"{url}/fma_metadata.zip",
                    metadata_sha1=sha1(meta_zip), **{f"{subset}_url": f"{url}/fma_{subset}.zip",
                                                     f"{subset}_sha1": sha1(audio_zip)})
        res = fetch(p, tmp_path / "raw", progress=False)
    assert {r[0] for r in state.requests} == {"/fma_metadata.zip", f"/fma_{subset}.zip"}
    tr = load_tracks(res.dataset_dir).set_index("track_id")
    assert sorted(tr.index) == ["000002", "000005", "000010", "000140", "000777"]
    assert tr.loc["000777", "path"].endswith(f"extracted/fma_{subset}/000/000777.mp3")
    assert tr.loc["000777", "duration_s"] == pytest.approx(seconds, abs=0.1)
    # the official split (tracks.csv set.split), artist-disjoint by FMA's construction
    assert tr.loc["000005", "source_split"] == "val" and tr.loc["000010", "source_split"] == "test"
    rej = load_rejected(res.dataset_dir).set_index("track_id")
    assert rej.loc["099134", "reason"].startswith("known bad") and "000888" in rej.index
    # a wrong checksum for the big archive is refused before anything is extracted
    from mgr.errors import DataError

    with serve(www) as (url, _):
        bad = _params(None, tmp_path, subset=subset, metadata_url=f"{url}/fma_metadata.zip", metadata_sha1=None,
                      **{f"{subset}_url": f"{url}/fma_{subset}.zip", f"{subset}_sha1": "b" * 40})
        with pytest.raises(DataError, match="checksum mismatch"):
            fetch(bad, tmp_path / "raw2", progress=False)


def test_full_tracks_cropped_into_shards(tmp_path):
    """Untrimmed tracks, cropped to audio.offset_s + duration_s, streamed into shards."""
    from mgr.distributed.shards import build_sharded_store
    from mgr.features.store import SpectrogramStore

    www = tmp_path / "www"
    www.mkdir()
    staging = tmp_path / "staging"
    write_metadata(staging / "fma_metadata")
    _archive(staging, www, "full", 4.0)
    res = fetch(_local_full(tmp_path, staging, www), tmp_path / "raw", progress=False)
    tr = load_tracks(res.dataset_dir)
    tr = tr.assign(split=tr["source_split"], fold=-1).sort_values("track_id").reset_index(drop=True)
    audio = AudioParams(sample_rate=22050, offset_s=1.0, duration_s=2.0)
    sp = SpectrogramParams(n_fft=512, hop_length=256, n_mels=32)
    rep = build_sharded_store(tr, audio, sp, tmp_path / "s.h5", shard_tracks=2, workers=1)
    assert rep["n_tracks"] == 5 and rep["n_shards"] == 3
    with SpectrogramStore(tmp_path / "s.h5") as st:
        assert set(st.n_valid_frames) == {1 + 2 * 22050 // 256}  # every track: exactly the 2 s crop


def _local_full(tmp_path: Path, staging: Path, www: Path):
    base = tmp_path / "fma"
    base.mkdir()
    (www / "fma_full.zip").rename(base / "fma_full.zip")
    _zip_dir(staging / "fma_metadata", base / "fma_metadata.zip")
    return _params(base, tmp_path, subset="full", metadata_sha1=None, full_sha1=sha1(base / "fma_full.zip"))
