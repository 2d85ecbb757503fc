"""Typed training configuration: YAML validated into pydantic models, every default in this file.

>>> cfg = load_config("configs/smoke.yaml", ["train.epochs=2", "data.input_size=[64, 64]"])  # doctest: +SKIP

``--set`` overrides use dotted keys; each value is parsed as a YAML scalar or
list (``true``, ``1e-3``, ``[64, 64]``, ``null``). Relative paths are taken from
the current folder and stored absolute in the run's ``config.yaml``.
Validation errors become one :class:`~medattn.errors.ConfigError` line such as
``train.epochs: Input should be a valid integer (got 'x')``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medattn.errors import ConfigError, MedattnIOError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Which registered network to train (``medattn models`` lists them)."""

    name: str = Field("unet", description="registry name")
    options: dict[str, Any] = Field(default_factory=dict, description="builder options over the registry defaults")
    num_classes: int = Field(1, ge=1, description="output channels (1 = binary, sigmoid)")
    init: str | None = Field(None, description="start from these weights: a .safetensors file with its JSON card "
                                               "(e.g. another run's best.safetensors) or a bundled model name; "
                                               "ignored by --resume")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from medattn.models import model_info

        try:
            model_info(name)
        except ConfigError as exc:  # pydantic only wraps ValueError
            raise ValueError(str(exc)) from None
        return name


class SplitConfig(_Section):
    """How samples are divided into train / val (/ test).

    * ``pranet``: PraNet protocol on ``data.root`` = the data root (900 Kvasir-SEG + 550 CVC-ClinicDB train;
      test = the listed 100 + 62); validation is carved from train by ``val_ratio``;
    * ``ratio``: ``ratios`` train:val:test (e.g. 8:1:1) shuffled with ``seed``;
    * ``kfold``: fold ``fold`` of ``k`` (val = that fold, train = the rest);
    * ``file``: a split JSON (``medattn datasets split``) with ``train`` and ``val``/``test`` parts;
    * ``none``: all samples train; ``val_ratio`` carves validation.
    """

    kind: Literal["pranet", "ratio", "kfold", "file", "none"] = "ratio"
    ratios: list[float] = Field(default_factory=lambda: [8.0, 1.0, 1.0], description="train:val[:test] (ratio)")
    k: int = Field(5, ge=2, description="number of folds (kfold)")
    fold: int = Field(0, ge=0, description="which fold validates (kfold)")
    file: Path | None = Field(None, description="split JSON (file)")
    seed: int = Field(0, description="shuffling seed of the split")
    val_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="share of train kept for validation "
                                                                "when the split has no val part")

    @model_validator(mode="after")
    def _consistent(self) -> SplitConfig:
        if self.kind == "kfold" and self.fold >= self.k:
            raise ValueError(f"fold {self.fold} does not exist with k={self.k} (use 0..{self.k - 1})")
        if self.kind == "file" and self.file is None:
            raise ValueError("kind 'file' needs data.split.file")
        if self.kind == "ratio" and len(self.ratios) not in (2, 3):
            raise ValueError(f"ratios {self.ratios}: give 2 (train:val) or 3 (train:val:test) numbers")
        return self


