"""Predict-time ONNX runtime: :class:`OnnxModel`, a hash-checked onnxruntime session.

The one place where evaluate and ``mgr predict`` run a model. Imports numpy only at module
level; onnxruntime is imported when a model is opened. Never imports TensorFlow, Keras,
scikit-learn or XGBoost.

Safety: an ONNX file is a protobuf (no code runs when it is read), and it is loaded from the
very bytes whose sha256 was checked against the model card, so a replaced or corrupt file is
refused with one :class:`~mgr.errors.ArtifactError` line before onnxruntime sees it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from mgr.errors import ArtifactError

DEFAULT_BATCH = 256


class InferenceError(ArtifactError):
    """A model call produced unusable output (non-finite values): one line, per call."""


def _sha256_hex(value: str) -> str:
    v = str(value).strip().lower()
    return v.split(":", 1)[1] if v.startswith("sha256:") else v


class OnnxModel:
    """An ONNX model on onnxruntime's CPU execution provider.

    Parameters
    ----------
    path:
        the ``.onnx`` file.
    sha256:
        expected hex digest (``"sha256:"`` prefix allowed); when given, the file must match it.
    threads:
        onnxruntime intra-op threads (``None``: onnxruntime's default).
    batch_size:
        :meth:`run` feeds at most this many rows per call (bounded memory for large inputs).
    """

    def __init__(self, path: str | Path, sha256: str | None = None, threads: int | None = None,
                 *, batch_size: int = DEFAULT_BATCH):
        self.path = Path(path)
        self.batch_size = max(1, int(batch_size))
        if not self.path.is_file():
            raise ArtifactError(f"{self.path} not found (no ONNX model; retrain the model to write one)")
        data = self.path.read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != _sha256_hex(sha256):
            raise ArtifactError(f"{self.path} does not match the sha256 in its model card (modified or corrupt); refusing to load it")
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if not threads and os.environ.get("MGR_ONNX_THREADS", "").isdigit():  # e.g. predict's worker processes
            threads = int(os.environ["MGR_ONNX_THREADS"])
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise ArtifactError(f"{self.path} is not a valid ONNX model ({type(e).__name__}: {first})") from None
        self._inputs = self.session.get_inputs()
        self._outputs = self.session.get_outputs()

    # ------------------------------------------------------------------ description
    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self._inputs]

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """Shape of the (first) input; ``None`` for dynamic dimensions (the batch)."""
        return tuple(d if isinstance(d, int) else None for d in self._inputs[0].shape)

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self._outputs]

    def output_shape(self, name: str) -> tuple[int | None, ...]:
        for o in self._outputs:
            if o.name == name:
                return tuple(d if isinstance(d, int) else None for d in o.shape)
        raise KeyError(name)

    # ------------------------------------------------------------------------- runs
    def _check_input(self, name: str, X: np.ndarray, spec: Any) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64 if spec.type == "tensor(double)" else np.float32)
        want = [d if isinstance(d, int) else None for d in spec.shape]
        if X.ndim != len(want) or any(w is not None and w != g for w, g in zip(want[1:], X.shape[1:])):
            shown = tuple("n" if w is None else w for w in want)
            raise ArtifactError(f"{self.path.name}: input {name!r} must have shape {shown}, got {tuple(X.shape)}")
        return X

    def run(self, X: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run the (single-input) model on ``X`` (batch first), ``batch_size`` rows at a time.

        Returns ``{output name: array}``; non-finite outputs raise :class:`InferenceError`.
        """
        if len(self._inputs) != 1:
            raise ArtifactError(f"{self.path.name} has {len(self._inputs)} inputs; use run_feeds")
        return self.run_feeds({self._inputs[0].name: X}, outputs)

    def run_feeds(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Like :meth:`run` with one array per input name (equal batch sizes)."""
        specs = {i.name: i for i in self._inputs}
        missing = sorted(set(specs) - set(feeds))
        if missing:
            raise ArtifactError(f"{self.path.name}: missing input(s) {missing}")
        arrays = {k: self._check_input(k, feeds[k], specs[k]) for k in specs}
        names = list(outputs) if outputs is not None else self.output_names
        unknown = sorted(set(names) - set(self.output_names))
        if unknown:
            raise ArtifactError(f"{self.path.name}: no output(s) {unknown} (has {self.output_names})")
        n = len(next(iter(arrays.values())))
        if any(len(a) != n for a in arrays.values()):
            raise ArtifactError(f"{self.path.name}: inputs have different batch sizes")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
        for s in range(0, max(n, 1), self.batch_size):
            chunk = {k: a[s : s + self.batch_size] for k, a in arrays.items()}
            if n == 0:
                chunk = {k: a[:0] for k, a in arrays.items()}
            try:
                res = self.session.run(names, chunk)
            except Exception as e:
                first = (str(e).strip().splitlines() or [""])[0][:200]
                raise InferenceError(f"{self.path.name}: onnxruntime failed ({type(e).__name__}: {first})") from None
            for k, v in zip(names, res):
                parts[k].append(np.asarray(v))
        out = {k: (np.concatenate(v) if len(v) > 1 else v[0]) for k, v in parts.items()}
        for k, v in out.items():
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                bad = int((~np.isfinite(v)).reshape(len(v), -1).any(axis=1).sum()) if v.ndim else 1
                raise InferenceError(
                    f"{self.path.name}: output {k!r} is not finite (NaN/inf) for {bad} of {len(v)} inputs"
                )
        return out
