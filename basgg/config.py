"""Typed configuration: nested dataclasses, YAML files and trailing ``KEY VALUE`` overrides.

Keys keep the spelling Scene-Graph-Benchmark.pytorch users know, so a command line such as::

    basgg train --config configs/motifs.yaml MODEL.PRETRAINED_MODEL_CKPT '' \\
        MODEL.ROI_RELATION_HEAD.WITH_CLEAN_CLASSIFIER False

works verbatim. Keys are matched case-insensitively (``model.roi_relation_head.predictor``
works too); Python code reads the canonical upper-case attributes
(``config.MODEL.ROI_RELATION_HEAD.PREDICTOR``). An unknown key or a value of the
wrong type is a :class:`ConfigError` naming the key, its source and the closest valid key.
Only builders and commands read a ``Config``; modules take plain keyword arguments.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from basgg import atomic
from basgg.config_ranges import first_range_problem
from basgg.structures import Mode

FEATURE_EXTRACTORS = ("FrozenBackbone", "RelationFeatureExtractor")
FEATURE_STORAGES = ("auto", "cache", "online")


class ConfigError(ValueError):
    """A configuration key or value that cannot be used."""


@dataclass
class DatasetsConfig:
    """Where the VG150-format dataset lives and how its splits are built."""

    DATA_DIR: str = "datasets/synthvg"
    ROIDB_FILE: str = "VG-SGG-with-attri.h5"
    DICT_FILE: str = "VG-SGG-dicts-with-attri.json"
    IMAGE_FILE: str = "image_data.json"
    IMAGE_DIR: str = "VG_100K"
    VAL_SIZE: int = 5000
    NUM_IMAGES: int = -1
    FILTER_EMPTY_RELS: bool = True
    FILTER_DUPLICATE_RELS: bool = True
    FILTER_NON_OVERLAP: bool = True
    ZERO_SHOT_FILE: str = ""


@dataclass
class TransformerConfig:
    """The Transformer head's sizes (``MODEL.ROI_RELATION_HEAD.TRANSFORMER``)."""

    DROPOUT_RATE: float = 0.1
    OBJ_LAYER: int = 4
    REL_LAYER: int = 2
    NUM_HEAD: int = 8
    KEY_DIM: int = 64
    VAL_DIM: int = 64
    INNER_DIM: int = 2048


@dataclass
class RelationHeadConfig:
    """The relation head (``MODEL.ROI_RELATION_HEAD``)."""

    PREDICTOR: str = "MotifPredictor"  # a registered head (basgg.models.heads.HEADS)
    USE_GT_BOX: bool = True
    USE_GT_OBJECT_LABEL: bool = True
    WITH_CLEAN_CLASSIFIER: bool = False
    WITH_TRANSFER_CLASSIFIER: bool = False
    BATCH_SIZE_PER_IMAGE: int = 1024  # training pairs per image
    POSITIVE_FRACTION: float = 0.25  # at most 256 foreground pairs of the 1024
    CONTEXT_HIDDEN_DIM: int = 512  # object/edge context size (paper: VCTree 1024)
    CONTEXT_POOLING_DIM: int = 512  # pair feature size (union features are projected to it)
    CONTEXT_OBJ_LAYER: int = 1  # Motifs/VCTree object-context layers
    CONTEXT_REL_LAYER: int = 1  # Motifs/VCTree edge-context layers
    CONTEXT_DROPOUT_RATE: float = 0.2  # Motifs/VCTree LSTM dropout
    EMBED_DIM: int = 50  # class word-vector size (GloVe 6B package: 50; SGB used 200)
    FREQUENCY_BIAS_DROPOUT: float = 0.3  # BA-SGG stage-1 dropout on the frequency-bias logits
    BPL_NUM_HEAD_PREDICATES: int = 15  # BA-SGG BPL: head predicates K (train-split ranking)
    BPL_MAX_PER_PREDICATE: int = 2000  # BA-SGG BPL: cap N per head predicate; -1 = scaled
    BPL_SCALE_FRACTION: float = 0.25  # with cap -1: N = fraction x median head-predicate count
    CONFUSION_MATRIX_FILE: str = ""  # BA-SGG SA: stage-1 train confusion matrix (.npy)
    # where object and union features come from (docs/features.md):
    # "FrozenBackbone": RoIAlign over the frozen ImageNet trunk of MODEL.BACKBONE;
    # "RelationFeatureExtractor": SGB's, from the detector of PRETRAINED_DETECTOR_CKPT (its
    # multi-level RoIAlign and box head, copied and trained; trunk and FPN frozen)
    FEATURE_EXTRACTOR: Literal[FEATURE_EXTRACTORS] = "FrozenBackbone"  # type: ignore[valid-type]
    POOLING_ALL_LEVELS: bool = True  # union boxes pooled from every FPN level, then reduced
    TRANSFORMER: TransformerConfig = field(default_factory=TransformerConfig)


