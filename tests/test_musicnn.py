"""mgr.pretrained.musicnn: front end vs librosa, Keras rebuild vs the original TF1 graph on the
same checkpoints, tag vocabularies, artifact (.keras + ONNX + card), embeddings, transfer model.

The original is musicnn's own ``models.py`` run under ``tf.compat.v1`` graph mode in a
subprocess (``TF_USE_LEGACY_KERAS=1`` so ``tf.compat.v1.layers`` resolve through ``tf_keras``),
restoring the wheel's checkpoint exactly as ``musicnn.extractor`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mgr.pretrained import builtin, transfer
from mgr.pretrained import embedding as emb
from mgr.pretrained import musicnn as mn

SR = 16000
TOL = 1e-3  # taggram / penultimate max abs difference allowed against the original graph

REF_SCRIPT = r"""
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf
tf.compat.v1.disable_eager_execution()
from musicnn import models
pkg_dir, inp, out = sys.argv[1:4]
X = np.load(inp)["x"]
res = {}
for name in ("MSD_musicnn", "MTT_musicnn"):
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):  # as musicnn.extractor does
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, timbral, temporal, cnn1, cnn2, cnn3, mean_pool, max_pool, pen = models.define_model(x, is_training, name, 50)
        taggram = tf.nn.sigmoid(y)
    with tf.compat.v1.Session() as sess:
        tf.compat.v1.train.Saver().restore(sess, os.path.join(pkg_dir, name) + "/")
        r = sess.run([taggram, pen, mean_pool, max_pool], feed_dict={x: X, is_training: False})
    for k, v in zip(("taggram", "penultimate", "mean_pool", "max_pool"), r):
        res[name + "/" + k] = v
np.savez(out, **res)
"""


def _signal(seconds: float, seed: int = 0, loud: float = 1.0) -> np.ndarray:
    """Music-like test signal: harmonic tones with vibrato and tremolo, a noisy pulse, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for f in rng.uniform(100, 1500, 3):
        for h in (1, 2, 3):
            y += 0.2 / h * np.sin(2 * np.pi * h * f * t + 3 * np.sin(2 * np.pi * 5 * t)) * (1 + np.sin(2 * np.pi * 0.7 * t))
    y += 0.6 * (np.mod(t, 0.5) < 0.04) * rng.standard_normal(t.size)
    y += 0.01 * rng.standard_normal(t.size)
    return (loud * y / np.max(np.abs(y))).astype(np.float32)


# ------------------------------------------------------------------------------ front end
def _librosa_logmel(y: np.ndarray, pad_mode: str = "constant") -> np.ndarray:
    librosa = pytest.importorskip("librosa")
    S = librosa.feature.melspectrogram(y=y, sr=SR, hop_length=256, n_fft=512, n_mels=96, pad_mode=pad_mode).T
    return np.log10(10000 * S + 1)  # musicnn's formula, without its float16 cast


