"""The one reader of ``params.yaml``: typed sections, defaults and validation.

Every section is a frozen dataclass. :func:`load_params` reads the YAML file, checks every key
against the dataclasses (unknown keys, wrong types, out-of-range values and unknown names are
errors that name the dotted key and the allowed values) and fills in defaults for keys that
are not given. Stages and the CLI use the returned :class:`Params`; nothing else parses
``params.yaml``.

Public contract (other tools read these keys): ``data.source``, ``data.path``, ``data.seed``,
``split.strategy``, ``split.k``, ``split.seed``, ``split.test_size``, ``split.val_size``.

This module imports only the standard library and PyYAML so that ``mgr --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from mgr.errors import ParamsError

PARAMS_FILE = "params.yaml"

# Names that other modules register implementations for (the Literal types below are built from
# these tuples). Tests check that the registries agree.
DATA_SOURCES = ("synthetic", "folder", "gtzan", "fma")
SPLIT_STRATEGIES = ("stratified", "kfold", "group", "predefined")
ML_MODELS = ("svm", "xgboost", "logreg", "random_forest")
# stacked models (mgr.models.stacking): ml.stacked_models
STACKED_MODELS = ("fusion",)
DL_MODELS = (
    "cnn2d",
    "pons_blackbox",
    "pons_time",
    "pons_freq",
    "pons_timefreq",
    "crnn",
    "crnn_lstm",
    "cnn_bigru",
    "tempo_genre",
    "musicnn_transfer",
)
# handcrafted tables, pretrained embeddings and their taggrams; `features.set` may join several with "+"
FEATURE_SETS = ("gtzan57", "fma518", "musicnn_msd", "musicnn_mtt", "musicnn_msd_tags", "musicnn_mtt_tags")
EMBEDDINGS = ("musicnn_msd", "musicnn_mtt")
HANDCRAFTED = ("gtzan57", "fma518")
# the words of ml.embedding_candidates and ml.fusion.estimators, joined by "+" (see resolve_blocks):
# embedding = features.embedding, tags = its taggram, handcrafted = the handcrafted sets of features.set
BLOCK_WORDS = ("handcrafted", "embedding", "tags")
PRETRAINED_BACKBONES = ("msd", "mtt")
GENRES_GTZAN = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)


def rng(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False) -> dict:
    """Field metadata: allowed numeric range (closed unless ``*_open``)."""
    return {"range": (lo, hi, lo_open, hi_open)}


def num(default: Any, lo: float | None = None, hi: float | None = None, **kw: bool) -> Any:
    return field(default=default, metadata=rng(lo, hi, **kw))


# --------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class SyntheticParams:
    """The built-in procedural dataset (see ``mgr.data.sources.synthetic``).

    Defaults: 10 genres x 24 clips x 8 s = 32 min of audio, rendered at ~60x real time per core
    (benchmarks/synth.py), i.e. ~30 CPU s; FLAC so that later stages decode a real codec.
    """

    clips_per_genre: int = num(24, 1, 100_000)
    duration_s: float = num(8.0, 1.0, 600.0)
    sample_rate: int = num(22050, 8000, 96000)
    format: Literal["wav", "flac", "ogg"] = "flac"


@dataclass(frozen=True)
class GtzanParams:
    """GTZAN (Tzanetakis & Cook 2002). ``data.path`` may also point at an archive or a folder."""

    url: str = "http://opihi.cs.uvic.ca/sound/genres.tar.gz"
    md5: str | None = "5b3d6dddb579ab49814ab86dba69e7c7"
    tempo: bool = False
    tempo_url: str = "https://github.com/TempoBeatDownbeat/gtzan_tempo_beat/archive/refs/heads/main.zip"
    tempo_md5: str | None = "4baa58112697a8087de04558d6e97442"


@dataclass(frozen=True)
class FmaParams:
    """FMA (Defferrard et al. 2017): metadata zip plus one audio subset zip."""

    # large: all 106,574 tracks as 30 s clips; full: the same tracks untrimmed (audio.* crops them)
    subset: Literal["small", "medium", "large", "full"] = "small"
    metadata_url: str = "https://os.unil.cloud.switch.ch/fma/fma_metadata.zip"
    metadata_sha1: str | None = "f0df49ffe5f2a6008d7dc83c6915b31835dfe733"
    small_url: str = "https://os.unil.cloud.switch.ch/fma/fma_small.zip"
    small_sha1: str | None = "ade154f733639d52e35e32f5593efe5be76c6d70"
    medium_url: str = "https://os.unil.cloud.switch.ch/fma/fma_medium.zip"
    medium_sha1: str | None = "c67b69ea232021025fca9231fc1c7c1a063ab50b"
    large_url: str = "https://os.unil.cloud.switch.ch/fma/fma_large.zip"
    large_sha1: str | None = "497109f4dd721066b5ce5e5f250ec604dc78939e"
    full_url: str = "https://os.unil.cloud.switch.ch/fma/fma_full.zip"
    full_sha1: str | None = "0f0ace23fbe9ba30ecb7e95f763e435ea802b8ab"


@dataclass(frozen=True)
class DataParams:
    source: Literal[DATA_SOURCES] = "synthetic"
    # folder: a `<genre>/<file>` directory or a CSV manifest; gtzan: an archive, a URL or an
    # extracted folder (either layout); fma: a directory holding the zips (or extracted folders).
    path: str | None = None
    seed: int = num(42, 0)
    copy: bool = False
    min_duration_s: float = num(1.0, 0.0)
    # duplicate audio found at fetch (mgr.data.fetch): group = keep every copy, the split keeps
    # each set in one part / fold; drop_conflicts = also drop exact copies filed under different
    # genres; drop = also keep only the first of same-genre exact copies
    duplicates: Literal["group", "drop_conflicts", "drop"] = "group"
    inject_corrupt: int = num(2, 0, 1000)
    download_dir: str = "data/downloads"
    workers: int = num(0, 0, 256)
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)
    gtzan: GtzanParams = field(default_factory=GtzanParams)
    fma: FmaParams = field(default_factory=FmaParams)


# -------------------------------------------------------------------------------------- split
@dataclass(frozen=True)
class SplitParams:
    strategy: Literal[SPLIT_STRATEGIES] = "stratified"
    k: int = num(5, 2, 100)
    seed: int = num(42, 0)
    test_size: float = num(0.2, 0.0, 1.0, lo_open=True, hi_open=True)
    val_size: float = num(0.1, 0.0, 1.0, hi_open=True)


# -------------------------------------------------------------------------------------- audio
@dataclass(frozen=True)
class AudioParams:
    """Decoding policy shared by the spectrogram and feature stages and by ``mgr predict``."""

    sample_rate: int = num(22050, 8000, 96000)
    duration_s: float | None = num(None, 0.0, lo_open=True)  # None: the whole file
    offset_s: float = num(0.0, 0.0)
    pad: bool = True  # pad clips shorter than duration_s with zeros (else keep them short)


@dataclass(frozen=True)
class SpectrogramParams:
    kind: Literal["logmel", "stft"] = "logmel"
    # choi: 12 kHz, 96 mels, hop 256, n_fft 512; musicnn: musicnn's own front end (16 kHz, 96 mels,
    # n_fft 512, hop 256, log10(1 + 10000 x)) -- the store that musicnn_transfer trains from
    preset: Literal["default", "choi", "musicnn"] = "default"
    n_fft: int = num(2048, 64, 65536)
    hop_length: int = num(512, 16, 65536)
    n_mels: int = num(128, 8, 512)
    fmin: float = num(0.0, 0.0)
    fmax: float | None = num(None, 0.0, lo_open=True)
    top_db: float | None = num(80.0, 0.0, lo_open=True)  # dB floor below the fixed reference
    compression: Literal["none", "gzip", "lzf"] = "none"
    workers: int = num(0, 0, 256)


@dataclass(frozen=True)
class FeaturesParams:
    # one of FEATURE_SETS or several joined by "+" (e.g. gtzan57+musicnn_msd): what ml.models train on
    set: str = "gtzan57"
    # the pretrained embedding that ml.embedding_models train on (as models `<model>-<embedding>`)
    embedding: Literal[EMBEDDINGS] = "musicnn_msd"
    workers: int = num(0, 0, 256)


# ----------------------------------------------------------------------------------- train-ml
@dataclass(frozen=True)
class SvmParams:
    C: float = num(10.0, 0.0, lo_open=True)
    gamma: Union[float, Literal["scale", "auto"]] = "scale"
    calibration_cv: int = num(3, 2, 20)
    grid: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class XgboostParams:
    n_estimators: int = num(300, 1, 100_000)
    max_depth: int = num(4, 1, 64)
    learning_rate: float = num(0.1, 0.0, 1.0, lo_open=True)
    subsample: float = num(0.9, 0.0, 1.0, lo_open=True)
    colsample_bytree: float = num(0.8, 0.0, 1.0, lo_open=True)
    grid: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class LogregParams:
    C: float = num(1.0, 0.0, lo_open=True)
    max_iter: int = num(2000, 1, 1_000_000)
    grid: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class RandomForestParams:
    n_estimators: int = num(300, 1, 100_000)
    max_depth: int | None = num(None, 1, 1000)
    min_samples_leaf: int = num(1, 1, 10_000)
    grid: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class FusionParams:
    """The stacked model ``fusion`` (:mod:`mgr.models.stacking`): scikit-learn's
    ``StackingClassifier`` over ``estimators`` (``<model>-<blocks>``, blocks of :data:`BLOCK_WORDS`
    joined by ``+``), out-of-fold probabilities from ``cv`` inner folds, meta-learner
    ``LogisticRegression(C)`` on them."""

    estimators: list[str] = field(default_factory=lambda: [
        "logreg-handcrafted", "svm-handcrafted", "logreg-embedding", "svm-embedding", "logreg-tags", "svm-tags"])
    cv: int = num(5, 2, 20)
    C: float = num(1.0, 0.0, lo_open=True)
    grid: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class MlParams:
    models: list[Literal[ML_MODELS]] = field(
        default_factory=lambda: ["svm", "xgboost", "logreg", "random_forest"]
    )
    # also trained on the pretrained embedding features.embedding, as models `<model>-<embedding>`
    # (e.g. svm-musicnn_msd), with the same `ml.<model>` hyper-parameters
    embedding_models: list[Literal[ML_MODELS]] = field(default_factory=lambda: ["svm", "logreg"])
    # stacked models (their own train-ml-stacked stage; params ml.fusion): [] or [fusion]
    stacked_models: list[Literal[STACKED_MODELS]] = field(default_factory=lambda: ["fusion"])
    # embedding models train on the candidate (blocks of BLOCK_WORDS joined by "+") with the best
    # inner-CV score on each fold's non-test tracks (one candidate: no selection)
    embedding_candidates: list[str] = field(default_factory=lambda: [
        "embedding", "tags", "embedding+tags", "handcrafted+tags", "handcrafted+embedding",
        "handcrafted+embedding+tags"])
    # inner_cv: every non-test track (train + val) trains the final model; validation scores,
    # calibration and candidate selection come from ml.inner_cv-fold cross-validation over them.
    # holdout: train on the train part only, validate and calibrate on the val part
    validation: Literal["inner_cv", "holdout"] = "inner_cv"
    inner_cv: int = num(5, 2, 20)
    search: Literal["none", "grid", "random"] = "none"  # hyper-parameter search on train (CV)
    search_cv: int = num(3, 2, 20)
    search_iter: int = num(10, 1, 10_000)
    seed: int = num(42, 0)
    workers: int = num(0, 0, 256)  # threads for random_forest / xgboost; 0 = all CPUs (results do not depend on it)
    svm: SvmParams = field(default_factory=SvmParams)
    xgboost: XgboostParams = field(default_factory=XgboostParams)
    logreg: LogregParams = field(default_factory=LogregParams)
    random_forest: RandomForestParams = field(default_factory=RandomForestParams)
    fusion: FusionParams = field(default_factory=FusionParams)


# ----------------------------------------------------------------------------------- train-dl
@dataclass(frozen=True)
class TrainParams:
    """Shared settings of deep training (every `dl.<model>` block may override epochs etc.)."""

    window_s: float = num(3.0, 0.1, 600.0)
    batch_size: int = num(32, 1, 4096)
    steps_per_epoch: int | None = num(None, 1)  # None: one pass worth of windows over train tracks
    windows_per_track: int = num(4, 1, 10_000)  # windows drawn per train track per epoch
    learning_rate: float = num(1e-3, 0.0, 1.0, lo_open=True)
    early_stopping_patience: int = num(5, 0, 10_000)
    reduce_lr_patience: int = num(3, 0, 10_000)
    class_weights: bool = True
    specaugment: bool = False
    mixup: float = num(0.0, 0.0, 1.0)  # Beta(a, a) parameter; 0 disables mixup
    seed: int = num(42, 0)
    workers: int = num(1, 0, 64)
    tempo_bins: Literal["10bpm", "log"] = "10bpm"
    tempo_min_bpm: float = num(30.0, 1.0, 1000.0)
    tempo_max_bpm: float = num(300.0, 1.0, 1000.0)
    tempo_n_log_bins: int = num(64, 2, 2048)
    tags_head: bool = True  # add a multi-label tags head when the dataset has tags
    fold: int = num(0, 0, 99)  # k-fold split: this fold's model is models/<name>/ (ignored otherwise)
    # k-fold split only: train one model per fold (evaluate then reports mean ± std over folds);
    # false trains train.fold only
    all_folds: bool = True
    val_windows_per_track: int = num(8, 1, 10_000)  # evenly spaced val windows per track (cap)
    # tf.distribute (mgr.distributed.strategy): none | mirrored (every local GPU, or CPU) |
    # multi_worker (MultiWorkerMirroredStrategy, hosts from TF_CONFIG); the global batch is batch_size
    distribution: Literal["none", "mirrored", "multi_worker"] = "none"
    mixed_precision: bool = False  # Keras mixed_float16 policy (float32 variables and outputs)


@dataclass(frozen=True)
class DlModelParams:
    epochs: int = num(10, 1, 100_000)
    learning_rate: float | None = num(None, 0.0, 1.0, lo_open=True)  # None: train.learning_rate
    batch_size: int | None = num(None, 1, 4096)  # None: train.batch_size
    dropout: float = num(0.3, 0.0, 1.0, hi_open=True)
    width: float = num(1.0, 0.01, 16.0)  # multiplies filter/unit counts (small = fast)


@dataclass(frozen=True)
class TransferParams(DlModelParams):
    """``musicnn_transfer``: the pretrained musicnn backbone with our heads.

    ``epochs`` train the heads on the frozen backbone (at ``learning_rate``); then
    ``finetune_epochs`` train everything at ``finetune_learning_rate`` (0 = frozen only).
    """

    backbone: Literal[PRETRAINED_BACKBONES] = "msd"
    finetune_epochs: int = num(0, 0, 100_000)
    finetune_learning_rate: float = num(1e-5, 0.0, 1.0, lo_open=True)


def _dl_default(epochs: int, width: float = 1.0, learning_rate: float | None = None) -> Any:
    return field(default_factory=lambda: DlModelParams(epochs=epochs, width=width, learning_rate=learning_rate))


@dataclass(frozen=True)
class DlParams:
    models: list[Literal[DL_MODELS]] = field(default_factory=lambda: ["cnn2d", "tempo_genre", "musicnn_transfer"])
    cnn2d: DlModelParams = _dl_default(8, 0.25, 3e-3)  # in the default list: small and fast
    pons_blackbox: DlModelParams = _dl_default(10)
    pons_time: DlModelParams = _dl_default(10)
    pons_freq: DlModelParams = _dl_default(10)
    pons_timefreq: DlModelParams = _dl_default(10)
    crnn: DlModelParams = _dl_default(10)
    crnn_lstm: DlModelParams = _dl_default(10)
    cnn_bigru: DlModelParams = _dl_default(10)
    tempo_genre: DlModelParams = _dl_default(8, 0.25, 3e-3)  # in the default list: small and fast
    musicnn_transfer: TransferParams = field(
        default_factory=lambda: TransferParams(epochs=10, learning_rate=1e-3, finetune_epochs=0)
    )


# -------------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistributedParams:
    """Sharded extraction (mgr.distributed; docs/SCALE.md)."""

    # 0: one store file / one table written by this machine's process pool (the default);
    # N > 0: shards of N tracks computed as Dask tasks, read as one store (changes the files: tracked)
    shard_tracks: int = num(0, 0, 10_000_000)
    # Dask scheduler address (tcp://host:8786) to run the shards on; null = this machine (a local
    # cluster of spectrogram.workers / features.workers processes). MGR_SCHEDULER overrides it.
    # Where the tasks run never changes what they write: not a tracked param.
    scheduler: str | None = None


# ----------------------------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class EvaluateParams:
    window_s: float = num(3.0, 0.1, 600.0)
    overlap: float = num(0.5, 0.0, 1.0, hi_open=True)
    aggregate: Literal["mean", "vote"] = "mean"  # headline track-level rule
    tempo_baseline: bool = True  # librosa.feature.tempo on the same test tracks
    tag_threshold: float = num(0.5, 0.0, 1.0)
    workers: int = num(0, 0, 256)  # processes for the tempo baseline (0 = all CPUs)


# -------------------------------------------------------------------------------------- tempo
SYNTH_STYLES = GENRES_GTZAN  # the synthesizer's style templates (mgr.synth.styles.GENRES)


@dataclass(frozen=True)
class TempoParams:
    """The learned tempo estimator (``mgr.tempo``; stage ``train-tempo``).

    Synthetic tempo sets (exact tempo) of ``duration_s`` clips: ``train_clips`` + ``val_clips``
    of every style except ``heldout_styles``, ``heldout_clips`` of those styles only (never
    trained on), ``click_clips`` metronome tracks (plain, and as many with soft subdivision
    clicks) and ``feels_clips`` clips of the held-out styles with real-music feels (heavy
    backbeat, 16th hats over a slow pulse, half-/double-time, dense, rubato), ``calib_clips`` clips
    of the train styles (in turn: with a feel at real music's tempi, plain, a metronome with
    subdivision clicks) that only fit the confidence calibration (``mgr.tempo.calibration``; 0: fit it on validation); plus (``use_dataset``) the ``data.source``
    tracks with a ``tempo_bpm``, by split part. Each training clip is also seen at ``stretches``
    random tempo scales in [stretch_min, stretch_max] (label scaled). The trained posteriors are
    moved from the training sets' tempo prior (log-uniform) to a log-normal one with median
    ``prior_median_bpm`` and ``prior_octaves`` standard deviation (``mgr.tempo.features.prior_weights``;
    ``prior_median_bpm: null`` keeps the training prior). The defaults are GTZAN's annotated tempi
    (mean 94.3, sd 24.5 BPM, tempo_eval_report) as a log-normal of the same mean and sd: median
    94.3 / sqrt(1 + (24.5 / 94.3)^2) = 91.3 BPM, sd sqrt(ln(1 + (24.5 / 94.3)^2)) / ln 2 = 0.37 octave."""

    seed: int = num(14, 0)
    train_clips: int = num(600, 1, 1_000_000)
    val_clips: int = num(80, 1, 1_000_000)
    heldout_clips: int = num(90, 0, 1_000_000)
    click_clips: int = num(40, 0, 1_000_000)
    feels_clips: int = num(60, 0, 1_000_000)  # test clips of heldout_styles, each with a real-music feel
    calib_clips: int = num(120, 0, 1_000_000)  # clips for the confidence calibration only (0: validation)
    duration_s: float = num(8.0, 2.0, 600.0)
    heldout_styles: list[Literal[SYNTH_STYLES]] = field(default_factory=lambda: ["country", "jazz", "reggae"])
    use_dataset: bool = True
    stretches: int = num(4, 0, 100)
    stretch_min: float = num(0.8, 0.25, 1.0)
    stretch_max: float = num(1.25, 1.0, 4.0)
    epochs: int = num(40, 1, 100_000)
    batch_size: int = num(64, 1, 4096)
    learning_rate: float = num(0.003, 0.0, 1.0, lo_open=True)
    width: int = num(16, 4, 512)
    dropout: float = num(0.3, 0.0, 1.0, hi_open=True)
    workers: int = num(0, 0, 256)  # processes for rendering and decoding (0 = all CPUs)
    ensemble: int = num(3, 1, 64)  # models from seeds seed, seed + 1, ...; their posteriors averaged
    prior_median_bpm: float | None = num(91.3, 30.0, 300.0)
    prior_octaves: float = num(0.37, 0.05, 10.0)


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    split: SplitParams = field(default_factory=SplitParams)
    audio: AudioParams = field(default_factory=AudioParams)
    spectrogram: SpectrogramParams = field(default_factory=SpectrogramParams)
    features: FeaturesParams = field(default_factory=FeaturesParams)
    ml: MlParams = field(default_factory=MlParams)
    train: TrainParams = field(default_factory=TrainParams)
    dl: DlParams = field(default_factory=DlParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    distributed: DistributedParams = field(default_factory=DistributedParams)
    tempo: TempoParams = field(default_factory=TempoParams)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------- validation
def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _allowed_literals(tp: Any) -> list[Any]:
    out: list[Any] = []
    for a in get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,):
        if get_origin(a) is Literal:
            out.extend(get_args(a))
    return out


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return the (lightly coerced) value."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ParamsError(f"params: {key} must be a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed or isinstance(value, bool) != any(isinstance(a, bool) for a in allowed):
            raise ParamsError(
                f"params: {key}: {value!r} is not allowed (allowed: {', '.join(map(str, allowed))})"
            )
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for alt in get_args(tp):
            try:
                return _coerce(value, alt, key)
            except ParamsError as e:
                errors.append(e)
        lits = _allowed_literals(tp)
        if lits:
            others = [_type_name(a) for a in get_args(tp) if get_origin(a) is not Literal]
            allowed = ", ".join([*map(str, lits), *others])
            raise ParamsError(f"params: {key}: {value!r} is not allowed (allowed: {allowed})")
        raise ParamsError(f"params: {key}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is not None:
            raise ParamsError(f"params: {key}: expected null, got {value!r}")
        return None
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"params: {key}: expected {_type_name(tp)}, got {value!r}")
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"params: {key}: expected a mapping, got {value!r}")
        _check_finite(value, key)  # e.g. a search grid: NaN/inf would reach the estimator
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"params: {key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"params: {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"params: {key}: expected a number, got {value!r}")
        _check_finite(value, key)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"params: {key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # programming error


def _check_finite(value: Any, key: str) -> None:
    """NaN and +-inf are never valid parameter values (NaN compares false with every bound, so
    a range check alone would let it through); nested lists/mappings are searched too."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"params: {key}: {value!r} is not a finite number (NaN and inf are not allowed)")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{key}[{i}]")


