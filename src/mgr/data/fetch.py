"""Dataset sources and the fetch step: ``data/raw/<source>/`` with ``tracks.csv`` and ``rejected.csv``.

Each source module (``synthetic``, ``folder``, ``gtzan``, ``fma``) has a ``collect(params,
work_dir, ...)`` that gathers candidate tracks (and any tracks already known to be bad) into
a :class:`Candidates`; :func:`fetch` then probes every audio file in parallel and writes the
two tables. The whole dataset directory is built under a temporary sibling name and renamed
when complete, so a killed fetch never leaves a dataset that looks complete.

Duplicates: the probe fingerprints every accepted file (:mod:`mgr.data.fingerprint`);
``tracks.csv`` gets ``fingerprint`` (exact: hash of the decoded samples), ``near_fingerprint``
(coarse spectral key) and ``dup_group`` (the smallest track id of the track's set of exact or
near duplicates; empty when it has none). ``duplicates.csv`` lists every track in such a set
and what was done with it, ``metrics/fetch.json`` counts them. ``data.duplicates`` decides:

``group`` (default)
    keep every copy; the split keeps each ``dup_group`` in one part / fold (no leak).
``drop_conflicts``
    exact copies filed under different genres are all dropped (``rejected.csv``: the genres and
    the other copies); same-genre copies are kept and grouped.
``drop``
    as ``drop_conflicts``, and of same-genre exact copies only the first (by track id) is kept.

Near duplicates are never dropped (the key is coarse), only grouped and reported.
A dataset with fewer than two genres left is an error here, not in train-ml.

Public API: :func:`fetch`, :func:`dataset_dir`, :class:`FetchResult` (the table readers are in :mod:`mgr.data.tracks`).
This module is imported by the CLI, so pandas and the sources are imported lazily.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgr.data import probe
from mgr.data.candidates import AUDIO_EXTENSIONS, Candidates  # noqa: F401 - re-exported
from mgr.data.fingerprint import find_duplicates
from mgr.data.sources import fma, folder, gtzan, synthetic
from mgr.data.tracks import (
    BASE_COLUMNS,
    FINGERPRINT_COLUMNS,
    OPTIONAL_COLUMNS,
    REJECTED_COLUMNS,
    REJECTED_FILE,
    TRACKS_FILE,
)
from mgr.errors import DataError
from mgr.io import atomic_path, clean_stale_temps, n_workers

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mgr.params import Params

DUPLICATES_FILE = "duplicates.csv"
DUPLICATES_COLUMNS = ["dup_group", "kind", "track_id", "genre", "path", "action"]
DUPLICATE_POLICIES = ("group", "drop_conflicts", "drop")


@dataclass(frozen=True)
class FetchResult:
    source: str
    dataset_dir: Path
    n_tracks: int
    n_rejected: int
    n_per_genre: dict[str, int]
    genres: list[str] | None = None
    duplicates: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """The content of ``metrics/fetch.json``."""
        return {
            "source": self.source,
            "n_tracks": self.n_tracks,
            "n_rejected": self.n_rejected,
            "n_per_genre": dict(sorted(self.n_per_genre.items())),
            "duplicates": dict(self.duplicates),
            **self.stats,
        }


def dataset_dir(params: Params, root: str | Path) -> Path:
    """Where ``fetch`` puts the dataset: ``root/<data.source>``."""
    return Path(root) / params.data.source


def _collect(params: Params, work_dir: Path, progress: bool) -> Candidates:
    source = params.data.source
    if source == "folder":
        return folder.collect(params, work_dir)
    if source == "gtzan":
        return gtzan.collect(params, work_dir, progress=progress)
    if source == "fma":
        return fma.collect(params, work_dir, progress=progress)
    if source == "synthetic":
        return _collect_synthetic(params, work_dir)
    raise DataError(f"unknown data.source {source!r}")  # params validation normally catches this


def _collect_synthetic(params: Params, work_dir: Path) -> Candidates:
    df = synthetic.generate(
        work_dir,
        params.data.synthetic,
        seed=params.data.seed,
        inject_corrupt=params.data.inject_corrupt,
        workers=n_workers(params.data.workers),
    )
    genres = getattr(synthetic, "GENRES", None)
    return Candidates(rows=df.to_dict("records"), genres=list(genres) if genres is not None else None)


def _clean_stale(root: Path, source: str) -> None:
    """Remove temporary directories left by an earlier fetch that was killed (and only those:
    a fetch still running in another process owns its temporary, named by its PID)."""

    clean_stale_temps(root / source)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def finalize(work_dir: Path, cand: Candidates, *, min_duration_s: float, workers: int,
             progress: bool = True, duplicates: str = "group") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Probe the candidates and write ``tracks.csv`` / ``rejected.csv`` / ``duplicates.csv`` into
    ``work_dir`` (duplicate policy ``duplicates``: see the module docstring). ``tracks.attrs
    ["duplicates"]`` holds the duplicate counts for ``metrics/fetch.json``."""
    import pandas as pd

    rows = list(cand.rows)
    for r in rows:
        for key in ("track_id", "path", "genre"):
            if key not in r or _is_missing(r[key]) or str(r[key]) == "":
                raise DataError(f"fetch: a candidate track lacks {key!r}: {r}")
    ids = Counter(str(r["track_id"]) for r in rows)
    dup = sorted(t for t, n in ids.items() if n > 1)
    if dup:
        raise DataError(f"fetch: duplicate track_id(s) {dup[:5]} in the source")

    abs_paths = [Path(r["path"]) if Path(r["path"]).is_absolute() else work_dir / r["path"] for r in rows]
    results = probe.probe_files(abs_paths, min_duration_s=min_duration_s, workers=workers, progress=progress)

    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = [
        {"path": str(r.get("path", "")), "reason": str(r["reason"]), "track_id": r.get("track_id", "")}
        for r in cand.rejected
    ]
    for r, res in zip(rows, results):
        if res.ok:
            rec = dict(r)
            rec.update(duration_s=round(res.duration_s, 6), sample_rate=res.sample_rate, channels=res.channels,
                       fingerprint=res.fingerprint, near_fingerprint=res.near_fingerprint)
            accepted.append(rec)
        else:
            rejected.append({"path": str(r["path"]), "reason": res.reason, "track_id": str(r["track_id"])})
    accepted, dup_rows, dup_stats = _apply_duplicates(accepted, rejected, duplicates)

    extra: list[str] = []
    for r in rows:
        for k in r:
            if k not in BASE_COLUMNS and k not in OPTIONAL_COLUMNS and k not in extra:
                extra.append(k)
    present_optional = [c for c in OPTIONAL_COLUMNS if any(c in r for r in rows)]
    columns = BASE_COLUMNS + present_optional + FINGERPRINT_COLUMNS + [c for c in extra if c not in FINGERPRINT_COLUMNS]
    tracks = pd.DataFrame(accepted, columns=columns)
    tracks["track_id"] = tracks["track_id"].astype(str)
    tracks["path"] = tracks["path"].astype(str)
    tracks["genre"] = tracks["genre"].astype(str)
    for c in ("tags", "artist", "source_split"):
        if c in tracks:
            tracks[c] = tracks[c].map(lambda v: "" if _is_missing(v) else str(v))
    if "tempo_bpm" in tracks:
        tracks["tempo_bpm"] = pd.to_numeric(tracks["tempo_bpm"], errors="coerce")
    for c in FINGERPRINT_COLUMNS:
        tracks[c] = tracks[c].map(lambda v: "" if _is_missing(v) else str(v))
    rej = pd.DataFrame(rejected, columns=REJECTED_COLUMNS)
    rej["track_id"] = rej["track_id"].map(lambda v: "" if _is_missing(v) else str(v))
    tracks.to_csv(work_dir / TRACKS_FILE, index=False)
    rej.to_csv(work_dir / REJECTED_FILE, index=False)
    pd.DataFrame(dup_rows, columns=DUPLICATES_COLUMNS).to_csv(work_dir / DUPLICATES_FILE, index=False)
    tracks.attrs["duplicates"] = dup_stats
    return tracks, rej