class DataConfig(_Section):
    """Where the images come from and how they are fed."""

    kind: str = Field("segmentation", description="dataset builder (register_dataset_builder)")
    root: list[Path] = Field(default_factory=list, description="dataset folder(s); pranet: the data root")
    layout: str | None = Field(None, description="force a medattn.data layout (default: auto-detect)")
    split: SplitConfig = Field(default_factory=SplitConfig)
    input_size: tuple[int, int] = Field((256, 256), description="(H, W) images are resized to")
    in_channels: Literal[1, 3, 4] = Field(3, description="1 = grayscale, 3 = RGB, 4 = RGB + grayscale")
    augment: list[str | dict[str, Any]] = Field(default_factory=list,
                                                description="augmentation names/dicts (medattn datasets augmentations)")
    cache: bool = Field(False, description="keep resized images in memory")
    cache_dir: Path | None = Field(None, description="decode and resize every image once into memory-mapped "
                                                      ".npy files here (keyed by file, size, mtime and input "
                                                      "size), shared by loader workers and later runs")
    workers: int = Field(0, ge=0, description="DataLoader worker processes")
    limit: int | None = Field(None, ge=1, description="use only the first N train (and val) samples (quick runs)")
    options: dict[str, Any] = Field(default_factory=dict, description="extra options for custom builders")
    modality: list[str] | None = Field(None, description="input modalities the model is for (endoscopy, dermoscopy, "
                                                         "ct, mr...), written into the checkpoint cards; default: "
                                                         "inferred from the dataset (see data_modality)")

    @field_validator("root", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, os.PathLike)) else value

    @field_validator("modality", mode="before")
    @classmethod
    def _modality_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("input_size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @field_validator("input_size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 8:
            raise ValueError(f"input size {list(value)} is too small (at least 8 x 8)")
        return value


class LossConfig(_Section):
    """Training loss (``medattn.losses``) and how auxiliary outputs are weighted."""

    name: str = Field("bce_dice", description="bce_dice | dice | bce | structure | l1 | mse | ssim")
    options: dict[str, Any] = Field(default_factory=dict, description="loss builder options")
    aux_weights: str | list[float] = Field("halving", description="deep supervision: halving | equal | none | list")
    normalize_aux: bool = Field(False, description="divide by 1 + sum of auxiliary weights")
    point_loss_weight: float = Field(1.0, ge=0.0, description="weight of model.point_loss(target) when defined")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from medattn.losses import build_loss, list_losses

        if name not in list_losses():
            try:
                build_loss(name)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return name


class OptimConfig(_Section):
    """Optimiser (``medattn.training.optim.build_optimizer``)."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW")
    momentum: float = Field(0.9, ge=0.0, description="SGD")
    nesterov: bool = Field(False, description="SGD")
    fused: bool = Field(False, description="fused Adam/AdamW kernel (one call for all parameters; CPU and CUDA)")


class ScheduleConfig(_Section):
    """Learning-rate schedule (``medattn.training.optim.build_scheduler``).

    ``step``: x ``gamma`` every ``step_size`` epochs (HLF-Net: 0.1 every 15);
    ``plateau``: x ``factor`` after ``patience`` validations without improvement of the monitored metric;
    ``cosine``: linear warm-up over ``warmup_epochs`` then cosine to ``min_lr``, updated every step;
    ``none``: constant.
    """

    name: Literal["none", "step", "plateau", "cosine"] = "none"
    step_size: int = Field(30, ge=1)
    gamma: float = Field(0.1, gt=0.0)
    patience: int = Field(10, ge=0)
    factor: float = Field(0.1, gt=0.0, lt=1.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    min_lr: float = Field(0.0, ge=0.0)


class ResizeStage(_Section):
    """One stage of progressive resizing: ``epochs`` epochs at ``size`` before the full input size."""

    epochs: int = Field(..., ge=1)
    size: tuple[int, int]

    @field_validator("size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @field_validator("size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 8:
            raise ValueError(f"size {list(value)} is too small (at least 8 x 8)")
        return value


class TrainConfig(_Section):
    """The loop."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1, description="global batch (split evenly over DDP processes)")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 = autocast (CPU and CUDA)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    deterministic: bool = Field(True, description="torch.use_deterministic_algorithms(warn_only=True)")
    grad_clip: float | None = Field(None, gt=0.0, description="clip the gradient norm to this value")
    val_interval: int = Field(1, ge=1, description="validate every N epochs")
    checkpoint_interval: int = Field(1, ge=1, description="write last.* and the resumable state every N epochs")
    early_stopping: int | None = Field(None, ge=1, description="stop after N validations without improvement")
    min_delta: float = Field(0.0, ge=0.0, description="smallest change that counts as improvement")
    monitor: str | None = Field(None, description="metric choosing best.*: val_dice (segmentation), "
                                                   "val_psnr (denoising), val_loss, ...")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch (quick runs)")
    drop_last: bool = Field(False, description="drop the last incomplete batch")
    curves: bool = Field(True, description="write curves.png at the end")
    channels_last: bool | Literal["auto"] = Field(False, description="model and batches in channels-last memory "
                                                                     "format (faster oneDNN convolutions); auto: "
                                                                     "unless the model has GroupNorm layers, whose "
                                                                     "CPU backward is slower in channels-last")
    compile: bool = Field(False, description="torch.compile the model (pays only on some machines: "
                                             "benchmarks/train_speed.py)")
    log_interval: int = Field(10, ge=1, description="read the loss back (progress bar, finiteness check) "
                                                    "every N steps instead of every step")
    ema: float | None = Field(None, gt=0.0, lt=1.0, description="decay of an exponential moving average of "
                                                                "the weights (e.g. 0.999); validation and the "
                                                                "saved checkpoints then use the average")
    multi_scale: list[float] | None = Field(None, description="rescale each training batch by a factor drawn "
                                                              "from this list (PraNet: [0.75, 1.0, 1.25]), "
                                                              "sides rounded to multiples of 32")
    progressive: list[ResizeStage] = Field(default_factory=list,
                                           description="progressive resizing: [{epochs: 2, size: 128}, ...] "
                                                       "first, then data.input_size")

    @field_validator("multi_scale")
    @classmethod
    def _scales(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or min(value) <= 0):
            raise ValueError(f"scales {value}: give positive factors, e.g. [0.75, 1.0, 1.25]")
        return value


class InferenceConfig(_Section):
    """How the trained model is meant to be run; written into the checkpoint cards' ``inference`` block
    (with ``data.input_size``), the defaults of ``medattn predict``, ``medattn evaluate --model`` and the app."""

    tta: bool = Field(False, description="test-time augmentation: average with the flipped inputs")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="probability threshold of the mask")
    zoom: int = Field(1, ge=1, strict=True, description="also predict overlapping windows of 1/zoom of the "
                                                        "image side and fuse them (small lesions); 1: off")


