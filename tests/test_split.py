"""Split invariants: by track (and artist), deterministic, stratified, sensible for small classes."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from mgr.data.split import SplitWarning, fold_split, make_split, n_folds, summary
from mgr.errors import DataError
from mgr.params import SplitParams


def check_disjoint(split: pd.DataFrame, tracks: pd.DataFrame, *, by_artist: bool) -> list[str]:
    """Problems found (empty when fine): duplicate tracks, or artists in two parts/folds."""
    problems: list[str] = []
    if split["track_id"].duplicated().any():
        problems.append("a track is listed twice")
    if by_artist and "artist" in tracks.columns:
        m = split.merge(tracks[["track_id", "artist"]].astype({"track_id": str}), on="track_id")
        m = m[m["artist"].notna() & (m["artist"].astype(str) != "")]
        unit = "fold" if "fold" in m.columns else "split"
        multi = m.groupby("artist")[unit].nunique()
        bad = multi[multi > 1].index
        problems.extend(f"artist {a!r} is in several {unit}s" for a in bad)
    return problems


def make_tracks(n_per_genre: int = 20, genres: int = 4, artists_per_genre: int | None = None, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(genres):
        for i in range(n_per_genre):
            row = {"track_id": f"g{g}.{i:05d}", "genre": f"genre{g}"}
            if artists_per_genre:
                # a few artists cross genres, as in real data
                a = int(rng.integers(artists_per_genre))
                row["artist"] = f"artist{g}-{a}" if rng.random() > 0.1 else f"crossover{a}"
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(25))
def test_stratified_invariants_over_seeds(seed: int) -> None:
    tracks = make_tracks(n_per_genre=10 + seed)
    p = SplitParams(strategy="stratified", seed=seed, test_size=0.2, val_size=0.1)
    s = make_split(tracks, p)
    assert sorted(s["track_id"]) == sorted(tracks["track_id"])  # every track exactly once
    assert not s["track_id"].duplicated().any()
    assert set(s["split"]) == {"train", "val", "test"}
    m = s.merge(tracks, on="track_id")
    for g, grp in m.groupby("genre"):
        n = len(grp)
        assert abs((grp["split"] == "test").sum() - round(n * 0.2)) <= 1
        assert abs((grp["split"] == "val").sum() - round(n * 0.1)) <= 1
    pd.testing.assert_frame_equal(s, make_split(tracks, p))  # deterministic


def test_seed_changes_assignment() -> None:
    tracks = make_tracks()
    a = make_split(tracks, SplitParams(seed=1))
    b = make_split(tracks, SplitParams(seed=2))
    assert (a["split"] != b["split"]).any()


@pytest.mark.parametrize("seed", range(25))
def test_group_split_never_puts_an_artist_in_two_parts(seed: int) -> None:
    tracks = make_tracks(n_per_genre=30, artists_per_genre=6, seed=seed)
    s = make_split(tracks, SplitParams(strategy="group", seed=seed, test_size=0.2, val_size=0.2))
    assert check_disjoint(s, tracks, by_artist=True) == []
    assert sorted(s["track_id"]) == sorted(tracks["track_id"])
    frac = (s["split"] == "test").mean()
    assert 0.08 < frac < 0.35, frac  # groups make it approximate, not wild


def test_group_split_without_artists_is_a_track_split() -> None:
    tracks = make_tracks(n_per_genre=20)
    s = make_split(tracks, SplitParams(strategy="group", seed=3))
    assert len(s) == len(tracks) and set(s["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize("seed", range(10))
def test_kfold_folds_partition_tracks_and_rotate(seed: int) -> None:
    tracks = make_tracks(n_per_genre=23)
    s = make_split(tracks, SplitParams(strategy="kfold", k=5, seed=seed))
    assert n_folds(s) == 5
    sizes = s["fold"].value_counts().to_numpy()
    assert sizes.max() - sizes.min() <= 1  # balanced
    m = s.merge(tracks, on="track_id")
    per = m.groupby(["genre", "fold"]).size().unstack()
    assert (per.max(axis=1) - per.min(axis=1)).max() <= 1  # stratified
    seen_test = []
    for f in range(5):
        a = fold_split(s, f)
        assert set(a["split"]) == {"train", "val", "test"}
        seen_test.extend(a.loc[a["split"] == "test", "track_id"])
        assert not set(a.loc[a.split == "test", "track_id"]) & set(a.loc[a.split == "train", "track_id"])
    assert sorted(seen_test) == sorted(tracks["track_id"])  # each track is tested exactly once
    # fold 0's assignment is the default split column
    assert (fold_split(s, 0)["split"].to_numpy() == s["split"].to_numpy()).all()


@pytest.mark.parametrize("seed", range(10))
def test_kfold_with_artists_keeps_artists_in_one_fold(seed: int) -> None:
    tracks = make_tracks(n_per_genre=30, artists_per_genre=8, seed=seed)
    s = make_split(tracks, SplitParams(strategy="kfold", k=3, seed=seed))
    assert check_disjoint(s, tracks, by_artist=True) == []
    assert set(s["fold"]) == {0, 1, 2}


def test_predefined_uses_source_split_and_leaves_out_unlisted() -> None:
    tracks = make_tracks(n_per_genre=5, genres=2)
    tracks["source_split"] = ["training", "validation", "test", None, "train"] * 2
    s = make_split(tracks, SplitParams(strategy="predefined"))
    assert len(s) == 8
    assert s["split"].tolist()[:4] == ["train", "val", "test", "train"]
    assert summary(s, tracks)["n_excluded"] == 2
    tracks.loc[0, "source_split"] = "holdout"
    with pytest.raises(DataError, match="holdout"):
        make_split(tracks, SplitParams(strategy="predefined"))
    with pytest.raises(DataError, match="source_split"):
        make_split(tracks.drop(columns="source_split"), SplitParams(strategy="predefined"))


def test_small_class_warns_and_keeps_a_training_track() -> None:
    tracks = pd.concat(
        [make_tracks(n_per_genre=20, genres=2), pd.DataFrame({"track_id": ["rare.1", "rare.2"], "genre": ["rare"] * 2})]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = make_split(tracks, SplitParams(strategy="stratified"))
    assert any(issubclass(w.category, SplitWarning) and "'rare'" in str(w.message) for w in caught)
    rare = s[s.track_id.str.startswith("rare")]
    assert "train" in set(rare["split"])


def test_empty_and_duplicate_tracks_are_clear_errors() -> None:
    with pytest.raises(DataError, match="empty"):
        make_split(pd.DataFrame(columns=["track_id", "genre"]), SplitParams())
    dup = pd.DataFrame({"track_id": ["a", "a"], "genre": ["x", "x"]})
    with pytest.raises(DataError, match="duplicate"):
        make_split(dup, SplitParams())


def test_fold_parts_is_the_one_fold_rule():
    from mgr.data.split import fold_parts
    from mgr.features.store import _fold_mask

    fold = np.array([0, 1, 2, 3, -1, 0, 3])
    assert fold_parts(fold, 3, 4).tolist() == ["val", "train", "train", "test", "", "val", "test"]
    for part in ("train", "val", "test"):  # the store's reader and the table agree
        np.testing.assert_array_equal(_fold_mask(fold, 3, 4, part), fold_parts(fold, 3, 4) == part)
