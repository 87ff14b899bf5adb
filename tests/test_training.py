"""Deep training from a real (tiny) HDF5 store built by mgr.features.store from click-track audio."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

SR = 8000
CLIP_S = 4.0
TEMPI = (60.0, 90.0, 130.0, 180.0)  # four well separated 10-BPM classes
PITCH = {"low": 500.0, "high": 2500.0}  # the "genre" is the click's pitch, independent of tempo


def click_track(bpm: float, pitch: float, rng: np.random.Generator, *, silent: bool = False) -> np.ndarray:
    n = int(SR * CLIP_S)
    y = 0.003 * rng.standard_normal(n)
    if silent:
        return np.zeros(n, np.float32)
    period = 60.0 / bpm
    t0 = rng.uniform(0, period)
    click = np.sin(2 * np.pi * pitch * np.arange(int(0.03 * SR)) / SR) * np.hanning(int(0.03 * SR))
    for t in np.arange(t0, CLIP_S, period):
        s = int(t * SR)
        e = min(n, s + click.size)
        y[s:e] += 0.6 * click[: e - s]
    return y.astype(np.float32)


def make_store(tmp_path, *, reps: int = 5, silent_eval: bool = False, tags: bool = False, folds: bool = False,
               split_csv=None, spec=None):
    """tempo x pitch x reps click tracks -> data/spectrograms.h5 via mgr.features.store.build_store."""
    import pandas as pd
    import soundfile as sf

    from mgr.features.store import build_store
    from mgr.params import AudioParams, SpectrogramParams

    rng = np.random.default_rng(0)
    rows = []
    k = 0
    for bpm in TEMPI:
        for genre, pitch in PITCH.items():
            for r in range(reps):
                split = "train" if r < reps - 1 else ("val" if (k // reps) % 2 == 0 else "test")
                path = tmp_path / f"{genre}_{int(bpm)}_{r}.wav"
                silent = silent_eval and split != "train"
                sf.write(path, click_track(bpm, pitch, rng, silent=silent), SR)
                row = {"track_id": f"t{k:03d}", "path": str(path), "genre": genre, "split": split,
                       "fold": (k % 3) if folds else -1, "tempo_bpm": bpm}
                if tags:
                    row["tags"] = "fast" if bpm >= 120 else "slow"
                rows.append(row)
                k += 1
    df = pd.DataFrame(rows)
    if split_csv is not None:  # the matching data/split.csv (for the evaluate stage)
        cols = ["track_id", "split"] + (["fold"] if folds else [])
        df[cols].to_csv(split_csv, index=False)
    out = tmp_path / "spectrograms.h5"
    build_store(df, AudioParams(sample_rate=SR), spec or SpectrogramParams(n_fft=512, hop_length=128, n_mels=32),
                out, workers=1, progress=False)
    return out


def tparams(**kw):
    from mgr.params import TrainParams

    base = dict(window_s=2.0, batch_size=16, windows_per_track=4, early_stopping_patience=50,
                reduce_lr_patience=50, tempo_min_bpm=50.0, tempo_max_bpm=200.0, workers=1, seed=3)
    base.update(kw)
    return TrainParams(**base)


@pytest.fixture(scope="module")
def click_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("clicks"))


def test_feeder_draws_only_from_requested_split(tmp_path):
    from mgr.features.store import SpectrogramStore
    from mgr.models.feeder import make_targets, window_feeder

    path = make_store(tmp_path, reps=3, silent_eval=True)  # val/test tracks are digital silence
    with SpectrogramStore(path) as store:
        train = store.indices("train")
        assert 0 < train.size < len(store)
        floor = store.floor_db
        tg = make_targets(store, train, tparams(), tempo=True, tags=False)
        f = window_feeder(store, train, window_frames=store.frames_for_seconds(1.0), batch_size=32, steps=5,
                          targets=tg, seed=1, specaugment=True, fill=np.zeros(store.n_mels, np.float32))
        seen = set()
        for epoch in range(2):
            for b in range(len(f)):
                X, y, w = f[b]
                assert X.shape == (32, store.n_mels, store.frames_for_seconds(1.0), 1)
                tix = f.last_track_index
                seen.update(tix.tolist())
                assert set(tix.tolist()) <= set(train.tolist())
                # every window carries the audio of a (non-silent) train track
                assert (X.reshape(32, -1).max(axis=1) > floor + 20).all()
                np.testing.assert_array_equal(y["genre"].argmax(1), store.genre_idx[tix])
                assert set(y) == {"genre", "tempo"} and set(w) == {"genre", "tempo"}
            f.on_epoch_end()
        assert seen == set(train.tolist())  # 2 epochs x 160 windows reach all 16 train tracks
        # the val side: its own windows, never train's
        from mgr.models.feeder import val_windows

        Xv, tv = val_windows(store, store.indices("val"), store.frames_for_seconds(1.0), 3)
        assert set(tv.tolist()) == set(store.indices("val").tolist())
        assert (Xv <= floor + 1e-3).all()


def test_feeder_reproducible_and_fresh_each_epoch(click_store):
    from mgr.features.store import SpectrogramStore
    from mgr.models.feeder import window_feeder

    with SpectrogramStore(click_store) as store:
        tr = store.indices("train")
        kw = dict(window_frames=40, batch_size=8, steps=3, seed=7)
        a, b = window_feeder(store, tr, **kw), window_feeder(store, tr, **kw)
        np.testing.assert_array_equal(a[1], b[1])
        first = a[1]
        a.on_epoch_end()
        assert not np.array_equal(first, a[1])  # a new draw in the next epoch


def test_mixup_and_specaugment_shapes_and_weights():
    from mgr.models.feeder import mixup, spec_augment

    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 16, 30)).astype(np.float32) + 5
    Xm = spec_augment(X.copy(), rng, np.zeros(16, np.float32))
    assert Xm.shape == X.shape and (Xm == 0).any() and not (Xm == 0).all()
    y = {"genre": np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]}
    w = {"genre": np.array([1, 2, 3, 1, 2, 3], np.float32)}
    X2, y2, w2 = mixup(X[..., None], y, w, rng, 0.4)
    np.testing.assert_allclose(y2["genre"].sum(1), 1.0, rtol=1e-6)
    assert (y2["genre"].max(1) >= 0.5 - 1e-6).all()  # the window keeps its dominant label
    assert X2.shape == (6, 16, 30, 1) and ((w2["genre"] >= 1) & (w2["genre"] <= 3)).all()


def test_class_weights_balance_the_train_split(click_store):
    from mgr.features.store import SpectrogramStore
    from mgr.models.feeder import make_targets

    with SpectrogramStore(click_store) as store:
        keep = np.concatenate([store.indices("train")[store.genre_idx[store.indices("train")] == 0][:2],
                               store.indices("train")[store.genre_idx[store.indices("train")] == 1]])
        tg = make_targets(store, keep, tparams(), tempo=False, tags=False)
        cw = np.array(tg.class_weights)
        counts = np.bincount(store.genre_idx[keep], minlength=2)
        np.testing.assert_allclose(cw * counts, counts.sum() / 2)  # each class carries equal total weight
        assert cw[0] > cw[1]


def test_tempo_bins_and_readout():
    from mgr.models.deep import bpm_from_probs, bpm_to_class, tempo_bins

    b = tempo_bins("10bpm", 30, 300)
    assert len(b["centres"]) == 27 and b["edges"][0] == 30 and b["edges"][-1] == 300
    np.testing.assert_array_equal(bpm_to_class([30, 39.9, 40, 299, 500, np.nan], b["edges"]), [0, 0, 1, 26, 26, -1])
    lb = tempo_bins("log", 30, 300, 16)
    assert len(lb["centres"]) == 16 and np.allclose(np.diff(np.log(lb["edges"])), np.log(10) / 16)
    p = np.zeros((1, 27))
    p[0, [9, 10]] = 0.5  # 120-130 and 130-140 -> 130 BPM
    assert bpm_from_probs(p, b["centres"])[0] == pytest.approx(130.0)


@pytest.mark.slow
def test_tempo_genre_learns_tempo_from_clicks(click_store, tmp_path):
    """The joint net learns the click tempo: loss falls, val tempo class accuracy above chance."""
    from mgr.features.store import SpectrogramStore
    from mgr.models.deep import load
    from mgr.models.training import save_artifact, train_model
    from mgr.params import DlModelParams

    tp = tparams(learning_rate=3e-3, windows_per_track=8)
    mp = DlModelParams(epochs=10, width=0.5, dropout=0.1)
    with SpectrogramStore(click_store) as store:
        res = train_model("tempo_genre", store, tp, mp, live_dir=tmp_path / "live")
        h = res.history
        assert h["tempo_loss"][-1] < 0.8 * h["tempo_loss"][0]
        val = res.metrics["val"]
        # 4 tempi among 15 classes: chance is 0.25 at best; demand clearly better
        assert h["tempo_accuracy"][-1] >= 0.5, h["tempo_accuracy"]
        # held-out tracks (val + test: 8 tracks, 2 per tempo), track-level mean of window probs
        from mgr.models.deep import bpm_to_class

        held = np.concatenate([store.indices("val"), store.indices("test")])
        wf = res.card["window_frames"]
        hits = []
        for i in held:
            p = res.model(store.track_windows(int(i), wf, 0.5)[..., None], training=False)["tempo"]
            true = bpm_to_class(store.tempo_bpm[i], res.card["tempo_bins"]["edges"])
            hits.append(int(np.asarray(p).mean(0).argmax()) == int(true))
        assert np.mean(hits) >= 0.5, (hits, val["tempo"])
        assert res.card["outputs"] == ["genre", "tempo"]
        assert res.card["train_data_hash"] == store.content_hash
        assert res.card["frontend"] == store.frontend
        save_artifact(res.model, res.card, tmp_path / "m")
        art = load(tmp_path / "m")
        Xv = store.track_windows(int(store.indices("val")[0]), art.window_frames, 0.5)
    out = art.predict_windows(Xv)
    assert set(out) == {"genre", "tempo", "tempo_bpm"}
    assert out["tempo"].shape == (len(Xv), 15) and np.all((out["tempo_bpm"] > 50) & (out["tempo_bpm"] < 200))
    # dvclive curves for DVC plots
    assert (tmp_path / "live" / "plots" / "metrics" / "val_loss.tsv").is_file()
    assert (tmp_path / "live" / "plots" / "metrics" / "train_tempo_loss.tsv").is_file()


def test_train_model_writes_card_and_reloads(tmp_path):
    """One short run of cnn2d with tags, mixup and SpecAugment on fold 1 of a k-fold store."""
    from mgr.features.store import SpectrogramStore
    from mgr.models.deep import load
    from mgr.models.training import save_artifact, train_model
    from mgr.params import DlModelParams

    path = make_store(tmp_path, reps=3, tags=True, folds=True)
    tp = tparams(fold=1, mixup=0.3, specaugment=True, steps_per_epoch=2, batch_size=8, window_s=1.0)
    with SpectrogramStore(path) as store:
        assert store.n_folds == 3
        res = train_model("cnn2d", store, tp, DlModelParams(epochs=2, width=0.125))
        card = res.card
        assert card["fold"] == 1 and res.metrics["n_train_tracks"] == store.indices("train", fold=1).size
        assert card["kind"] == "deep" and card["labels"] == ["high", "low"]
        assert card["outputs"] == ["genre", "tags"] and card["tag_vocab"] == ["fast", "slow"]
        assert card["window_frames"] == store.frames_for_seconds(1.0)
        mean, std = store.stats(fold=1)
        np.testing.assert_allclose(card["normalisation"]["mean"], mean, rtol=1e-6)
        assert set(res.metrics["val"]["track"]) >= {"accuracy", "macro_f1", "top3"}
        assert "roc_auc" in res.metrics["val"]["tags"]
        save_artifact(res.model, card, tmp_path / "models" / "cnn2d")
        X = store.random_windows(store.indices("test", fold=1), 5, card["window_frames"], 0)[0]
        store_n_val = store.indices("val", fold=1).size
    on_disk = json.loads((tmp_path / "models" / "cnn2d" / "model.json").read_text())
    assert on_disk["params"]["train"] == {k: v for k, v in dataclasses.asdict(tp).items() if k != "workers"}
    assert "created" not in on_disk  # the same bits on every machine: no time, no execution knob
    art = load(tmp_path / "models" / "cnn2d")
    out = art.predict_windows(X)
    ref = res.model.predict(X[..., None], verbose=0)
    from mgr.evaluation.calibration import apply_temperature

    cal = on_disk["calibration"]  # fitted on the val tracks; the artifact applies it
    assert 0.05 <= cal["temperature"] <= 20 and cal["n_val_tracks"] == store_n_val
    assert cal["val_nll_after"] <= cal["val_nll_before"] + 1e-9
    np.testing.assert_allclose(out["genre"], apply_temperature(ref["genre"], cal["temperature"]), rtol=0,
                               atol=1e-5)  # ONNX (+ the card's temperature) vs Keras
    assert out["tags"].shape == (5, 2)
    assert on_disk["onnx_file"] == "model.onnx" and on_disk["model_file"] == "model.keras"


@pytest.mark.slow  # the pretrained backbone (792k parameters) trains for two short epochs
def test_musicnn_transfer_trains_frozen_then_finetunes(tmp_path):
    """musicnn_transfer: the pretrained backbone on the musicnn store, 187-frame windows, no
    Normalization layer, frozen for `epochs` (its weights stay the checkpoint's), then unfrozen for
    `finetune_epochs`; the card records the weights' provenance; the ONNX artifact equals Keras."""
    from mgr.errors import DataError
    from mgr.features.store import SpectrogramStore
    from mgr.models.deep import load
    from mgr.models.training import save_artifact, train_model
    from mgr.params import SpectrogramParams, TransferParams
    from mgr.pretrained.musicnn import build_musicnn

    (tmp_path / "plain").mkdir()
    plain = make_store(tmp_path / "plain", reps=2)
    with SpectrogramStore(plain) as store, pytest.raises(DataError, match="musicnn"):
        train_model("musicnn_transfer", store, tparams(), TransferParams(epochs=1))
    path = make_store(tmp_path, reps=3, tags=True, spec=SpectrogramParams(preset="musicnn"))
    ref = build_musicnn("MSD_musicnn", outputs="penultimate", dropout=False)
    tp = tparams(steps_per_epoch=2, batch_size=8)
    with SpectrogramStore(path) as store:
        frozen = train_model("musicnn_transfer", store, tp, TransferParams(epochs=1, learning_rate=1e-3))
        bb = frozen.model.get_layer("musicnn")
        for w, w0 in zip(bb.get_weights(), ref.get_weights()):
            np.testing.assert_array_equal(w, w0)  # frozen: the checkpoint's weights
        assert not any(layer.name == "norm" for layer in frozen.model.layers)
        res = train_model("musicnn_transfer", store, tp, TransferParams(epochs=1, finetune_epochs=1))
        assert res.metrics["epochs_run"] == 2
        changed = [not np.array_equal(w, w0) for w, w0 in zip(res.model.get_layer("musicnn").get_weights(),
                                                               ref.get_weights())]
        assert any(changed)  # fine-tuned end to end
        card = res.card
        assert card["window_frames"] == 187 and card["input_shape"] == [96, 187, 1]
        assert card["frontend"]["preset"] == "musicnn" and card["outputs"] == ["genre", "tags"]
        assert card["pretrained"]["source"]["package"] == "musicnn"
        save_artifact(res.model, card, tmp_path / "models" / "musicnn_transfer")
        X = store.random_windows(store.indices("test"), 4, 187, 0)[0]
    out = load(tmp_path / "models" / "musicnn_transfer").predict_windows(X)
    from mgr.evaluation.calibration import apply_temperature

    ref = apply_temperature(res.model.predict(X[..., None], verbose=0)["genre"], card["calibration"]["temperature"])
    np.testing.assert_allclose(out["genre"], ref, atol=1e-4)


def test_stage_entry_user_errors(tmp_path):
    from mgr.errors import DataError, ParamsError
    from mgr.models.training import run_train_dl
    from mgr.params import Params

    with pytest.raises(ParamsError, match="unknown model"):
        run_train_dl("resnet", Params(), store_path=tmp_path / "s.h5", models_dir=tmp_path / "m", metrics_dir=tmp_path / "x")
    with pytest.raises(DataError, match="spectrogram stage"):
        run_train_dl("cnn2d", Params(), store_path=tmp_path / "s.h5", models_dir=tmp_path / "m", metrics_dir=tmp_path / "x")
    assert not (tmp_path / "models").exists()


def test_stage_writes_model_metrics_and_curves(tmp_path):
    """run_train_dl (what stages/train_dl.py calls) end to end on a tiny store."""
    from mgr.models.deep import load
    from mgr.params import DlModelParams, DlParams, Params

    store = make_store(tmp_path, reps=3)
    p = Params(train=tparams(window_s=1.0, steps_per_epoch=2, batch_size=8),
               dl=DlParams(models=["pons_freq"], pons_freq=DlModelParams(epochs=2, width=0.25)))
    from mgr.models.training import run_train_dl

    m = run_train_dl(
        "pons_freq", p, store_path=store, models_dir=tmp_path / "models",
        metrics_dir=tmp_path / "metrics", live_root=tmp_path / "dvclive")
    assert m["epochs_run"] == 2 and m["steps_per_epoch"] == 2
    on_disk = json.loads((tmp_path / "metrics" / "pons_freq.json").read_text())
    assert on_disk["val"]["track"]["n"] == 4
    assert sorted(p.name for p in (tmp_path / "models" / "pons_freq").iterdir()) == ["model.json", "model.keras", "model.onnx"]
    assert load(tmp_path / "models" / "pons_freq").outputs == ["genre"]  # tempo head only for tempo_genre
    assert (tmp_path / "dvclive" / "pons_freq" / "plots" / "metrics" / "val_track_accuracy.tsv").is_file()


def _kfold_params(all_folds: bool):
    from mgr.params import DlModelParams, DlParams, Params

    return Params(train=tparams(window_s=1.0, steps_per_epoch=1, batch_size=8, fold=1, all_folds=all_folds),
                  dl=DlParams(models=["cnn2d"], cnn2d=DlModelParams(epochs=1, width=0.125)))


@pytest.mark.slow
def test_stage_kfold_trains_one_model_per_fold(tmp_path):
    """k-fold store: fold_0..fold_2 artifacts + the top-level one (= train.fold's), metrics mean over folds,
    and the evaluate stage finds one artifact per fold."""
    from mgr.evaluation.scoring import find_artifacts
    from mgr.features.store import SpectrogramStore
    from mgr.models.deep import load
    from mgr.models.training import run_train_dl

    store = make_store(tmp_path, reps=3, folds=True)
    p = _kfold_params(all_folds=True)
    m = run_train_dl("cnn2d", p, store_path=store, models_dir=tmp_path / "models",
                     metrics_dir=tmp_path / "metrics", live_root=tmp_path / "dvclive", log=None)
    base = tmp_path / "models" / "cnn2d"
    assert sorted(x.name for x in base.iterdir()) == ["fold_0", "fold_1", "fold_2", "model.json", "model.keras", "model.onnx"]
    assert not [x for x in base.parent.iterdir() if x.name.startswith(".")]  # no temporary leftovers
    with SpectrogramStore(store) as st:
        n_train = {f: st.indices("train", fold=f).size for f in range(3)}
        X = st.random_windows(st.indices("test", fold=0), 3, st.frames_for_seconds(1.0), 0)[0]
    cards = {}
    for f in range(3):
        d = base / f"fold_{f}"
        assert sorted(x.name for x in d.iterdir()) == ["model.json", "model.keras", "model.onnx"]
        art = load(d)
        cards[f] = art.card
        assert art.card["fold"] == f and art.card["params"]["train"]["fold"] == f
        assert art.predict_windows(X)["genre"].shape == (3, 2)
        assert m["per_fold"][str(f)]["n_train_tracks"] == n_train[f]
    # fold-specific normalisation: the folds really saw different train tracks
    assert cards[0]["normalisation"]["mean"] != cards[1]["normalisation"]["mean"]
    top = load(base)
    assert top.card["fold"] == 1 and top.card["normalisation"] == cards[1]["normalisation"]
    np.testing.assert_allclose(top.predict_windows(X)["genre"], load(base / "fold_1").predict_windows(X)["genre"],
                               rtol=1e-6)
    # metrics: mean/std over folds, fold 1's run as the base
    on_disk = json.loads((tmp_path / "metrics" / "cnn2d.json").read_text())
    assert on_disk["folds"] == 3 and on_disk["fold"] == 1 and sorted(on_disk["per_fold"]) == ["0", "1", "2"]
    accs = [on_disk["per_fold"][str(f)]["val"]["track"]["accuracy"] for f in range(3)]
    assert on_disk["val"]["track"]["accuracy"] == pytest.approx(np.mean(accs))
    assert on_disk["val_std"]["track"]["accuracy"] == pytest.approx(np.std(accs))
    assert on_disk["n_train_tracks"] == n_train[1]
    # dvclive: train.fold's run only, at the usual place
    assert (tmp_path / "dvclive" / "cnn2d" / "plots" / "metrics" / "val_loss.tsv").is_file()
    # evaluate scores each fold's test part with that fold's model
    assert find_artifacts(tmp_path / "models", "cnn2d", [0, 1, 2]) == {f: base / f"fold_{f}" for f in range(3)}


def test_stage_kfold_all_folds_false_trains_train_fold_only(tmp_path):
    from mgr.evaluation.scoring import find_artifacts
    from mgr.models.deep import load
    from mgr.models.training import run_train_dl

    store = make_store(tmp_path, reps=3, folds=True)
    m = run_train_dl("cnn2d", _kfold_params(all_folds=False), store_path=store, models_dir=tmp_path / "models",
                     metrics_dir=tmp_path / "metrics", live_root=None, log=None)
    base = tmp_path / "models" / "cnn2d"
    assert sorted(x.name for x in base.iterdir()) == ["model.json", "model.keras", "model.onnx"]
    assert load(base).card["fold"] == 1
    assert m["fold"] == 1 and "per_fold" not in m and "folds" not in m
    assert find_artifacts(tmp_path / "models", "cnn2d", [0, 1, 2]) == {1: base}


@pytest.mark.slow
def test_kfold_models_evaluate_reports_mean_over_folds(tmp_path):
    """train-dl's per-fold models -> the evaluate stage scores every fold with its own model."""
    import shutil

    from _eval_helpers import eval_paths

    from mgr.evaluation.scoring import run_evaluate
    from mgr.models.training import run_train_dl

    (tmp_path / "data").mkdir()
    store = make_store(tmp_path, reps=3, folds=True, split_csv=tmp_path / "data" / "split.csv")
    shutil.move(store, tmp_path / "data" / "spectrograms.h5")
    p = _kfold_params(all_folds=True)
    p = dataclasses.replace(p, ml=dataclasses.replace(p.ml, models=[]),
                            evaluate=dataclasses.replace(p.evaluate, window_s=1.0, tempo_baseline=False))
    run_train_dl("cnn2d", p, store_path=tmp_path / "data" / "spectrograms.h5", models_dir=tmp_path / "models",
                 metrics_dir=tmp_path / "metrics" / "train-dl", live_root=None, log=None)
    summary = run_evaluate(p, eval_paths(tmp_path), log=lambda s: None)
    m = json.loads((tmp_path / "metrics" / "cnn2d.json").read_text())
    assert m["n_folds"] == 3 and m["folds"] == [0, 1, 2]
    assert all(m["per_fold"][f]["source"] == "evaluate" for f in "012")
    accs = [m["per_fold"][f]["track"]["accuracy"] for f in "012"]
    assert summary["cnn2d"]["n_folds"] == 3
    assert summary["cnn2d"]["accuracy"] == pytest.approx(np.mean(accs), abs=1e-6)
    assert summary["cnn2d"]["n_tracks"] == 24  # every track is in exactly one fold's test part
