"""``mgr predict``: genre, tempo and tags for audio files from any trained artifact.

Pipeline per input file
-----------------------
* **Deep models** (``kind: deep``): the file is decoded block by block
  (:func:`mgr.audio.decode.stream_blocks`, soxr stream resampling to the card's ``frontend.sr``) and
  turned into log-mel frames incrementally with the card's front end (:class:`~mgr.inference.streaming.StreamingFrontEnd`,
  the same centred STFT / Slaney mel / fixed-reference dB as
  :func:`mgr.features.store.compute_spectrogram`, checked equal in the tests). Model windows of
  ``window_frames`` frames are cut from a ring of frames as they arrive and run in small batches,
  so memory is bounded by one block plus one segment whatever the file length. The network is
  the artifact's ``model.onnx`` on onnxruntime (:func:`mgr.models.deep.load`, the same object
  the evaluate stage scores); TensorFlow/Keras are never imported.
* **Classical models** (``kind: classical``): the whole file is decoded with the training audio
  policy (:func:`mgr.audio.decode.load_audio`) and its handcrafted features
  (:func:`mgr.features.tables.extract_features`) go to the model, as in training. ``--window`` splits it
  into segments whose predictions are aggregated instead; a file longer than a minute is streamed
  as overlapping 30 s segments (for ``gtzan57``, on the 512-sample frame grid, the STFT and HPSS
  computed once for all of them: :mod:`mgr.dsp.gtzan_stream`).
* **Aggregation** over segments: ``mean`` (mean probability) or ``vote`` (majority of segment
  argmaxes, evaluate's rule :func:`mgr.evaluation.metrics.vote`; the reported probabilities are
  then the vote fractions).
* **Tempo**: the model's tempo head when it has one (probability-weighted bin centre), else
  the DSP estimate ``librosa.feature.tempo`` as re-implemented in :mod:`mgr.dsp.kernels` (for
  ``gtzan57`` classical models, its ``tempo`` feature, which is exactly that estimate).
  Classical models run their ``model.onnx`` on onnxruntime too (:func:`mgr.models.classical_artifact.load`,
  as evaluate does); the ``gtzan57`` features come from :mod:`mgr.dsp.kernels`, so a classical
  prediction imports neither scikit-learn, XGBoost nor librosa. **Tags**: the tags head's mean scores above
  ``--tag-threshold``.

Bad inputs
----------
Each failing input gives one :class:`InputFailure` with a one-line reason (missing path, a
directory with no audio, zero bytes, truncated, not audio / format not recognised, an
unsupported codec, too short, undecodable); the other inputs are still processed.
Files shorter than one window are **zero-padded to one window with a warning**; files shorter
than :data:`~mgr.inference.inputs.MIN_DURATION_S` are refused (nothing meaningful to classify).

Hostile inputs
--------------
A header must be plausible as well as valid (sample rate in
:data:`mgr.audio.decode.MIN_SAMPLE_RATE`..:data:`mgr.audio.decode.MAX_SAMPLE_RATE` Hz, duration at most
``max_duration_s``, also enforced while decoding), and ``time_limit_s`` bounds the time spent on
one file. Every numeric option is checked (finite, in range) by :func:`~mgr.inference.inputs.check_options`. Names
that are not valid UTF-8 are decoded and printed losslessly (:func:`~mgr.inference.output.path_fields`), error lines
escape control characters (:func:`~mgr.inference.output.display_text`), JSON is strict (no NaN, no lone surrogates),
and a non-finite model output is an error for that file only. Model names are single path
components resolved inside ``models/`` (:func:`~mgr.inference.catalog.resolve_model`).

Modules
-------
* :mod:`mgr.inference.inputs`: file discovery, header checks, option checks, refusal reasons.
* :mod:`mgr.inference.streaming`: streamed front end, window streams, energy, onset tempo.
* :mod:`mgr.inference.predictors`: the deep / tagger / classical predictors, :func:`load_predictor`.
* :mod:`mgr.inference.catalog`: which model a name or path means, built-ins, ``mgr models``.
* :mod:`mgr.inference.output`: :class:`Prediction` / :class:`Segment` / :class:`InputFailure`,
  strict JSON and CSV rendering.
* :mod:`mgr.inference.gate` / :mod:`mgr.inference.abstain`: the no-music gate (genre, tempo and
  tags null with ``music: false`` and a reason) and the out-of-distribution check
  (``in_distribution``; :mod:`mgr.models.distribution`).
* this module: running a predictor over the inputs (:func:`predict_many`), in order, in-process
  or on ``--jobs`` worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mgr.errors import ArtifactError, AudioError, UserError
from mgr.inference.inputs import UsageError, _short, _strip_prefix
from mgr.inference.output import InputFailure, Prediction, display_text
from mgr.inference.predictors import Predictor, load_predictor, one_thread_env
from mgr.inference.runtime import InferenceError
from mgr.io import process_pool

PARALLEL_MIN_FILES = 8  # fewer files than this are predicted in-process (a worker's start costs more)


def _predict_one(predictor: Predictor, item: Path | InputFailure) -> Prediction | InputFailure:
    """One input -> its prediction, or an :class:`InputFailure` with a one-line reason.

    A non-finite model output (:class:`mgr.inference.runtime.InferenceError`) fails that file
    only; any other model problem (a :class:`UserError` such as :class:`ArtifactError`) is raised."""
    if isinstance(item, InputFailure):
        res: Prediction | InputFailure = item
    else:
        try:
            res = predictor.predict_file(item)
            if getattr(predictor, "tempo", None) is not None:  # --tempo: mgr.tempo.estimate
                res = predictor.tempo.apply(res, item)
        except AudioError as e:
            res = InputFailure(str(item), _strip_prefix(str(e), item))
        except InferenceError as e:
            res = InputFailure(str(item), f"model output unusable ({e})")
        except UserError:
            raise
        except MemoryError:
            res = InputFailure(str(item), "out of memory")
        except Exception as e:  # a decoder bug on one file must not stop the others
            res = InputFailure(str(item), f"cannot process ({type(e).__name__}: {_short(str(e))})")
    if isinstance(res, InputFailure):  # the reason on one printable line, whatever it quotes
        res.error = display_text(res.error)
    return res


def predict_many(
    predictor: Predictor, inputs: Iterable[Path | InputFailure], on_result: Callable[[Any], None] | None = None,
    *, workers: int = 1,
) -> list[Prediction | InputFailure]:
    """Predict every input; results reach ``on_result`` and the returned list in input order.

    With ``workers > 1`` and at least :data:`PARALLEL_MIN_FILES` files, decoding, the front end
    and the model run in that many fresh worker processes (each loads the same artifact,
    hash-checked, with one onnxruntime and one BLAS thread; at most ``2 * workers`` files in
    flight; workers die with this process); the answers are the same as in-process. In-process,
    a long file's classical ``gtzan57`` segments use up to ``workers`` processes
    (``ClassicalPredictor.segment_workers``; ``workers=1``: none)."""
    items = list(inputs)
    if hasattr(predictor, "segment_workers"):
        predictor.segment_workers = max(1, int(workers))
    n_files = sum(1 for i in items if not isinstance(i, InputFailure))
    if workers > 1 and n_files >= PARALLEL_MIN_FILES and getattr(predictor, "model_dir", None) is not None:
        return _predict_parallel(predictor, items, on_result, min(workers, n_files))
    results: list[Prediction | InputFailure] = []
    for item in items:
        res = _predict_one(predictor, item)
        results.append(res)
        if on_result is not None:
            on_result(res)
    return results


_WORKER: dict[str, Any] = {}


def _worker_init(model_dir: str, kw: dict) -> None:
    _WORKER["predictor"] = load_predictor(model_dir, **kw)


def _worker_predict(item: Path | InputFailure) -> tuple[str, Any]:
    try:
        return "ok", _predict_one(_WORKER["predictor"], item)
    except UserError as e:  # a model problem: the parent stops the run with the same one line
        return "user_error", (type(e).__name__, str(e))


def _predict_parallel(predictor: Predictor, items: list, on_result: Callable[[Any], None] | None,
                      workers: int) -> list[Prediction | InputFailure]:
    import multiprocessing as mp  # (stdlib, only for --jobs)

    # fresh interpreters (spawn): a fork would inherit the parent's BLAS/OpenMP/onnxruntime thread
    # state, which can deadlock the child; one thread of each per worker (the workers are the
    # parallelism), set in the environment they start with
    ctx = mp.get_context("spawn")
    with one_thread_env():
        return _run_pool(predictor, items, on_result, workers, ctx)


def _run_pool(predictor: Predictor, items: list, on_result: Callable[[Any], None] | None, workers: int,
              ctx: Any) -> list[Prediction | InputFailure]:
    from concurrent.futures import FIRST_COMPLETED, wait  # (stdlib, only for --jobs)

    results: list[Any] = [None] * len(items)
    done_flags = [False] * len(items)
    next_out = 0

    def flush() -> None:
        nonlocal next_out
        while next_out < len(items) and done_flags[next_out]:
            if on_result is not None:
                on_result(results[next_out])
            next_out += 1

    with process_pool(workers, initializer=_worker_init, initargs=(str(predictor.model_dir), predictor.load_kwargs),
                      mp_context=ctx) as ex:
        pending: dict[Any, int] = {}
        todo = iter(range(len(items)))

        def submit_more() -> None:
            while len(pending) < 2 * workers:
                i = next(todo, None)
                if i is None:
                    return
                if isinstance(items[i], InputFailure):
                    results[i], done_flags[i] = _predict_one(predictor, items[i]), True
                    continue
                pending[ex.submit(_worker_predict, items[i])] = i

        submit_more()
        flush()
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in finished:
                i = pending.pop(fut)
                status, value = fut.result()
                if status == "user_error":
                    for f in pending:
                        f.cancel()
                    cls = {c.__name__: c for c in (ArtifactError, AudioError, UsageError)}.get(value[0], UserError)
                    raise cls(value[1])
                results[i], done_flags[i] = value, True
            submit_more()
            flush()
    flush()
    return results


