"""A long file with a ``gtzan57`` classical model: the streamed segments' features computed in
chunks on worker processes (mgr.inference.predictors._parallel_gtzan57) equal the in-process ones,
the answer is the same, and a time limit stops the workers."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _classical_helpers import SR, tiny_gtzan57_logreg, tone

import mgr.inference.predictors as P
from mgr.audio.decode import stream_blocks
from mgr.dsp import gtzan_stream
from mgr.errors import AudioError
from mgr.inference.inputs import _Budget
from mgr.inference.predictors import load_predictor


@pytest.fixture(scope="module")
def long_case(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny gtzan57 logreg and a 4 min 7 s file (two chunks, the second partial, a silent
    stretch holding a whole segment, an end-aligned last segment)."""
    tmp = tmp_path_factory.mktemp("parallel")
    tiny_gtzan57_logreg(tmp / "logreg")
    rng = np.random.default_rng(0)
    parts = [tone(50.0, 880.0, 140.0), np.zeros(50 * SR, np.float32), tone(70.0, 160.0, 90.0),
             tone(77.0, 440.0, 120.0)]
    y = np.concatenate(parts)
    y = y + (0.01 * rng.standard_normal(len(y))).astype(np.float32) * (np.abs(y) > 0)
    path = tmp / "long.wav"
    sf.write(str(path), y, SR, subtype="FLOAT")
    return tmp / "logreg", path


def test_parallel_segment_features_equal_the_sequential_ones(long_case):
    _, path = long_case
    n, hop = 30 * SR, (15 * SR) // 512 * 512
    seq = []
    for start, seg, real, feats in gtzan_stream.stream_gtzan57(stream_blocks(path, SR), SR, n, hop):
        seq.append((start, real, None if P._silent_samples(seg[:real]) else feats()))
    par = []
    gen = P._parallel_gtzan57(stream_blocks(path, SR), SR, n, hop, 2, _Budget(None, None))
    for start, seg, real, feats in gen:
        par.append((start, real, None if P._silent_samples(seg[:real]) else feats()))
    assert [s[:2] for s in par] == [s[:2] for s in seq]
    assert len(seq) == 16 and seq[-1][0] == 247 * SR - n and seq[-2][0] + n < 247 * SR  # end-aligned last
    assert [s[2] is None for s in seq].count(True) >= 1  # a silent segment: no features
    for (_, _, a), (_, _, b) in zip(seq, par):
        if a is None:
            assert b is None
            continue
        assert list(a) == list(b)
        np.testing.assert_allclose(np.array(list(b.values())), np.array(list(a.values())), rtol=1e-4, atol=1e-6)
    assert not mp.active_children()


def test_parallel_prediction_equals_the_in_process_one(long_case):
    model, path = long_case
    seq_pred = load_predictor(model, top_k=2, timeline=True, gate=False)
    seq_pred.segment_workers = 1
    seq = seq_pred.predict_file(path)
    par_pred = load_predictor(model, top_k=2, timeline=True, gate=False)
    par_pred.segment_workers = 2
    assert par_pred._segment_workers(247.0, 30 * SR, 15 * SR // 512 * 512) == 2
    par = par_pred.predict_file(path)
    assert (par.genre, par.tempo_source, par.n_windows) == (seq.genre, seq.tempo_source, seq.n_windows)
    assert [lab for lab, _ in par.top_k] == [lab for lab, _ in seq.top_k]
    assert dict(par.top_k) == pytest.approx(dict(seq.top_k), abs=1e-4)
    assert par.tempo_bpm == pytest.approx(seq.tempo_bpm, rel=1e-6)
    assert [(s.start_s, s.end_s, s.silent, s.genre) for s in par.segments] == \
        [(s.start_s, s.end_s, s.silent, s.genre) for s in seq.segments]
    assert not mp.active_children()


def test_time_limit_stops_the_workers(long_case):
    model, path = long_case
    pred = load_predictor(model, time_limit_s=0.5, gate=False)
    pred.segment_workers = 2
    with pytest.raises(AudioError, match="gave up after --timeout 0.5 s"):
        pred.predict_file(path)
    assert not mp.active_children()


def test_short_files_and_workers_stay_in_process(long_case):
    model, _ = long_case
    pred = load_predictor(model, gate=False)  # (test tones: the no-music gate would refuse them)
    n, hop = 30 * SR, 15 * SR // 512 * 512
    assert pred._segment_workers(P.CLASSICAL_PARALLEL_MIN_S, n, hop) == 1
    assert pred._segment_workers(0.0, n, hop) == 1  # (undeclared length)
    pred.segment_workers = 1
    assert pred._segment_workers(3600.0, n, hop) == 1


def test_jobs_sets_the_segment_workers(long_case):
    """`mgr predict --jobs 1` is in-process throughout: predict_many hands its worker count to the
    classical predictor (a long file's segments then stay in this process)."""
    from mgr.inference.predict import predict_many

    model, path = long_case
    pred = load_predictor(model, gate=False)  # (test tones: the no-music gate would refuse them)
    [res] = predict_many(pred, [path], workers=1)
    assert pred.segment_workers == 1 and res.genre is not None and not mp.active_children()
    assert pred._segment_workers(3600.0, 30 * SR, 15 * SR // 512 * 512) == 1
    predict_many(pred, [], workers=2)
    assert pred.segment_workers == 2 and pred._segment_workers(3600.0, 30 * SR, 15 * SR // 512 * 512) == 2