def _check_range(value: Any, meta: dict, key: str) -> None:
    _check_finite(value, key)
    if "range" not in meta or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    lo, hi, lo_open, hi_open = meta["range"]
    bad = (
        (lo is not None and (value < lo or (lo_open and value == lo)))
        or (hi is not None and (value > hi or (hi_open and value == hi)))
    )
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ParamsError(f"params: {key}: {value!r} is out of range (allowed: {left}{lo_s}, {hi_s}{right})")


def _build(cls: type, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in fields:
            where = f"{prefix}.{k}" if prefix else str(k)
            raise ParamsError(f"params: unknown key {where!r} (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        key = f"{prefix}.{name}" if prefix else name
        value = _coerce(data[name], hints[name], key)
        if isinstance(value, list):
            for i, v in enumerate(value):
                _check_range(v, f.metadata, f"{key}[{i}]")
        else:
            _check_range(value, f.metadata, key)
        kwargs[name] = value
    return cls(**kwargs)


def _cross_checks(p: Params) -> None:
    if p.split.strategy in ("stratified", "group") and p.split.test_size + p.split.val_size >= 1.0:
        raise ParamsError(
            "params: split.test_size + split.val_size must be < 1 "
            f"(got {p.split.test_size} + {p.split.val_size})"
        )
    sp = p.spectrogram
    if sp.preset != "musicnn":  # musicnn's front end is fixed (fmin/fmax ignored)
        sr = 12000 if sp.preset == "choi" else p.audio.sample_rate
        where = "the choi preset's 12000 Hz" if sp.preset == "choi" else f"audio.sample_rate {sr}"
        nyquist = sr / 2
        if sp.fmax is not None and sp.fmax > nyquist:
            raise ParamsError(
                f"params: spectrogram.fmax {sp.fmax:g} Hz is above the Nyquist frequency {nyquist:g} Hz "
                f"of {where} (use null for Nyquist)"
            )
        top = nyquist if sp.fmax is None else sp.fmax
        if sp.kind == "logmel" and sp.fmin >= top:
            raise ParamsError(f"params: spectrogram.fmin {sp.fmin:g} Hz must be below fmax {top:g} Hz")
    if p.data.source == "folder" and not p.data.path:
        raise ParamsError("params: data.path is required when data.source is 'folder' (a directory or a CSV manifest)")
    if p.data.source == "fma" and p.split.strategy == "predefined":
        pass  # FMA's official split is the predefined one
    if p.split.strategy == "predefined" and p.data.source not in ("gtzan", "fma", "folder"):
        raise ParamsError(
            f"params: split.strategy: 'predefined' needs a source with an official split "
            f"(gtzan, fma, or a folder manifest with source_split), not {p.data.source!r}"
        )
    if len(set(p.tempo.heldout_styles)) == len(SYNTH_STYLES):
        raise ParamsError("params: tempo.heldout_styles must leave at least one style to train on")
    if p.train.tempo_min_bpm >= p.train.tempo_max_bpm:
        raise ParamsError("params: train.tempo_min_bpm must be below train.tempo_max_bpm")
    for fs in (p.features.set,):
        parse_feature_sets(fs, "features.set")
    for i, c in enumerate(p.ml.embedding_candidates):
        parse_blocks(c, f"ml.embedding_candidates[{i}]")
    if not p.ml.embedding_candidates:
        raise ParamsError("params: ml.embedding_candidates must name at least one candidate (e.g. [embedding])")
    for i, e in enumerate(p.ml.fusion.estimators):
        parse_fusion_estimator(e, f"ml.fusion.estimators[{i}]")
    if len(p.ml.fusion.estimators) < 2:
        raise ParamsError("params: ml.fusion.estimators must list at least two base models")
    if "fusion" in p.ml.stacked_models and not [s for s in parse_feature_sets(p.features.set) if s in HANDCRAFTED] and any(
            "handcrafted" in parse_fusion_estimator(e)[1] for e in p.ml.fusion.estimators):
        raise ParamsError("params: ml.fusion.estimators use 'handcrafted' but features.set holds no handcrafted set")
    for section, names in (("ml", p.ml.models), ("ml", p.ml.embedding_models), ("ml", p.ml.stacked_models),
                           ("dl", p.dl.models)):
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ParamsError(f"params: {section}.models lists {sorted(dup)} more than once")


def parse_feature_sets(spec: str, key: str = "features.set") -> list[str]:
    """``"gtzan57+musicnn_msd"`` -> ``["gtzan57", "musicnn_msd"]`` (each checked, no repeats)."""
    parts = [s.strip() for s in str(spec).split("+")]
    for s in parts:
        if s not in FEATURE_SETS:
            raise ParamsError(
                f"params: {key}: {s!r} is not allowed (allowed: {', '.join(FEATURE_SETS)}, or several joined by '+')"
            )
    if len(set(parts)) != len(parts):
        raise ParamsError(f"params: {key}: {spec!r} names a feature set twice")
    return parts


def parse_blocks(spec: str, key: str) -> list[str]:
    """``"handcrafted+tags"`` -> ``["handcrafted", "tags"]`` (words of :data:`BLOCK_WORDS`, no repeats)."""
    parts = [s.strip() for s in str(spec).split("+")]
    bad = [s for s in parts if s not in BLOCK_WORDS]
    if bad or len(set(parts)) != len(parts):
        raise ParamsError(f"params: {key}: {spec!r} is not allowed (words {', '.join(BLOCK_WORDS)} joined by '+', "
                          f"each at most once)")
    return parts


FUSION_BASES = ("svm", "logreg", "random_forest")


def parse_fusion_estimator(spec: str, key: str = "ml.fusion.estimators") -> tuple[str, list[str]]:
    """``"svm-handcrafted+tags"`` -> ``("svm", ["handcrafted", "tags"])``."""
    model, sep, blocks = str(spec).partition("-")
    if model not in FUSION_BASES or not sep:
        raise ParamsError(f"params: {key}: {spec!r} is not allowed (<model>-<blocks> with a model from "
                          f"{', '.join(FUSION_BASES)}, e.g. logreg-handcrafted+tags)")
    return model, parse_blocks(blocks, key)


def resolve_blocks(words: list[str] | str, features: FeaturesParams) -> str:
    """The feature set (sets joined by ``+``) that block words name: ``handcrafted`` -> the
    handcrafted sets of ``features.set``, ``embedding`` -> ``features.embedding``, ``tags`` -> its
    taggram (``<embedding>_tags``); in the order given. ``""`` when nothing is named (only
    ``handcrafted`` and ``features.set`` holds no handcrafted set)."""
    if isinstance(words, str):
        words = parse_blocks(words, "blocks")
    out: list[str] = []
    for w in words:
        if w == "handcrafted":
            out += [s for s in parse_feature_sets(features.set) if s in HANDCRAFTED]
        elif w == "embedding":
            out.append(features.embedding)
        else:
            out.append(f"{features.embedding}_tags")
    return "+".join(dict.fromkeys(out))


def ml_instance(name: str, default_set: str | None = None) -> tuple[str, str | None]:
    """A classical model's name -> ``(model, feature set)``: ``svm`` -> ``("svm", default_set)``,
    ``svm-musicnn_msd`` -> ``("svm", "musicnn_msd")`` (see :func:`classical_models`); ``fusion``
    -> ``("fusion", default_set)`` (its own sets come from ``ml.fusion.estimators``)."""
    model, sep, fs = str(name).partition("-")
    if model in STACKED_MODELS and not sep:
        return model, default_set
    if model not in ML_MODELS or (sep and fs not in FEATURE_SETS):
        raise ParamsError(
            f"params: classical model {name!r} is not known (allowed: {', '.join(ML_MODELS)}, "
            f"or <model>-<feature set> with a set from {', '.join(FEATURE_SETS)})"
        )
    return model, (fs if sep else default_set)


def classical_models(p: Params) -> list[str]:
    """Every classical model the pipeline trains: ``ml.models`` (on ``features.set``), then
    ``<model>-<features.embedding>`` for each of ``ml.embedding_models``, then ``ml.stacked_models``."""
    return (list(p.ml.models) + [f"{m}-{p.features.embedding}" for m in p.ml.embedding_models]
            + list(p.ml.stacked_models))


def feature_sets_needed(p: Params) -> list[str]:
    """Every feature set the features table must hold: ``features.set``'s, then the sets that
    ``ml.embedding_candidates`` (when ``ml.embedding_models`` is not empty) and
    ``ml.fusion.estimators`` (when ``fusion`` is in ``ml.stacked_models``) name, without repeats."""
    sets = parse_feature_sets(p.features.set)
    specs: list[str] = []
    if p.ml.embedding_models:
        specs += p.ml.embedding_candidates
    if "fusion" in p.ml.stacked_models:
        specs += ["+".join(parse_fusion_estimator(e)[1]) for e in p.ml.fusion.estimators]
    for spec in specs:
        resolved = resolve_blocks(spec, p.features)
        for s in parse_feature_sets(resolved) if resolved else []:
            if s not in sets:
                sets.append(s)
    return sets


def params_from_dict(data: dict | None) -> Params:
    """Validate a parsed params mapping (missing keys take their defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError("params: the top level of params.yaml must be a mapping")
    p = _build(Params, data, "")
    _cross_checks(p)
    return p


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml`` (one clear :class:`ParamsError` on any problem)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ParamsError(f"params: {path} not found (run from the project root)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(f"params: {path} is not valid YAML{where}") from None
    return params_from_dict(data)