@dataclass
class BackboneConfig:
    """The frozen image backbone (``MODEL.BACKBONE``)."""

    NAME: str = "efficientnet_lite0"
    WEIGHTS: str = ""  # a state-dict file; "" = the installed package's, "random" = untrained
    STRIDE: int = 16  # output stride the backbone is cut at
    IMAGE_SIZE: int = 512  # longer image side fed to the backbone (0 = native size)
    OBJECT_POOL: int = 2  # RoIAlign output side for object boxes
    UNION_POOL: int = 2  # RoIAlign output side for union boxes
    RECT_SIZE: int = 8  # side of the subject/object box masks appended to union features
    BATCH_SIZE: int = 8  # images per backbone call when features are extracted


@dataclass
class DetectorConfig:
    """The Faster R-CNN + FPN detector (``MODEL.DETECTOR``).

    ``basgg train-detector`` trains it on a dataset's boxes (with ``SOLVER``); SGDet relation
    training and ``basgg predict`` use it frozen (``MODEL.PRETRAINED_DETECTOR_CKPT``).
    """

    ARCHITECTURE: Literal["basgg", "sgb"] = "basgg"  # sgb: SGB's X-101-FPN (docs/detector.md)
    BACKBONE: str = "efficientnet_lite0"  # any MODEL.BACKBONE.NAME choice
    BACKBONE_WEIGHTS: str = ""  # ImageNet init: "" = the installed package's, a file, "random"
    TRAINABLE_LAYERS: int = 3  # backbone stages fine-tuned (0: frozen body)
    FPN_CHANNELS: int = 128
    REPRESENTATION_SIZE: int = 512  # box-head MLP width
    MIN_SIZE: int = 600  # shorter image side given to the detector
    MAX_SIZE: int = 1000  # cap on the longer side
    RPN_PRE_NMS_TOP_N_TRAIN: int = 2000
    RPN_POST_NMS_TOP_N_TRAIN: int = 1000
    RPN_PRE_NMS_TOP_N_TEST: int = 1000
    RPN_POST_NMS_TOP_N_TEST: int = 1000
    BOX_BATCH_SIZE_PER_IMAGE: int = 256  # sampled proposals per image for the box head
    SCORE_THRESH: float = 0.01  # detections kept above this class score
    NMS_THRESH: float = 0.5  # per-class NMS IoU
    DETECTIONS_PER_IMG: int = 80  # SGB's SGDet keeps at most 80 per image
    ANCHOR_SIZES: list[int] = field(default_factory=lambda: [32, 64, 128, 256])  # strides 8..64
    ASPECT_RATIOS: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # height / width


@dataclass
class ModelConfig:
    """The model (``MODEL``)."""

    DEVICE: str = "cpu"
    PRETRAINED_MODEL_CKPT: str = ""
    PRETRAINED_DETECTOR_CKPT: str = ""  # a trained detector (SGDet, detector features)
    # relation features: "cache" (frozen part stored once per image under FEATURE_CACHE_DIR),
    # "online" (computed from the image in each step), "auto" (online on CUDA; on a CPU the
    # cache unless the disk cannot hold it)
    FEATURE_STORAGE: Literal[FEATURE_STORAGES] = "auto"  # type: ignore[valid-type]
    BACKBONE: BackboneConfig = field(default_factory=BackboneConfig)
    DETECTOR: DetectorConfig = field(default_factory=DetectorConfig)
    ROI_RELATION_HEAD: RelationHeadConfig = field(default_factory=RelationHeadConfig)