@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")
@pytest.mark.parametrize("seconds", [7.3, 3.0, 0.5, 0.03])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_logmel_matches_librosa(seconds, pad_mode):
    y = _signal(seconds, seed=int(seconds * 100))
    ours, ref = mn.logmel(y, pad_mode), _librosa_logmel(y, pad_mode)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (1 + len(y) // 256, 96)
    assert np.max(np.abs(ours - ref)) < 1e-5 * max(1.0, float(np.abs(ref).max()))


def test_pad_modes_differ_only_at_the_edges():
    y = _signal(2.0, seed=4)
    a, b = mn.logmel(y, "constant"), mn.logmel(y, "reflect")
    np.testing.assert_array_equal(a[1:-1], b[1:-1])
    assert np.abs(a[0] - b[0]).max() > 0
    with pytest.raises(ValueError):
        mn.logmel(y, "edge")


def test_logmel_stays_finite_where_musicnns_float16_cast_overflows():
    y = _signal(4.0, seed=3, loud=1.0)
    spec = mn.logmel(y)
    assert np.isfinite(spec).all()
    # 10000 * mel > 65504 (float16 max) somewhere: musicnn's extractor would give inf here
    assert spec.max() > np.log10(65505.0)
    with np.errstate(over="ignore"):
        mel16 = ((10 ** spec - 1) / 10000).astype(np.float16)
        assert np.isinf(np.log10(10000 * mel16 + 1)).any()


def test_frontend_description():
    fe = mn.FRONTEND
    assert (fe["sr"], fe["n_fft"], fe["hop"], fe["n_mels"], fe["patch_frames"]) == (16000, 512, 256, 96, 187)
    assert (fe["scale"], fe["log_gain"], fe["pad_mode"]) == ("log10_1p", 10000.0, "reflect")
    from mgr.dsp.frontend import musicnn_frontend

    assert {k: v for k, v in fe.items() if k in musicnn_frontend()} == musicnn_frontend()  # the one front end
    json.dumps(fe)


def test_patches_hop_tail_and_repeat_pad():
    spec = np.arange(500 * 96, dtype=np.float32).reshape(500, 96)
    P = mn.patches(spec)
    assert P.shape == (2, 187, 96) and P.dtype == np.float32  # 374 frames used, tail of 126 dropped
    np.testing.assert_array_equal(P[1], spec[187:374])
    P = mn.patches(spec, hop=100)
    assert P.shape == (4, 187, 96)  # starts 0, 100, 200, 300
    np.testing.assert_array_equal(P[3], spec[300:487])
    short = spec[:50]
    P = mn.patches(short)
    assert P.shape == (1, 187, 96)
    np.testing.assert_array_equal(P[0, :50], short)
    np.testing.assert_array_equal(P[0, 50:100], short)  # repeated, not zero padded
    np.testing.assert_array_equal(P[0, 150:187], short[:37])
    assert mn.patches(spec[:187]).shape == (1, 187, 96)
    with pytest.raises(ValueError):
        mn.patches(np.zeros((0, 96), np.float32))
    with pytest.raises(ValueError):
        mn.patches(np.zeros((200, 95), np.float32))


# ---------------------------------------------------------------------------- vocabularies
def test_tag_vocabularies_equal_musicnns():
    from musicnn import configuration  # plain constants; only tests import musicnn code

    assert list(mn.MSD_LABELS) == configuration.MSD_LABELS == mn.tag_vocab("MSD_musicnn")
    assert list(mn.MTT_LABELS) == configuration.MTT_LABELS == mn.tag_vocab("musicnn_mtt")
    assert len(mn.MSD_LABELS) == len(mn.MTT_LABELS) == 50
    names = mn.embedding_names("MSD_musicnn")
    assert len(names) == 400 == len(set(names))
    assert names[0] == "musicnn_msd_mean_000" and names[199] == "musicnn_msd_mean_199"
    assert names[200] == "musicnn_msd_max_000" and names[-1] == "musicnn_msd_max_199"
    with pytest.raises(ValueError):
        mn.tag_vocab("MSD_vgg")


# --------------------------------------------------------------------- equivalence (slow)
@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    """Inputs, the original graph's outputs and ours, for both checkpoints."""
    pytest.importorskip("tf_keras", reason="the original TF1 graph needs tf-keras (TF_USE_LEGACY_KERAS)")
    tmp = tmp_path_factory.mktemp("musicnn_ref")
    rng = np.random.default_rng(0)
    real = mn.patches(mn.logmel(_signal(10.0, seed=1)))  # 3 patches of a music-like signal
    loud = mn.patches(mn.logmel(_signal(3.1, seed=2, loud=1.0)))
    X = np.concatenate([real, loud, rng.uniform(0, 4, (2, 187, 96)).astype(np.float32)])
    np.savez(tmp / "in.npz", x=X)
    script = tmp / "ref.py"
    script.write_text(REF_SCRIPT)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, str(script), str(mn.package_dir()), str(tmp / "in.npz"), str(tmp / "out.npz")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = dict(np.load(tmp / "out.npz"))
    ours = {}
    for name in mn.BACKBONES:
        run = emb.keras_runner(mn.build_musicnn(name))
        for k, v in run(X).items():
            ours[f"{name}/{k}"] = v
    return X, ref, ours


@pytest.mark.slow
@pytest.mark.parametrize("name", mn.BACKBONES)
def test_keras_rebuild_matches_original_graph(equivalence, name):
    X, ref, ours = equivalence
    diffs = {}
    for k in mn.OUTPUTS:
        a, b = ours[f"{name}/{k}"], ref[f"{name}/{k}"]
        assert a.shape == b.shape == (len(X), {"taggram": 50, "penultimate": 200}.get(k, 753))
        diffs[k] = float(np.max(np.abs(a - b)))
    print(f"{name} max abs diff vs original: {diffs}")
    assert diffs["taggram"] <= TOL and diffs["penultimate"] <= TOL, diffs
    scale = max(float(np.abs(ref[f"{name}/max_pool"]).max()), 1.0)
    assert diffs["mean_pool"] <= TOL * scale and diffs["max_pool"] <= TOL * scale, diffs


@pytest.mark.slow
def test_each_patch_gets_its_own_embedding(equivalence):
    """musicnn's extractor repeats the first batch's penultimate for every patch; we don't."""
    X, ref, ours = equivalence
    for name in mn.BACKBONES:
        pen = ours[f"{name}/penultimate"]
        for i in range(len(pen)):
            for j in range(i + 1, len(pen)):
                assert np.max(np.abs(pen[i] - pen[j])) > 0.05, (name, i, j)
        # the first patch alone gives its own row (no batch effects in inference mode)
        run = emb.keras_runner(mn.build_musicnn(name, outputs=("penultimate",)))
        np.testing.assert_allclose(emb.embed_patches(run, X[2:3])[0], pen[2], atol=1e-4)
    # and the two checkpoints are different networks
    assert np.max(np.abs(ours["MSD_musicnn/taggram"] - ours["MTT_musicnn/taggram"])) > 0.05


# ------------------------------------------------------------------------ model structure
def test_weight_map_covers_the_checkpoint_and_fails_loudly(monkeypatch):
    model = mn.build_musicnn("MTT_musicnn")
    assert model.input_shape == (None, 187, 96)
    assert sorted(model.output_names) == sorted(mn.OUTPUTS)
    assert model.count_params() == 792_079  # = the checkpoint's non-optimiser variables, summed
    assert not any(type(layer).__name__ == "Lambda" for layer in model.layers)
    # an unmapped checkpoint variable (or a missing one) is an error, not a silent skip
    monkeypatch.setattr(mn, "_WEIGHT_MAP", mn._WEIGHT_MAP[:-1])
    with pytest.raises(ValueError, match="unmapped"):
        mn.build_musicnn("MTT_musicnn")


def test_shape_mismatch_fails_loudly(monkeypatch):
    swapped = tuple(
        (layer, {"conv2d": "conv2d_1", "conv2d_1": "conv2d"}.get(scope, scope), kind)
        for layer, scope, kind in mn._WEIGHT_MAP
    )
    monkeypatch.setattr(mn, "_WEIGHT_MAP", swapped)
    with pytest.raises(ValueError, match="shape"):
        mn.build_musicnn("MSD_musicnn")


# ------------------------------------------------------------------- artifact (slow: ONNX)
@pytest.mark.slow
def test_save_backbone_card_keras_and_onnx(tmp_path):
    import keras

    from mgr.io import file_hash

    d = builtin.save_backbone("MSD_musicnn", tmp_path / "musicnn_msd")
    card = json.loads((d / "model.json").read_text())
    assert card["name"] == "musicnn_msd" and card["kind"] == "pretrained"
    assert card["source"]["package"] == "musicnn" and card["source"]["version"] == "0.1.0"
    files = card["source"]["files"]
    assert set(files) >= {".data-00000-of-00001", ".index", ".meta"}
    ck = mn.checkpoint_dir("MSD_musicnn")
    assert all(files[f] == file_hash(ck / f) for f in files)
    assert card["licence"]["spdx"] == "ISC"
    assert "Music Technology Group, Universitat Pompeu Fabra" in card["licence"]["copyright"]
    assert "Pons" in card["citation"]["text"] and "musicnn" in card["citation"]["text"]
    assert card["tag_vocab"] == list(mn.MSD_LABELS)
    assert card["frontend"] == json.loads(json.dumps(mn.FRONTEND))
    assert card["outputs"] == list(mn.OUTPUTS)
    assert card["model_sha256"] == file_hash(d / "model.keras")

    model = keras.models.load_model(d / "model.keras", safe_mode=True, compile=False)
    X = mn.patches(mn.logmel(_signal(6.5, seed=5)))
    want = emb.keras_runner(mn.build_musicnn("MSD_musicnn"))(X)
    got = emb.keras_runner(model)(X)
    for k in mn.OUTPUTS:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5)

    if "onnx_file" not in card:
        pytest.skip(f"ONNX step skipped: {card.get('onnx_skipped')}")
    assert card["onnx_sha256"] == file_hash(d / card["onnx_file"])
    run = emb.onnx_runner(d / card["onnx_file"])
    onnx_out = run(X)
    assert sorted(onnx_out) == sorted(mn.OUTPUTS)
    diffs = {k: float(np.max(np.abs(onnx_out[k] - want[k]))) for k in mn.OUTPUTS}
    print(f"ONNX vs Keras max abs diff: {diffs}")
    assert diffs["taggram"] <= TOL and diffs["penultimate"] <= TOL, diffs
    np.testing.assert_allclose(emb.track_embedding(run, _signal(8.0, seed=6)),
                               emb.track_embedding(emb.keras_runner(model), _signal(8.0, seed=6)), atol=TOL)


