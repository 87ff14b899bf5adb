"""Track-level train/val/test splits (and k folds), deterministic given the seed.

Splits are always by track (never by window) so that no audio of one track is in two parts;
the ``group`` strategy also keeps every artist in one part. Strategies:

``stratified``
    Per genre, shuffle with the seed and cut ``test_size`` / ``val_size`` fractions.
``kfold``
    Stratified k folds: tracks are shuffled within genre and dealt round-robin into folds,
    continuing the count across genres so fold sizes stay balanced. ``fold`` is the track's
    test fold; fold f's assignment is test = fold f, val = fold (f+1) % k, train = the rest
    (:func:`fold_split`). With ``artist`` known, whole artists are dealt instead of tracks.
``group``
    By artist where known (a track without an artist is its own group): groups, largest
    first in a seeded order, go to the part whose per-genre quota is furthest from full.
``predefined``
    The source's official split (``source_split`` column: FMA's ``set/split``, GTZAN's
    fault-filtered lists of Kereliuk, Sturm & Larsen 2015, or a manifest column). Tracks
    without one are left out of ``split.csv`` (counted in the metrics).

Duplicates: tracks that fetch found to hold the same audio (``dup_group``, or else equal
``fingerprint``; see :mod:`mgr.data.fetch`) always end up in one part / fold. ``group`` and
``kfold`` treat a duplicate set like an artist (joined with the artist groups it touches);
``stratified`` (and ``kfold`` without artists) moves every member of a set to the part / fold
its first member (by track id) drew; ``predefined`` cannot move anything and warns when an
official split puts copies of one recording in two parts. A dataset with fewer than two genres
is refused (a classifier needs two).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from mgr.errors import DataError
from mgr.params import SplitParams

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

PARTS = ("train", "val", "test")


class SplitWarning(UserWarning):
    """A class is too small to appear in every part."""


def _rng(seed: int, *salt: str) -> np.random.Generator:
    # Derive a stream from the seed and a label, so that one genre's shuffle does not depend
    # on how many tracks another genre has.
    import zlib

    key = [seed] + [zlib.crc32(s.encode()) for s in salt]
    return np.random.default_rng(key)


def _artists(tracks: pd.DataFrame) -> pd.Series:
    """A group key per track: the artist where known, else the track itself; tracks of one
    duplicate set (:func:`duplicate_sets`) share the key of the set (the smallest member key)."""
    import pandas as pd
    tid = tracks["track_id"].astype(str)
    if "artist" not in tracks.columns:
        keys = "track:" + tid
    else:
        art = tracks["artist"]
        known = art.notna() & (art.astype(str).str.strip() != "")
        keys = pd.Series(np.where(known, "artist:" + art.astype(str), "track:" + tid), index=tracks.index)
    dups = duplicate_sets(tracks)
    if dups.empty:
        return keys
    # union of "same artist" and "same audio": connected components over both relations
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for _, members in dups.groupby(dups, sort=True):
        ks = sorted({keys[i] for i in members.index})
        for k in ks[1:]:
            ra, rb = find(ks[0]), find(k)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return keys.map(lambda k: find(k) if k in parent else k)


def duplicate_sets(tracks: pd.DataFrame) -> pd.Series:
    """The duplicate-set key of every track in a set of two or more (index of ``tracks``):
    ``dup_group`` where fetch wrote one, else the exact ``fingerprint``; empty when none."""
    import pandas as pd
    key = pd.Series("", index=tracks.index, dtype=object)
    for col in ("fingerprint", "dup_group"):  # dup_group (exact + near) wins where present
        if col in tracks.columns:
            v = tracks[col].fillna("").astype(str).str.strip()
            key = key.where(v == "", col + ":" + v)
    key = key[key != ""]
    return key[key.map(key.value_counts()) > 1]


def _snap_duplicates(tracks: pd.DataFrame, out: pd.Series) -> pd.Series:
    """Give every member of a duplicate set the value ``out`` has for its first member."""
    dups = duplicate_sets(tracks)
    if dups.empty:
        return out
    out = out.copy()
    for _, members in dups.groupby(dups, sort=True):
        idx = sorted(members.index, key=lambda i: str(tracks.at[i, "track_id"]))
        out[idx] = out[idx[0]]
    return out


def _warn_small(genre: str, n: int, needed: int, what: str) -> None:
    warnings.warn(
        f"genre {genre!r} has {n} track(s): it cannot appear in every {what} (needs at least {needed})",
        SplitWarning,
        stacklevel=3,
    )


def _stratified(tracks: pd.DataFrame, p: SplitParams) -> pd.DataFrame:
    import pandas as pd
    out = pd.Series("train", index=tracks.index, dtype=object)
    for genre, idx in tracks.groupby("genre", sort=True).groups.items():
        idx = np.array(sorted(idx, key=lambda i: str(tracks.at[i, "track_id"])))
        _rng(p.seed, "stratified", str(genre)).shuffle(idx)
        n = len(idx)
        n_test = int(round(n * p.test_size))
        n_val = int(round(n * p.val_size))
        if n >= 3:
            n_test = max(1, n_test)
            n_val = max(1, n_val) if p.val_size > 0 else 0
        if n_test + n_val >= n:  # keep at least one training track
            n_test = min(n_test, max(n - 1, 0))
            n_val = max(0, min(n_val, n - 1 - n_test))
        needed = 3 if p.val_size > 0 else 2
        if n < needed:
            _warn_small(str(genre), n, needed, "split")
        out[idx[:n_test]] = "test"
        out[idx[n_test : n_test + n_val]] = "val"
    out = _snap_duplicates(tracks, out)
    return pd.DataFrame({"track_id": tracks["track_id"].astype(str), "split": out.values})


def _kfold(tracks: pd.DataFrame, p: SplitParams) -> pd.DataFrame:
    import pandas as pd
    groups = _artists(tracks)
    has_groups = groups.str.startswith("artist:").any() or groups.duplicated().any()
    fold = pd.Series(-1, index=tracks.index, dtype=int)
    counter = 0
    if not has_groups:
        for genre, idx in tracks.groupby("genre", sort=True).groups.items():
            idx = np.array(sorted(idx, key=lambda i: str(tracks.at[i, "track_id"])))
            _rng(p.seed, "kfold", str(genre)).shuffle(idx)
            if len(idx) < p.k:
                _warn_small(str(genre), len(idx), p.k, "fold")
            for i in idx:
                fold[i] = counter % p.k
                counter += 1
    else:
        # whole groups go to the fold with the fewest tracks of their majority genre
        fill = {}
        order = _group_order(tracks, groups, p.seed, "kfold")
        for _, members in order:
            major = tracks.loc[members, "genre"].astype(str).mode().iloc[0]
            counts = fill.setdefault(major, np.zeros(p.k, dtype=int))
            totals = np.array([(fold == f).sum() for f in range(p.k)])
            f = int(np.lexsort((totals, counts))[0])
            fold[members] = f
            counts[f] += len(members)
    df = pd.DataFrame({"track_id": tracks["track_id"].astype(str), "fold": fold.values})
    df["split"] = fold_split(df, 0)["split"].values
    return df[["track_id", "split", "fold"]]


def _group_order(tracks: pd.DataFrame, groups: pd.Series, seed: int, salt: str) -> list[tuple[str, list]]:
    members: dict[str, list] = {}
    for i, g in groups.items():
        members.setdefault(g, []).append(i)
    names = sorted(members)
    rng = _rng(seed, salt)
    perm = rng.permutation(len(names))
    shuffled = [names[i] for i in perm]
    # largest groups first (stable on the seeded order) so the greedy fill balances well
    shuffled.sort(key=lambda g: -len(members[g]))
    return [(g, members[g]) for g in shuffled]


def _group(tracks: pd.DataFrame, p: SplitParams) -> pd.DataFrame:
    import pandas as pd
    groups = _artists(tracks)
    fracs = {"test": p.test_size, "val": p.val_size, "train": 1.0 - p.test_size - p.val_size}
    genre_n = tracks["genre"].astype(str).value_counts()
    target = {s: {g: n * fracs[s] for g, n in genre_n.items()} for s in PARTS}
    current = {s: {g: 0.0 for g in genre_n.index} for s in PARTS}
    out = pd.Series("train", index=tracks.index, dtype=object)
    for _, members in _group_order(tracks, groups, p.seed, "group"):
        counts = tracks.loc[members, "genre"].astype(str).value_counts()
        best, best_score = "train", -np.inf
        for s in ("test", "val", "train"):
            if fracs[s] <= 0:
                continue
            # relative deficit of this part for the group's genres
            score = sum(c * (target[s][g] - current[s][g]) / max(target[s][g], 1e-9) for g, c in counts.items())
            if score > best_score + 1e-12:
                best, best_score = s, score
        out[members] = best
        for g, c in counts.items():
            current[best][g] += c
    for g, n in genre_n.items():
        present = {s for s in PARTS if current[s][g] > 0}
        wanted = {s for s in PARTS if fracs[s] > 0}
        if present != wanted:
            _warn_small(g, int(n), len(wanted), "split (artist groups too few or too large)")
    return pd.DataFrame({"track_id": tracks["track_id"].astype(str), "split": out.values})


def _predefined(tracks: pd.DataFrame, p: SplitParams) -> pd.DataFrame:
    import pandas as pd
    if "source_split" not in tracks.columns:
        raise DataError(
            "split.strategy 'predefined' needs a source_split column in tracks.csv "
            "(FMA, GTZAN fault-filtered, or a folder manifest with source_split)"
        )
    s = tracks["source_split"].astype("string").str.strip().str.lower()
    aliases = {"training": "train", "validation": "val", "valid": "val", "train": "train", "val": "val", "test": "test"}
    mapped = s.map(lambda v: aliases.get(v) if isinstance(v, str) else None)
    bad = s[s.notna() & (s != "") & mapped.isna()]
    if len(bad):
        raise DataError(
            f"source_split has unknown values {sorted(set(bad))[:5]} (allowed: train, val, test, training, validation)"
        )
    keep = mapped.notna()
    if not keep.any():
        raise DataError("split.strategy 'predefined': no track has a source_split")
    dups = duplicate_sets(tracks[keep])
    if not dups.empty:
        parts = mapped[dups.index].groupby(dups).nunique()
        if (parts > 1).any():
            warnings.warn(
                f"the predefined split puts copies of the same audio in two parts for {int((parts > 1).sum())} "
                f"duplicate set(s) (see duplicates.csv of the fetch); it is used as published",
                SplitWarning,
                stacklevel=3,
            )
    return pd.DataFrame({"track_id": tracks.loc[keep, "track_id"].astype(str), "split": mapped[keep].values})


STRATEGIES = {"stratified": _stratified, "kfold": _kfold, "group": _group, "predefined": _predefined}


def make_split(tracks: pd.DataFrame, p: SplitParams) -> pd.DataFrame:
    """Assign every track of ``tracks`` (columns ``track_id, genre`` [+ ``artist``,
    ``source_split``]) to train/val/test (and a fold in k-fold mode)."""
    if tracks.empty:
        raise DataError("no tracks to split (tracks.csv is empty: did every file get rejected?)")
    if tracks["track_id"].duplicated().any():
        dup = tracks.loc[tracks["track_id"].duplicated(), "track_id"].astype(str).tolist()[:5]
        raise DataError(f"duplicate track_id in tracks.csv, e.g. {dup}")
    genres = sorted(tracks["genre"].dropna().astype(str).unique())
    if len(genres) < 2:
        raise DataError(
            f"only {len(genres)} genre ({', '.join(genres)}) among the {len(tracks)} track(s) of tracks.csv: "
            "genre classification needs at least 2"
        )
    tracks = tracks.reset_index(drop=True)
    df = STRATEGIES[p.strategy](tracks, p)
    return df.reset_index(drop=True)


def fold_parts(fold: np.ndarray, f: int, k: int) -> np.ndarray:
    """THE fold rule (every user of folds goes through it): for test fold ``f`` of ``k``, a track
    of fold ``f`` is test, of fold ``(f + 1) % k`` val, of any other fold train; a track without a
    fold (``-1``, left out by a predefined split) is in no part (``""``)."""
    fold = np.asarray(fold)
    part = np.where(fold == f, "test", np.where(fold == (f + 1) % k, "val", "train")).astype(object)
    part[fold < 0] = ""
    return part.astype(str)


def fold_split(split: pd.DataFrame, fold: int) -> pd.DataFrame:
    """Fold ``fold``'s assignment: test = tracks of that fold, val = the next fold, train = the rest.

    Without a ``fold`` column (not k-fold mode) the split is returned unchanged.
    """
    if "fold" not in split.columns:
        return split[["track_id", "split"]].copy()
    k = int(split["fold"].max()) + 1
    if not 0 <= fold < k:
        raise DataError(f"fold {fold} does not exist (the split has {k} folds)")
    part = fold_parts(split["fold"].to_numpy(), fold, k)
    out = split[["track_id"]].copy()
    out["split"] = part
    out["fold"] = split["fold"].values
    return out


def n_folds(split: pd.DataFrame) -> int:
    """Number of folds (1 when not in k-fold mode)."""
    return int(split["fold"].max()) + 1 if "fold" in split.columns else 1


def summary(split: pd.DataFrame, tracks: pd.DataFrame) -> dict:
    """Counts per part (and per genre per part) for ``metrics/split.json``."""
    merged = split.merge(tracks[["track_id", "genre"]].astype({"track_id": str}), on="track_id", how="left")
    out: dict = {
        "n_tracks": int(len(split)),
        "n_excluded": int(len(tracks) - len(split)),
        "parts": {s: int((split["split"] == s).sum()) for s in PARTS},
        "per_genre": {
            str(g): {s: int(((merged["genre"] == g) & (merged["split"] == s)).sum()) for s in PARTS}
            for g in sorted(merged["genre"].dropna().astype(str).unique())
        },
    }
    if "fold" in split.columns:
        out["folds"] = {str(f): int((split["fold"] == f).sum()) for f in range(n_folds(split))}
    return out