@dataclass
class ScheduleConfig:
    """The learning-rate schedule after warm-up (``SOLVER.SCHEDULE``), as SGB's."""

    TYPE: Literal["WarmupMultiStepLR", "WarmupReduceLROnPlateau"] = "WarmupReduceLROnPlateau"
    PATIENCE: int = 2  # bad validations in a row that cut the rate
    THRESHOLD: float = 1e-3  # absolute improvement over the best (metrics as fractions)
    COOLDOWN: int = 0  # validations never counted bad, at the start and after a cut
    FACTOR: float = 0.1  # multiplier of each cut
    MAX_DECAY_STEP: int = 3  # training stops after this many cuts
    METRIC: str = "R@100"  # validation metric watched for a plateau (SGB: R@100)


@dataclass
class SolverConfig:
    """Optimisation (``SOLVER``), with SGB's meaning: SGD whose rate is ``BASE_LR x
    IMS_PER_BATCH`` (SGB's ``rl_factor``), for biases ``x BIAS_LR_FACTOR``."""

    IMS_PER_BATCH: int = 12  # images per iteration, over all processes
    BASE_LR: float = 0.01  # per image: the weights train at BASE_LR x IMS_PER_BATCH
    BIAS_LR_FACTOR: float = 1.0  # parameters named "*bias*": BASE_LR x this x IMS_PER_BATCH
    MAX_ITER: int = 50000
    MOMENTUM: float = 0.9
    WEIGHT_DECAY: float = 1e-4
    WEIGHT_DECAY_BIAS: float = 0.0  # weight decay of the parameters named "*bias*"
    WARMUP_ITERS: int = 500
    WARMUP_FACTOR: float = 0.1  # the rate starts at WARMUP_FACTOR x its value
    WARMUP_METHOD: Literal["linear", "constant"] = "linear"  # rise to 1, or stay until the end
    STEPS: list[int] = field(default_factory=lambda: [10000, 16000])  # WarmupMultiStepLR
    GAMMA: float = 0.1  # WarmupMultiStepLR multiplier at each step
    GRAD_NORM_CLIP: float = 5.0  # 0 turns clipping off
    CHECKPOINT_PERIOD: int = 2000  # iterations between model_last.pth saves
    VAL_PERIOD: int = 2000  # iterations between validations (0: never)
    BEST_METRIC: str = "mR@50"  # validation metric that selects model_best.pth
    AMP: bool = True  # mixed precision (float16 autocast), used on CUDA only
    LOG_PERIOD: int = 20  # iterations between train_log.csv rows
    SCHEDULE: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class EvaluationConfig:
    """Evaluation (``TEST``)."""

    IMS_PER_BATCH: int = 8
    TOP_KS: list[int] = field(default_factory=lambda: [20, 50, 100])
    MAX_VAL_IMAGES: int = -1  # validate on the first images of val only (-1: all)
    INFORMATION_FILE: str = ""  # RI@K table {predicate: nats}; "": -ln train frequency
    INFORMATIVE_FILE: str = ""  # InformativeRecall@K triplets {image_id: [...]}; "": none


