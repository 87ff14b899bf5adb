"""The ``gtzan`` source (Tzanetakis & Cook 2002): 1000 x 30 s clips, 10 genres.

``data.path`` may be

- a URL (``http(s)://``, ``file://``): downloaded to ``data.download_dir`` (resumable), then
  handled as an archive;
- a local archive: the original ``genres.tar.gz`` (md5 checked against ``data.gtzan.md5``) or a
  Kaggle-style zip (``Data/genres_original/<genre>/<genre>.000NN.wav``);
- an already-extracted folder in either layout (``genres/<genre>/<genre>.000NN.au`` or
  ``Data/genres_original/<genre>/...``), used in place (copied in with ``data.copy``);
- null: ``data.gtzan.url`` (the historical host, down since about 2022).

Archives are extracted safely into the dataset directory. Track ids are ``<genre>.<nnnnn>``.
``source_split`` comes from the fault-filtered lists of Kereliuk, Sturm & Larsen (2015),
shipped as package data (tracks in none of them get an empty ``source_split``). Known-bad
files (``mgr/data/gtzan_known_bad.csv``) are rejected with their reason. With
``data.gtzan.tempo`` the tempo annotations used by mirdata give ``tempo_bpm``.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgr.data.archive import archive_kind, safe_extract
from mgr.data.candidates import Candidates
from mgr.data.download import download, is_url, url_basename, verify_checksum
from mgr.errors import DataError
from mgr.params import GENRES_GTZAN, GtzanParams

if TYPE_CHECKING:  # pragma: no cover
    from mgr.params import Params

GENRES = GENRES_GTZAN
KNOWN_ARCHIVE = "genres.tar.gz"
_FILE_RE = re.compile(r"^(?P<genre>[a-z]+)\.(?P<num>\d{5})\.(?P<ext>au|wav)$", re.IGNORECASE)
_TEMPO_RE = re.compile(r"(?:^|/)tempo/gtzan_(?P<genre>[a-z]+)_(?P<num>\d{5})\.bpm$")
_SPLIT_FILES = {"train": "train_filtered.txt", "val": "valid_filtered.txt", "test": "test_filtered.txt"}


def _data_file(name: str) -> Path:
    return Path(str(resources.files("mgr") / "data" / name))


def fault_filtered_split() -> dict[str, str]:
    """track_id -> ``train``/``val``/``test`` from the shipped fault-filtered lists (930 tracks)."""
    out: dict[str, str] = {}
    for split, fname in _SPLIT_FILES.items():
        for line in _data_file(f"gtzan_fault_filtered/{fname}").read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            stem = Path(line).name
            tid = stem.rsplit(".", 1)[0] if stem.lower().endswith((".wav", ".au")) else stem
            out[tid] = split
    return out


def known_bad() -> list[dict[str, str]]:
    """Rows of ``gtzan_known_bad.csv``: track_id, layout (``kaggle``/``original``/``any``), reason."""
    import csv

    with _data_file("gtzan_known_bad.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def find_genre_root(root: Path, max_depth: int = 4) -> tuple[Path, str]:
    """Find the directory whose sub-directories are the GTZAN genres; return it and the layout.

    The layout is ``kaggle`` when the genre files are ``.wav`` (``Data/genres_original``),
    ``original`` when they are ``.au``.
    """
    frontier = [root]
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for d in frontier:
            try:
                subs = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))
            except OSError:
                continue
            gdirs = [p for p in subs if p.name.lower() in GENRES]
            if len(gdirs) >= 2:
                # genre-named folders that hold GTZAN audio (not e.g. Kaggle's images_original/)
                exts = {f.suffix.lower() for g in gdirs for f in g.iterdir() if _FILE_RE.match(f.name)}
                if exts:
                    return d, ("original" if ".au" in exts and ".wav" not in exts else "kaggle")
            nxt.extend(subs)
        frontier = nxt
    raise DataError(
        f"no GTZAN genre folders (blues/, classical/, ...) found under {root} "
        "(expected genres/<genre>/<genre>.000NN.au or Data/genres_original/<genre>/<genre>.000NN.wav)"
    )


def scan(genre_root: Path) -> list[tuple[str, str, Path]]:
    """``(track_id, genre, file)`` for every ``<genre>.<nnnnn>.(au|wav)`` file, sorted by id."""
    out: list[tuple[str, str, Path]] = []
    for gdir in sorted(p for p in genre_root.iterdir() if p.is_dir()):
        genre = gdir.name.lower()
        if genre not in GENRES:
            continue
        for f in sorted(gdir.iterdir()):
            m = _FILE_RE.match(f.name)
            if f.is_file() and m and m["genre"].lower() == genre:
                out.append((f"{genre}.{m['num']}", genre, f))
    out.sort(key=lambda t: t[0])
    return out


def load_tempo(zip_path: Path) -> dict[str, float]:
    """track_id -> BPM from the tempo annotation zip (``tempo/gtzan_<genre>_<NNNNN>.bpm``)."""
    out: dict[str, float] = {}
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for name in zf.namelist():
                m = _TEMPO_RE.search(name)
                if not m:
                    continue
                text = zf.read(name).decode("utf-8", "replace").split()
                try:
                    out[f"{m['genre']}.{m['num']}"] = float(text[0])
                except (IndexError, ValueError):
                    continue
    except zipfile.BadZipFile:
        raise DataError(f"{zip_path.name} is not a valid zip of GTZAN tempo annotations") from None
    if not out:
        raise DataError(f"{zip_path.name} holds no tempo/gtzan_<genre>_<NNNNN>.bpm annotations")
    return out


def _archive_md5(params: Params, name: str) -> str | None:
    g = params.data.gtzan
    return g.md5 if g.md5 and name == (url_basename(g.url) or KNOWN_ARCHIVE) else None


def _materialise(params: Params, work_dir: Path, progress: bool) -> tuple[Path, bool]:
    """Return a folder holding the audio and whether it is inside ``work_dir`` (extracted)."""
    g = params.data.gtzan
    src = params.data.path or g.url
    if is_url(src) and not src.lower().startswith("file://"):
        name = url_basename(src) or KNOWN_ARCHIVE
        try:
            archive = download(src, Path(params.data.download_dir) / name, md5=_archive_md5(params, name),
                               progress=progress)
        except DataError as e:
            if src == GtzanParams.url:
                raise DataError(
                    f"{e}; the original GTZAN host has been down since about 2022: get the Kaggle re-release "
                    "('GTZAN Dataset - Music Genre Classification') and set data.path to its zip or folder"
                ) from None
            raise
    else:
        local = Path(src[7:] if src.lower().startswith("file://") else src).expanduser()
        if not local.exists():
            raise DataError(f"data.path {local} does not exist (a GTZAN archive, URL or extracted folder)")
        if local.is_dir():
            return local, False
        archive = local
        verify_checksum(archive, md5=_archive_md5(params, archive.name))
    if archive_kind(archive) is None:
        raise DataError(f"{archive.name} is not a tar or zip archive (expected {KNOWN_ARCHIVE} or a Kaggle zip)")
    return safe_extract(archive, work_dir / "extracted"), True


def collect(params: Params, work_dir: Path, *, progress: bool = True) -> Candidates:
    folder, extracted = _materialise(params, work_dir, progress)
    genre_root, layout = find_genre_root(folder)
    files = scan(genre_root)
    if not files:
        raise DataError(f"no GTZAN audio files (<genre>.<nnnnn>.au/.wav) found in {genre_root}")
    splits = fault_filtered_split()
    tempo: dict[str, float] | None = None
    if params.data.gtzan.tempo:
        g = params.data.gtzan
        tzip = download(g.tempo_url, Path(params.data.download_dir) / "gtzan_tempo_beat.zip",
                        md5=g.tempo_md5, progress=progress)
        tempo = load_tempo(tzip)
    bad = {
        r["track_id"]: r["reason"] for r in known_bad() if r.get("layout", "any") in ("any", layout)
    }
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for tid, genre, f in files:
        if extracted:
            path = f.relative_to(work_dir).as_posix()
        elif params.data.copy:
            rel = Path("audio") / genre / f.name
            (work_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, work_dir / rel)
            path = rel.as_posix()
        else:
            path = str(f.resolve())
        if tid in bad:
            rejected.append({"path": path, "reason": f"known bad: {bad[tid]}", "track_id": tid})
            continue
        row: dict[str, Any] = {"track_id": tid, "path": path, "genre": genre, "source_split": splits.get(tid, "")}
        if tempo is not None:
            row["tempo_bpm"] = tempo.get(tid, float("nan"))
        rows.append(row)
    return Candidates(rows=rows, rejected=rejected, genres=list(GENRES))