class Config(_Section):
    """Everything one training run needs (``medattn train CONFIG.yaml``)."""

    name: str | None = Field(None, description="run name (default: the config file's stem)")
    out_dir: Path | None = Field(None, description="run folder (default: runs/<name>)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)

    def dump(self) -> dict[str, Any]:
        """Plain data (paths as strings) for YAML/JSON."""
        return self.model_dump(mode="json")


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"--set {key}=...: empty part in the key")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=5"`` -> ``("train.epochs", 5)`` (the value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value (e.g. train.epochs=5)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({exc.problem})") from None
    return key.strip(), value


def apply_overrides(tree: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key=value`` strings to a nested dict (in place) and return it."""
    for item in overrides or []:
        _set_dotted(tree, *parse_override(item))
    return tree


def condense(exc: ValidationError, prefix: str = "") -> str:
    """One line per pydantic error: ``train.epochs: Input should be a valid integer (got 'x')``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        elif "input" in err and not isinstance(err["input"], (dict, list)) and err["type"] != "value_error":
            msg += f" (got {err['input']!r})"
        lines.append(f"{prefix}{loc}: {msg}" if loc else f"{prefix}{msg}")
    return "; ".join(lines)


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML mapping from ``path``; clear errors for missing / malformed files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MedattnIOError(path, "config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MedattnIOError(path, f"cannot read config ({exc})") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise MedattnIOError(path, f"invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise MedattnIOError(path, "config must be a YAML mapping of sections (model, data, train, ...)")
    return tree


def build_config(tree: dict[str, Any], source: str = "config", check_paths: bool = True) -> Config:
    """Validate a nested dict into a :class:`Config` (one-line :class:`ConfigError` on failure)."""
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {condense(exc)}") from None
    cfg.data.root = [p.expanduser().resolve() for p in cfg.data.root]
    if cfg.data.cache_dir is not None:
        cfg.data.cache_dir = cfg.data.cache_dir.expanduser().resolve()
    if cfg.data.split.file is not None:
        cfg.data.split.file = cfg.data.split.file.expanduser().resolve()
    if cfg.out_dir is not None:
        cfg.out_dir = cfg.out_dir.expanduser().resolve()
    if cfg.model.init is not None and Path(cfg.model.init).expanduser().exists():
        cfg.model.init = str(Path(cfg.model.init).expanduser().resolve())
    if check_paths:
        check_config_paths(cfg, source)
    return cfg


def check_config_paths(cfg: Config, source: str = "config") -> None:
    """Every dataset path must exist (one line naming the setting and the path).

    Builders other than ``segmentation`` read their own inputs (``data.options``), so
    ``data.root`` may then be empty. ``model.init`` is checked when a fresh run starts
    (a resumed run does not need it).
    """
    if not cfg.data.root and cfg.data.split.kind != "file" and cfg.data.kind == "segmentation":
        raise ConfigError(f"{source}: data.root: no dataset folder given")
    for p in cfg.data.root:
        if not p.exists():
            raise ConfigError(f"{source}: data.root: {p}: no such folder")
    f = cfg.data.split.file
    if f is not None and not f.is_file():
        raise ConfigError(f"{source}: data.split.file: {f}: no such file")


def load_config(path: str | os.PathLike[str] | None, overrides: list[str] | None = None,
                check_paths: bool = True) -> Config:
    """Read ``path`` (YAML; ``None`` = all defaults), apply ``--set`` overrides, validate.

    The run name defaults to the file's stem.
    """
    tree = read_yaml(path) if path is not None else {}
    apply_overrides(tree, overrides)
    source = Path(path).name if path is not None else "config"
    cfg = build_config(tree, source, check_paths=check_paths)
    if cfg.name is None:
        cfg.name = Path(path).stem if path is not None else "run"
    return cfg


def save_config(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (atomically)."""
    from medattn.utils.fileio import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(cfg.dump(), sort_keys=False))


#: dataset folder-name fragments -> the modality of their images
_MODALITY_OF_DATASET = (("kvasir", "endoscopy"), ("clinicdb", "endoscopy"), ("cvc", "endoscopy"),
                        ("polyp", "endoscopy"), ("ph2", "dermoscopy"), ("isic", "dermoscopy"), ("ham10000", "dermoscopy"),
                        ("ldct", "ct"), ("mayo", "ct"), ("totalsegmentator", "ct"))


def data_modality(cfg: Config) -> list[str] | None:
    """The input modalities a run's model is for: ``data.modality`` when set, else inferred from the data
    (the ``ldct`` builder: CT; the PraNet split: endoscopy; dataset folders named like Kvasir / ClinicDB:
    endoscopy, PH2 / ISIC: dermoscopy); None when it cannot tell (the card then declares no modality)."""
    if cfg.data.modality:
        return list(cfg.data.modality)
    if cfg.data.kind == "ldct":
        return ["ct"]
    if cfg.data.split.kind == "pranet":
        return ["endoscopy"]
    found = []
    for root in cfg.data.root:
        name = Path(root).as_posix().lower()
        kinds = {m for frag, m in _MODALITY_OF_DATASET if frag in name}
        if len(kinds) != 1:
            return None  # a folder of unknown (or mixed) kind: do not guess
        found += [m for m in kinds if m not in found]
    return found or None
