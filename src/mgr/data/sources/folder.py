"""The ``folder`` source: your own audio as ``<genre>/<file>`` or a CSV manifest.

``data.path`` is either

- a directory whose sub-directories are genres (``blues/blues.00000.wav``, ``rock/x/y.mp3``,
  GTZAN's original ``.au`` files ...): every audio file (wav, au, flac, ogg, mp3) below a genre
  directory is a track of that genre; or
- a CSV manifest with columns ``path, genre`` and optionally ``track_id, artist, tempo_bpm,
  tags, source_split`` (+ any extra columns, kept as they are); relative paths are relative to
  the manifest's directory.

Files are referenced in place (absolute paths in ``tracks.csv``) unless ``data.copy`` is true;
then they are copied into the dataset directory (``audio/<genre>/<file>``) and referenced
relative to it. Track ids are file stems, made unique deterministically when two files share
a stem.

Which manifest paths are read: any regular file with an audio extension, wherever it is. A
manifest may point outside its own folder (``../``, absolute paths: a shared music library is a
legitimate use), but such paths are counted and reported once as a warning (and as
``paths_outside_folder`` in ``metrics/fetch.json``), since a manifest copied from elsewhere
can point anywhere. A path that is not a regular file (a directory, FIFO, device, socket) or has
no audio extension (``/etc/passwd``) is refused with the reason in ``rejected.csv`` and never
opened: reading a FIFO blocks, a device may never end.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgr.data.candidates import AUDIO_EXTENSIONS, Candidates
from mgr.data.probe import file_kind
from mgr.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from mgr.params import Params

MANIFEST_OPTIONAL = ("track_id", "artist", "tempo_bpm", "tags", "source_split")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test", "": ""}


def is_audio(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")


def unique_ids(stems: list[str], genres: list[str]) -> list[str]:
    """Deterministic unique ids: the stem if unique, else ``stem.genre``, else ``stem.genre.k``.

    ``stems``/``genres`` must be in a deterministic order (callers sort by path).
    """
    from collections import Counter

    counts = Counter(stems)
    out: list[str] = []
    used: set[str] = set()
    for s, g in zip(stems, genres):
        cand = s if counts[s] == 1 else f"{s}.{g}"
        k = 1
        base = cand
        while cand in used:
            k += 1
            cand = f"{base}.{k}"
        used.add(cand)
        out.append(cand)
    return out


def scan_genre_dir(root: Path) -> list[tuple[Path, str]]:
    """``(file, genre)`` for every audio file below a genre sub-directory of ``root`` (sorted)."""
    found: list[tuple[Path, str]] = []
    for gdir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(gdir.rglob("*")):
            if is_audio(f) and not any(part.startswith(".") for part in f.relative_to(gdir).parts):
                found.append((f, gdir.name))
    return found


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("._") or "x"


def _copy_in(work_dir: Path, src: Path, genre: str, track_id: str) -> str:
    rel = Path("audio") / _safe_name(genre) / f"{_safe_name(track_id)}{src.suffix.lower()}"
    dst = work_dir / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return rel.as_posix()


def _from_directory(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    found = scan_genre_dir(root)
    if not found:
        raise DataError(
            f"data.path {root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in <genre>/ sub-directories"
        )
    ids = unique_ids([f.stem for f, _ in found], [g for _, g in found])
    rows = [{"track_id": t, "path": str(f.resolve()), "genre": g} for (f, g), t in zip(found, ids)]
    return rows, []


def _from_manifest(manifest: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import pandas as pd

    try:
        df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"data.path {manifest}: not a readable CSV manifest ({type(e).__name__})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("path", "genre") if c not in df.columns]
    if missing:
        raise DataError(f"data.path {manifest}: the manifest lacks the column(s) {missing} (needs path, genre)")
    if df.empty:
        raise DataError(f"data.path {manifest}: the manifest has no rows")

    base = manifest.parent
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    paths = [Path(p.strip()).expanduser() for p in df["path"]]
    paths = [p if p.is_absolute() else (base / p) for p in paths]
    if "track_id" in df.columns and (df["track_id"].str.strip() != "").all():
        ids = [t.strip() for t in df["track_id"]]
        if len(set(ids)) != len(ids):
            dup = sorted({t for t in ids if ids.count(t) > 1})
            raise DataError(f"data.path {manifest}: duplicate track_id(s) {dup[:5]}")
    else:
        order = sorted(range(len(df)), key=lambda i: str(paths[i]))
        sorted_ids = unique_ids([paths[i].stem for i in order], [df["genre"].iloc[i].strip() for i in order])
        ids = [""] * len(df)
        for i, t in zip(order, sorted_ids):
            ids[i] = t
    for i, rec in enumerate(df.to_dict("records")):
        genre = rec["genre"].strip()
        p = paths[i]
        if not genre:
            rejected.append({"path": str(p), "reason": "manifest row has no genre", "track_id": ids[i]})
            continue
        kind = file_kind(p)
        if kind == "missing":
            rejected.append({"path": str(p), "reason": "file not found", "track_id": ids[i]})
            continue
        if kind != "file":
            rejected.append({"path": str(p), "reason": f"not a regular file ({kind}): not read", "track_id": ids[i]})
            continue
        if p.suffix.lower() not in AUDIO_EXTENSIONS:
            rejected.append({"path": str(p), "track_id": ids[i], "reason": (
                f"not an audio file (extension {p.suffix or 'none'!r}; allowed {', '.join(AUDIO_EXTENSIONS)}): not read")})
            continue
        row: dict[str, Any] = {"track_id": ids[i], "path": str(p.resolve()), "genre": genre}
        for k, v in rec.items():
            if k in ("path", "genre", "track_id"):
                continue
            v = v.strip() if isinstance(v, str) else v
            if k == "tempo_bpm":
                try:
                    v = float(v) if v != "" else float("nan")
                except ValueError:
                    raise DataError(f"data.path {manifest}: tempo_bpm {v!r} (row {i + 2}) is not a number") from None
            elif k == "source_split":
                key = v.lower()
                if key not in _SPLIT_ALIASES:
                    raise DataError(
                        f"data.path {manifest}: source_split {v!r} (row {i + 2}) is not one of train, val, test"
                    )
                v = _SPLIT_ALIASES[key]
            row[k] = v
        rows.append(row)
    return rows, rejected


def collect(params: Params, work_dir: Path) -> Candidates:
    """Gather the candidate tracks of ``data.path`` (see the module docstring)."""
    if not params.data.path:
        raise DataError("data.path is required when data.source is 'folder' (a directory or a CSV manifest)")
    src = Path(params.data.path).expanduser()
    if not src.exists():
        raise DataError(f"data.path {src} does not exist")
    if src.is_dir():
        rows, rejected = _from_directory(src)
    elif src.suffix.lower() == ".csv":
        rows, rejected = _from_manifest(src)
    else:
        raise DataError(f"data.path {src}: expected a <genre>/<file> directory or a .csv manifest")
    outside = _outside(rows, src if src.is_dir() else src.parent)
    stats: dict[str, Any] = {"paths_outside_folder": len(outside)}
    if outside:
        print(
            f"warning: data.path {src}: {len(outside)} file(s) lie outside {src if src.is_dir() else src.parent}"
            f" (e.g. {outside[0]}); they are read where they are",
            file=sys.stderr,
        )
    if params.data.copy:
        for r in rows:
            r["path"] = _copy_in(work_dir, Path(r["path"]), r["genre"], r["track_id"])
    genres = sorted({r["genre"] for r in rows})
    return Candidates(rows=rows, rejected=rejected, genres=genres, stats=stats)


def _outside(rows: list[dict[str, Any]], base: Path) -> list[str]:
    """Paths of ``rows`` that resolve (symlinks, ``..``) outside ``base``."""
    root = base.resolve()
    return [r["path"] for r in rows if not Path(r["path"]).resolve().is_relative_to(root)]
