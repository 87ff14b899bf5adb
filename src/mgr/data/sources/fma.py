"""The ``fma`` source (Defferrard et al. 2017): ``fma_metadata`` plus the small, medium, large or full audio.

``data.path`` is a directory holding ``fma_metadata.zip`` (or the extracted ``fma_metadata/``)
and ``fma_<subset>.zip`` (or ``fma_<subset>/``), ``data.fma.subset`` being ``small`` (8,000
30 s clips), ``medium`` (25,000), ``large`` (106,574 30 s clips) or ``full`` (the same 106,574
tracks untrimmed, 879 GiB: ``audio.offset_s`` / ``audio.duration_s`` crop them at extraction, and
the sharded extraction of :mod:`mgr.distributed` streams them into shards one clip at a time). With ``data.path: null`` both zips are downloaded from ``data.fma.*_url``
into ``data.download_dir`` (resumable) and verified against their published SHA-1s; local zips
are verified too. Only ``tracks.csv`` and ``genres.csv`` are read from the metadata zip (in
memory, nothing extracted); the audio zip is extracted safely into the dataset directory,
an extracted audio folder is used in place (copied with ``data.copy``).

``tracks.csv`` has a 3-row header (a column MultiIndex such as ``('track', 'genre_top')``, then
the ``track_id`` index row). Each track of the chosen subset (small is inside medium) becomes
``track_id`` (6 digits), ``genre`` = ``('track','genre_top')``, ``tags`` = the names of
``('track','genres_all')`` joined by ``|``, ``artist`` = ``('artist','id')``, ``source_split`` =
``('set','split')`` mapped to train/val/test. The shipped known-bad list
(``mgr/data/fma_known_bad.csv``) and any file that fails to decode go to ``rejected.csv``.
"""

from __future__ import annotations

import ast
import io
import shutil
import zipfile
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mgr.data.archive import safe_extract
from mgr.data.candidates import Candidates
from mgr.data.download import download, url_basename, verify_checksum
from mgr.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mgr.params import Params

SUBSETS = ("small", "medium", "large", "full")
# tracks.csv's ('set', 'subset') is small | medium | large; "full" holds the same tracks as
# large, untrimmed (fma_full.zip), so it selects what large does
_RANK = {"small": 0, "medium": 1, "large": 2, "full": 2}
SPLIT_MAP = {"training": "train", "validation": "val", "test": "test"}


def known_bad() -> dict[str, str]:
    """track_id (6 digits) -> reason, from the shipped ``fma_known_bad.csv``."""
    import csv

    f = Path(str(resources.files("mgr") / "data" / "fma_known_bad.csv"))
    with f.open(newline="") as fh:
        return {r["track_id"].zfill(6): r["reason"] for r in csv.DictReader(fh)}


def audio_relpath(track_id: str | int, subset: str) -> str:
    """``fma_<subset>/<NNN>/<NNNNNN>.mp3`` for a track id."""
    tid = f"{int(track_id):06d}"
    return f"fma_{subset}/{tid[:3]}/{tid}.mp3"


def _parse_list(v: Any) -> list[int]:
    if v is None or (isinstance(v, float) and v != v) or str(v).strip() in ("", "[]"):
        return []
    try:
        out = ast.literal_eval(str(v))  # a literal list of ints, never code
    except (ValueError, SyntaxError):
        return []
    if isinstance(out, int):
        return [out]
    return [int(x) for x in out if isinstance(x, (int, float))]


def read_tracks_csv(src: str | Path | IO) -> pd.DataFrame:
    """Read FMA's ``tracks.csv`` (2 column-header rows + the ``track_id`` row) -> MultiIndex frame."""
    import pandas as pd

    try:
        df = pd.read_csv(src, index_col=0, header=[0, 1], low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"FMA tracks.csv is not readable: {type(e).__name__}: {e}") from None
    if not isinstance(df.columns, pd.MultiIndex):
        raise DataError("FMA tracks.csv: expected a 2-level column header (e.g. track,genre_top)")
    need = [("track", "genre_top"), ("track", "genres_all"), ("artist", "id"), ("set", "subset"), ("set", "split")]
    missing = [f"{a}.{b}" for a, b in need if (a, b) not in df.columns]
    if missing:
        raise DataError(f"FMA tracks.csv lacks the column(s) {missing}")
    return df


def parse_metadata(tracks: str | Path | IO | pd.DataFrame, genres: str | Path | IO | pd.DataFrame,
                   subset: str = "small") -> pd.DataFrame:
    """The tracks of ``subset`` (and smaller subsets) as a flat table.

    Columns: ``track_id`` (6-digit str), ``genre`` (genre_top; "" if none), ``tags``
    (genres_all names, ``|``-joined), ``artist`` (artist id as str), ``source_split``
    (train/val/test), ``subset``.
    """
    import pandas as pd

    if subset not in SUBSETS:
        raise DataError(f"data.fma.subset {subset!r} is not one of {', '.join(SUBSETS)}")
    df = tracks if isinstance(tracks, pd.DataFrame) else read_tracks_csv(tracks)
    g = genres if isinstance(genres, pd.DataFrame) else pd.read_csv(genres)
    if "genre_id" in g.columns:
        g = g.set_index("genre_id")
    if "title" not in g.columns:
        raise DataError("FMA genres.csv lacks the 'title' column")
    names = {int(k): str(v) for k, v in g["title"].items()}

    sub = df[("set", "subset")].astype(str).map(lambda s: _RANK.get(s, 99))
    df = df[sub <= _RANK[subset]]
    rows = []
    for tid, genre_top, genres_all, artist, split, ss in zip(
        df.index, df[("track", "genre_top")], df[("track", "genres_all")], df[("artist", "id")],
        df[("set", "split")], df[("set", "subset")],
    ):
        tags = [names[i] for i in _parse_list(genres_all) if i in names]
        rows.append({
            "track_id": f"{int(tid):06d}",
            "genre": "" if pd.isna(genre_top) else str(genre_top),
            "tags": "|".join(dict.fromkeys(tags)),
            "artist": "" if pd.isna(artist) else str(int(artist)) if isinstance(artist, float) else str(artist),
            "source_split": SPLIT_MAP.get(str(split), ""),
            "subset": str(ss),
        })
    out = pd.DataFrame(rows, columns=["track_id", "genre", "tags", "artist", "source_split", "subset"])
    return out.sort_values("track_id", kind="stable").reset_index(drop=True)


