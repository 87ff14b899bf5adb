"""Pretrained backbones rebuilt in Keras 3 from their published checkpoints.

* :mod:`mgr.pretrained.musicnn` -- musicnn (Pons & Serra 2019), the ``MSD_musicnn`` and
  ``MTT_musicnn`` taggers rebuilt from the wheel's checkpoints (checked against the original TF1
  graph), their front end and names.
* :mod:`mgr.pretrained.embedding` -- runners (Keras or ONNX) and the 400-value track embedding.
* :mod:`mgr.pretrained.transfer` -- the frozen body ``musicnn_transfer`` trains its heads on.
* :mod:`mgr.pretrained.builtin` -- the built-in taggers, built once into the cache.

Importing these costs NumPy only; Keras/TensorFlow are imported when a model is built.
"""