@dataclass
class Config:
    """The whole configuration. ``Config()`` holds every default."""

    OUTPUT_DIR: str = "outputs/run"
    SEED: int = 0
    NUM_THREADS: int = 0  # torch intra-op CPU threads; 0 = automatic (basgg/threads.py)
    GLOVE_PATH: str = ""  # word vectors; "" = the installed GloVe package, "random" = none
    GLOVE_DIR: str = ""  # SGB's key: folder of glove.6B.<EMBED_DIM>d.txt, when GLOVE_PATH is ""
    FEATURE_CACHE_DIR: str = ""  # feature (and detection) caches; "" = OUTPUT_DIR/feature_cache
    DATASETS: DatasetsConfig = field(default_factory=DatasetsConfig)
    MODEL: ModelConfig = field(default_factory=ModelConfig)
    SOLVER: SolverConfig = field(default_factory=SolverConfig)
    TEST: EvaluationConfig = field(default_factory=EvaluationConfig)

    @property
    def mode(self) -> Mode:
        """The task, from ``USE_GT_BOX`` and ``USE_GT_OBJECT_LABEL``."""
        head = self.MODEL.ROI_RELATION_HEAD
        return Mode.from_flags(
            use_gt_box=head.USE_GT_BOX, use_gt_object_label=head.USE_GT_OBJECT_LABEL
        )


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), base: Config | None = None
) -> Config:
    """Defaults, then the YAML file at ``path``, then ``KEY VALUE`` ``overrides`` in order;
    then every value's range is checked (:func:`check_ranges`)."""
    config = base if base is not None else Config()
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as error:
            raise ConfigError(f"{path}: cannot read config file ({error.strerror})") from error
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from error
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
        for key, value in _flatten(data):
            set_value(config, key, value, source=str(path), from_text=False)
    config = apply_overrides(config, overrides)
    check_ranges(config, source=f"{path} or the command line" if path else "command line")
    return config


def check_ranges(config: Config, *, source: str = "") -> None:
    """Raise :class:`ConfigError` naming the first key whose value is out of its range
    (the table is :data:`basgg.config_ranges.RULES`)."""
    problem = first_range_problem(config)
    if problem:
        raise ConfigError(problem + (f" ({source})" if source else ""))


def config_from_dict(data: dict[str, Any], *, source: str) -> Config:
    """A config from a nested dict such as :func:`config_to_dict` gives (e.g. the one a
    checkpoint carries); ``source`` names where it came from in errors."""
    config = Config()
    for key, value in _flatten(data):
        set_value(config, key, value, source=source, from_text=False)
    return config


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Apply ``["KEY", "VALUE", "KEY", "VALUE", ...]`` as typed on the command line."""
    if len(overrides) % 2:
        raise ConfigError(
            f"config overrides come in KEY VALUE pairs; {overrides[-1]!r} has no value"
        )
    for key, value in zip(overrides[::2], overrides[1::2], strict=True):
        set_value(config, key, value, source="command line", from_text=True)
    return config


# SGB keys basgg spells otherwise: key -> (basgg key, {SGB value: basgg value})
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "DTYPE": ("SOLVER.AMP", {"float16": True, "float32": False}),  # SGB: APEX O1 when float16
}


def set_value(config: Config, key: str, value: Any, *, source: str, from_text: bool) -> None:
    """Set the dotted ``key`` to ``value``, converting and checking its type."""
    if key.upper() in ALIASES:
        target, mapping = ALIASES[key.upper()]
        text = decode_value(value.strip()) if from_text and isinstance(value, str) else value
        if text not in mapping:
            choices = ", ".join(map(repr, mapping))
            raise ConfigError(
                f"config key {key!r} ({source}) expects one of {choices}, got {value!r}"
            )
        set_value(config, target, mapping[text], source=source, from_text=False)
        return
    node: Any = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        name = _field_name(node, part)
        if name is None:
            raise ConfigError(f"unknown config key {key!r} ({source}){_suggestion(key)}")
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(node, name)):
                raise ConfigError(f"config key {key!r} ({source}) is a section, not a value")
            hint = typing.get_type_hints(type(node))[name]
            setattr(node, name, _convert(value, hint, key, source, from_text))
            return
        node = getattr(node, name)
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"unknown config key {key!r} ({source}){_suggestion(key)}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict with the canonical (upper-case) key spelling."""
    return {
        f.name: config_to_dict(value) if dataclasses.is_dataclass(value) else value
        for f in dataclasses.fields(config)
        for value in [getattr(config, f.name)]
    }


