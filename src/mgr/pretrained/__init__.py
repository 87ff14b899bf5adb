"""Pretrained backbones rebuilt in Keras 3 from their published checkpoints.

* :mod:`mgr.pretrained.musicnn` -- musicnn (Pons & Serra 2019), the ``MSD_musicnn`` and
  ``MTT_musicnn`` taggers: NumPy front end, Keras model with the original weights (checked
  against the original TF1 graph), embeddings, a transfer-learning builder and a saved artifact.

Importing this package costs NumPy only; Keras/TensorFlow are imported when a model is built.
"""

from __future__ import annotations

from mgr.pretrained.musicnn import (
    BACKBONES,
    FRONTEND,
    MSD_LABELS,
    MTT_LABELS,
    build_musicnn,
    build_transfer,
    embed_patches,
    embedding_names,
    keras_runner,
    logmel,
    onnx_runner,
    patches,
    save_backbone,
    set_backbone_trainable,
    tag_vocab,
    track_embedding,
)

__all__ = [
    "BACKBONES",
    "FRONTEND",
    "MSD_LABELS",
    "MTT_LABELS",
    "build_musicnn",
    "build_transfer",
    "embed_patches",
    "embedding_names",
    "keras_runner",
    "logmel",
    "onnx_runner",
    "patches",
    "save_backbone",
    "set_backbone_trainable",
    "tag_vocab",
    "track_embedding",
]