# -------------------------------------------------------------------------- embeddings
def test_embed_patches_and_track_embedding_with_any_runner():
    calls = []

    def fake(X):
        calls.append(X.shape)
        return {"penultimate": np.repeat(X.mean(axis=(1, 2))[:, None], 200, axis=1) + np.arange(200)}

    y = _signal(10.0, seed=7)  # 626 frames -> 3 patches
    e = emb.track_embedding(fake, y)
    assert e.shape == (400,) and e.dtype == np.float32 and calls == [(3, 187, 96)]
    P = mn.patches(mn.logmel(y))
    E = emb.embed_patches(fake, P)
    np.testing.assert_allclose(e, np.concatenate([E.mean(0), E.max(0)]), rtol=1e-6)
    assert emb.track_embedding(fake, _signal(1.0, seed=8)).shape == (400,)  # < 3 s: repeat-padded
    assert emb.track_embedding(fake, y, hop=93).shape == (400,) and calls[-1] == (5, 187, 96)
    assert emb.embed_patches(fake, np.zeros((0, 187, 96), np.float32)).shape == (0, 200)
    with pytest.raises(ValueError):
        emb.embed_patches(fake, np.zeros((2, 96, 187), np.float32))


def test_track_embedding_keras_real_patches_differ():
    run = emb.keras_runner(mn.build_musicnn("MSD_musicnn", outputs=("penultimate",)))
    y = np.concatenate([_signal(3.0, seed=9), _signal(3.0, seed=10, loud=0.05)])
    E = emb.embed_patches(run, mn.patches(mn.logmel(y)))
    assert E.shape == (2, 200) and np.max(np.abs(E[0] - E[1])) > 0.05
    e = emb.track_embedding(run, y)
    np.testing.assert_allclose(e[:200], E.mean(0), atol=1e-6)
    np.testing.assert_allclose(e[200:], E.max(0), atol=1e-6)