def save_config(config: Config, path: str | Path) -> Path:
    """Write the resolved configuration as YAML (loadable with :func:`load_config`)."""
    return atomic.write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def all_keys(config: Any = None, prefix: str = "") -> list[str]:
    """Every valid dotted key."""
    config = Config() if config is None else config
    keys = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(all_keys(value, f"{prefix}{f.name}."))
        else:
            keys.append(prefix + f.name)
    return keys


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in data.items():
        if isinstance(value, dict):
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _field_name(node: Any, part: str) -> str | None:
    if not dataclasses.is_dataclass(node):
        return None
    by_lower = {f.name.lower(): f.name for f in dataclasses.fields(node)}
    return by_lower.get(part.lower())


def _suggestion(key: str) -> str:
    keys = all_keys()
    by_upper = {k.upper(): k for k in keys}
    close = difflib.get_close_matches(key.upper(), list(by_upper), n=1, cutoff=0.5)
    if not close:
        tail = key.upper().rsplit(".", 1)[-1]
        close = [k for k in by_upper if k.endswith("." + tail) or k == tail][:1]
    return f"; did you mean {by_upper[close[0]]!r}?" if close else ""


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def decode_value(text: str) -> Any:
    """A value as yacs decodes it: a Python literal (``ast.literal_eval``: ``(10000, 16000)``,
    ``[1, 2]``, ``'path'``, ``True``, ``1e-4``), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _convert(value: Any, hint: Any, key: str, source: str, from_text: bool) -> Any:
    """``value`` as type ``hint``. Strings are decoded as yacs decodes them
    (:func:`decode_value`), from the command line and from YAML; a string key keeps the
    command-line text (unquoted) when it is not a string literal."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"config key {key!r} ({source}) expects {expected}, got {value!r}")

    origin = typing.get_origin(hint)
    if hint is str or origin is Literal:
        text = value
        if from_text and isinstance(value, str):
            decoded = decode_value(value.strip())
            text = decoded if isinstance(decoded, str) else _unquote(value.strip())
        if origin is Literal:
            choices = typing.get_args(hint)
            if text not in choices:
                raise fail("one of " + ", ".join(map(repr, choices)))
            return text
        try:
            return _to_str(text)
        except TypeError:
            raise fail("a string") from None
    decoded = decode_value(value.strip()) if isinstance(value, str) else value
    if origin in (list, tuple):
        item_type = typing.get_args(hint)[0]
        items = decoded
        if isinstance(decoded, str):  # not a literal: YAML's flow syntax, e.g. [a, b]
            try:
                items = yaml.safe_load(decoded if decoded.startswith("[") else f"[{decoded}]")
            except yaml.YAMLError:
                raise fail(f"a list of {item_type.__name__}") from None
        elif not isinstance(decoded, (list, tuple)):
            items = [decoded]  # one value: a list of one
        if not isinstance(items, (list, tuple)):
            raise fail(f"a list of {item_type.__name__}")
        try:
            converted = [_convert(item, item_type, key, source, False) for item in items]
        except ConfigError:
            raise fail(f"a list of {item_type.__name__} such as (10000, 16000)") from None
        return tuple(converted) if origin is tuple else converted
    if hint not in _SCALARS:
        raise ConfigError(f"config key {key!r}: unsupported type {hint!r}")
    expected, converter = _SCALARS[hint]
    try:
        return converter(decoded)
    except (TypeError, ValueError):
        raise fail(expected) from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(value)
    return int(value.strip()) if isinstance(value, str) else value


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(value)
    return float(value.strip()) if isinstance(value, str) else float(value)


def _to_str(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(value)
    return value


_SCALARS: dict[type, tuple[str, Any]] = {
    bool: ("True or False", _to_bool),
    int: ("an integer", _to_int),
    float: ("a number", _to_float),
}


def _unquote(text: str) -> str:
    """``"'path'"`` -> ``path``: a value quoted inside the shell's own quoting."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text