def _apply_duplicates(
    accepted: list[dict[str, Any]], rejected: list[dict[str, Any]], policy: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Find exact / near duplicates among ``accepted``, apply ``policy`` (dropped tracks are
    appended to ``rejected``); return the kept tracks (with ``dup_group``), the rows of
    ``duplicates.csv`` and the counts for ``metrics/fetch.json``."""

    if policy not in DUPLICATE_POLICIES:
        raise DataError(f"data.duplicates {policy!r} is not one of {', '.join(DUPLICATE_POLICIES)}")
    ids = [str(r["track_id"]) for r in accepted]
    found = find_duplicates(ids, [r.get("fingerprint", "") for r in accepted],
                            [r.get("near_fingerprint", "") for r in accepted])
    drop: dict[int, str] = {}
    n_conflicting = 0
    for members in found.exact_sets:
        genres = sorted({str(accepted[i]["genre"]) for i in members})
        names = [ids[i] for i in members]
        if len(genres) > 1:
            n_conflicting += 1
            if policy in ("drop", "drop_conflicts"):
                for i in members:
                    others = ", ".join(t for t in names if t != ids[i])[:200]
                    drop[i] = (f"duplicate audio filed under several genres ({', '.join(genres)}): "
                               f"same samples as {others} (data.duplicates: {policy})")
        elif policy == "drop":
            for i in members[1:]:
                drop[i] = f"exact duplicate of {names[0]} (same decoded samples; data.duplicates: drop)"
    exact_of = {i: k for k, members in enumerate(found.exact_sets) for i in members}
    near_members = {i for a, b, _ in found.near for i in (a, b)}
    rows: list[dict[str, Any]] = []
    for i, r in enumerate(accepted):
        if not found.group[i]:
            continue
        kind = "exact" if i in exact_of else "near"
        if i in exact_of and i in near_members:
            kind = "exact+near"
        rows.append({"dup_group": found.group[i], "kind": kind, "track_id": ids[i], "genre": str(r["genre"]),
                     "path": str(r["path"]), "action": "dropped" if i in drop else "kept"})
    rows.sort(key=lambda d: (d["dup_group"], d["track_id"]))
    kept: list[dict[str, Any]] = []
    for i, r in enumerate(accepted):
        if i in drop:
            rejected.append({"path": str(r["path"]), "reason": drop[i], "track_id": ids[i]})
        else:
            kept.append({**r, "dup_group": found.group[i]})
    # a group whose other members were all dropped is no group any more
    sizes = Counter(r["dup_group"] for r in kept if r["dup_group"])
    for r in kept:
        if r["dup_group"] and sizes[r["dup_group"]] < 2:
            r["dup_group"] = ""
    stats = {
        "policy": policy,
        "exact_sets": len(found.exact_sets),
        "exact_tracks": sum(len(m) for m in found.exact_sets),
        "conflicting_sets": n_conflicting,
        "near_pairs": len(found.near),
        "groups": len({g for g in found.group if g}),
        "dropped": len(drop),
    }
    return kept, rows, stats


def fetch(params: Params, root: str | Path, *, progress: bool = True) -> FetchResult:
    """Build ``root/<data.source>/`` for ``params.data`` (see the module docstring)."""

    root = Path(root)
    source = params.data.source
    target = dataset_dir(params, root)
    root.mkdir(parents=True, exist_ok=True)
    _clean_stale(root, source)
    with atomic_path(target, is_dir=True) as work:
        cand = _collect(params, work, progress)
        tracks, rej = finalize(
            work, cand, min_duration_s=params.data.min_duration_s,
            workers=n_workers(params.data.workers), progress=progress,
            duplicates=getattr(params.data, "duplicates", "group"),
        )
        if tracks.empty:
            raise DataError(
                f"fetch: no usable audio in the {source} source "
                f"({len(rej)} file(s) rejected; see the reasons with data.min_duration_s={params.data.min_duration_s})"
                + (f", first: {rej.iloc[0]['path']}: {rej.iloc[0]['reason']}" if len(rej) else "")
            )
        n_genres = tracks["genre"].nunique()
        if n_genres < 2:
            raise DataError(
                f"fetch: only {n_genres} genre ({', '.join(sorted(tracks['genre'].unique()))}) among the "
                f"{len(tracks)} usable track(s) of the {source} source: genre classification needs at least 2"
            )
        dup_stats = dict(tracks.attrs.get("duplicates", {}))
    per_genre = {str(g): int(n) for g, n in tracks["genre"].value_counts().sort_index().items()}
    return FetchResult(
        source=source, dataset_dir=target, n_tracks=len(tracks), n_rejected=len(rej),
        n_per_genre=per_genre, genres=cand.genres, duplicates=dup_stats, stats=dict(cand.stats),
    )


__all__ = [
    "AUDIO_EXTENSIONS",
    "Candidates",
    "DUPLICATE_POLICIES",
    "FetchResult",
    "dataset_dir",
    "fetch",
    "finalize",
]