# ------------------------------------------------------------------------------ transfer
def test_build_transfer_layout_freeze_and_safe_roundtrip(tmp_path):
    import keras

    model = transfer.build_transfer("MTT_musicnn", 10, n_tags=5, n_tempo_classes=8, dropout=0.0)
    assert model.input_shape == (None, 96, 187, 1)
    assert sorted(model.output_names) == ["genre", "tags", "tempo"]
    bb = model.get_layer("musicnn")
    assert not bb.trainable and len(model.trainable_weights) == 6  # head only
    X = np.stack([mn.patches(mn.logmel(_signal(3.0, seed=s)))[0] for s in (11, 12)])  # (2, 187, 96)
    windows = np.transpose(X, (0, 2, 1))[..., None]  # the store's (mels, frames, 1) layout
    ref = emb.keras_runner(mn.build_musicnn("MTT_musicnn", outputs=("penultimate",)))(X)["penultimate"]
    np.testing.assert_allclose(np.asarray(bb(X)), ref, atol=1e-5)

    transfer.set_backbone_trainable(model, True)
    assert bb.trainable and len(model.trainable_weights) == 6 + 18  # convs + denses; BN frozen
    # frozen BN runs in inference mode and the backbone has no dropout: training=True changes nothing
    a, b = model(windows, training=True), model(windows, training=False)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=1e-6)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    assert loaded.get_layer("musicnn").trainable and len(loaded.trainable_weights) == 24
    c = loaded(windows, training=True)
    for k in b:
        np.testing.assert_allclose(np.asarray(c[k]), np.asarray(b[k]), atol=1e-6)

    fm = transfer.build_transfer("MSD_musicnn", 3, input_layout="frames_mels", weights=False)
    assert fm.input_shape == (None, 187, 96) and fm.output_names == ["genre"]
    with pytest.raises(ValueError):
        transfer.build_transfer("MSD_musicnn", 3, input_layout="nchw")