def _metadata_from_zip(zpath: Path) -> tuple[io.BytesIO, io.BytesIO]:
    try:
        with zipfile.ZipFile(zpath) as zf:
            names = zf.namelist()

            def pick(fname: str) -> io.BytesIO:
                hits = sorted((n for n in names if n == fname or n.endswith("/" + fname)), key=len)
                if not hits:
                    raise DataError(f"{zpath.name} holds no {fname}")
                return io.BytesIO(zf.read(hits[0]))

            return pick("tracks.csv"), pick("genres.csv")
    except zipfile.BadZipFile:
        raise DataError(f"{zpath.name} is not a valid zip") from None


def _find_file(root: Path, fname: str) -> Path | None:
    direct = root / fname
    if direct.is_file():
        return direct
    hits = sorted(root.rglob(fname), key=lambda p: len(p.parts))
    return hits[0] if hits else None


def _locate_metadata(params: Params, progress: bool) -> tuple[Any, Any]:
    f = params.data.fma
    base = Path(params.data.path).expanduser() if params.data.path else None
    if base is not None:
        if not base.is_dir():
            raise DataError(f"data.path {base} is not a directory (expected the folder holding fma_metadata.zip "
                            f"and fma_{f.subset}.zip, or their extracted folders)")
        zpath = base / "fma_metadata.zip"
        if zpath.is_file():
            verify_checksum(zpath, sha1=f.metadata_sha1)
            return _metadata_from_zip(zpath)
        mdir = base / "fma_metadata"
        search = mdir if mdir.is_dir() else base
        tr, ge = _find_file(search, "tracks.csv"), _find_file(search, "genres.csv")
        if tr is None or ge is None:
            raise DataError(f"data.path {base}: neither fma_metadata.zip nor fma_metadata/tracks.csv + genres.csv found")
        return tr, ge
    zpath = download(f.metadata_url, Path(params.data.download_dir) / (url_basename(f.metadata_url) or "fma_metadata.zip"),
                     sha1=f.metadata_sha1, progress=progress)
    return _metadata_from_zip(zpath)


def _locate_audio(params: Params, work_dir: Path, progress: bool) -> tuple[Path, bool]:
    """The folder that holds ``fma_<subset>/`` and whether it lies inside ``work_dir``."""
    f = params.data.fma
    name = f"fma_{f.subset}"
    url, sha1 = getattr(f, f"{f.subset}_url"), getattr(f, f"{f.subset}_sha1")
    base = Path(params.data.path).expanduser() if params.data.path else None
    if base is not None:
        if (base / name).is_dir():
            return base, False
        zpath = base / f"{name}.zip"
        if not zpath.is_file():
            raise DataError(f"data.path {base}: neither {name}.zip nor {name}/ found")
        verify_checksum(zpath, sha1=sha1)
    else:
        zpath = download(url, Path(params.data.download_dir) / (url_basename(url) or f"{name}.zip"),
                         sha1=sha1, progress=progress)
    out = safe_extract(zpath, work_dir / "extracted")
    if not (out / name).is_dir():
        hits = [p.parent for p in out.rglob(name) if p.is_dir()]
        if not hits:
            raise DataError(f"{zpath.name} does not contain a {name}/ folder")
        return hits[0], True
    return out, True


def collect(params: Params, work_dir: Path, *, progress: bool = True) -> Candidates:
    subset = params.data.fma.subset
    tracks_src, genres_src = _locate_metadata(params, progress)
    meta = parse_metadata(tracks_src, genres_src, subset)
    audio_root, inside = _locate_audio(params, work_dir, progress)
    bad = known_bad()
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for rec in meta.to_dict("records"):
        tid = rec["track_id"]
        rel = audio_relpath(tid, subset)
        f = audio_root / rel
        if inside:
            path = f.relative_to(work_dir).as_posix()
        elif params.data.copy and f.is_file():
            dst = work_dir / "audio" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
            path = (Path("audio") / rel).as_posix()
        else:
            path = str(f.resolve())
        if tid in bad:
            rejected.append({"path": path, "reason": f"known bad: {bad[tid]}", "track_id": tid})
        elif not rec["genre"]:
            rejected.append({"path": path, "reason": "no genre_top in FMA metadata", "track_id": tid})
        elif not f.is_file():
            rejected.append({"path": path, "reason": f"audio file missing from fma_{subset}", "track_id": tid})
        else:
            rec = dict(rec)
            rec.pop("subset")
            rows.append({"track_id": tid, "path": path, "genre": rec["genre"], "artist": rec["artist"],
                         "tags": rec["tags"], "source_split": rec["source_split"]})
    if not rows and not rejected:
        raise DataError(f"FMA metadata lists no tracks of the {subset!r} subset")
    genres = sorted({r["genre"] for r in rows})
    return Candidates(rows=rows, rejected=rejected, genres=genres)
