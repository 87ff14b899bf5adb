"""One inference runtime for every model: ONNX files run by onnxruntime.

* :mod:`mgr.models.export` (train time): a fitted Keras / scikit-learn / XGBoost model ->
  ``model.onnx`` (heavy converters imported inside the functions).
* :mod:`mgr.inference.runtime` (evaluate and predict time): :class:`~mgr.inference.runtime.OnnxModel`,
  a hash-checked onnxruntime session; imports neither TensorFlow/Keras nor scikit-learn/XGBoost.

``evaluate`` and ``mgr predict`` both score through :class:`OnnxModel` on the same file, so the
leaderboard measures exactly what ``predict`` runs. Nothing is imported here at package import.
"""

from __future__ import annotations

ONNX_FILE = "model.onnx"
