"""Typed configuration of ``medattn pretrain`` (YAML validated into pydantic models).

Every default is visible here. A config names *what* to pretrain (``kind``):

* ``mae`` — GRCSF's masked autoencoder (:class:`medattn.models.mae.MAE`);
  the result is ``mae.safetensors`` for GRCSF's ``mae=`` option;
* ``encoder`` — any registered encoder with a SparK/SimMIM-style objective;
  the result is ``encoder.safetensors`` in the encoder's own key layout, for
  ``create_encoder(name, pretrained=...)`` and the zoo's ``pretrained_encoder=``.

``--set key=value`` overrides use dotted keys (``data.max_images=64``,
``mae_options.depth=6``); values are parsed as YAML (``true``, ``1e-3``, ``[128, 128]``).
Reading, overrides and error messages are those of ``medattn train``
(:mod:`medattn.training.config`), so both commands behave alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medattn.errors import ConfigError
from medattn.training.config import apply_overrides, condense, read_yaml


class SplitSource(BaseModel):
    """Images of one subset of a split file (``medattn datasets split``); masks are ignored."""

    model_config = ConfigDict(extra="forbid")

    file: Path = Field(description="split JSON written by medattn.data.save_split")
    subset: str = Field("train", description="which subset of the split to use")


class PretrainData(BaseModel):
    """Where the unlabeled images come from (all sources are merged, duplicates dropped)."""

    model_config = ConfigDict(extra="forbid")

    folders: list[Path] = Field(default_factory=list,
                                description="dataset folders (any layout medattn.data.discover knows)")
    splits: list[SplitSource] = Field(default_factory=list, description="subsets of split files")
    pranet_train: Path | None = Field(None, description="data root: the 1450 PraNet training images")
    max_images: int | None = Field(None, ge=1, description="use only the first N images (sorted)")
    cache: bool = Field(False, description="keep decoded, resized images in memory")
    flip: bool = Field(True, description="random horizontal and vertical flips")

    @model_validator(mode="after")
    def _some_source(self) -> PretrainData:
        if not self.folders and not self.splits and self.pranet_train is None:
            raise ValueError("give at least one image source: data.folders, data.splits or data.pranet_train")
        return self


class PretrainConfig(BaseModel):
    """Everything one pretraining run needs."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["mae", "encoder"] = Field("mae", description="what to pretrain")
    mae_options: dict[str, Any] = Field(default_factory=dict, description="MAE architecture (kind=mae)")
    encoder: str = Field("resnet34", description="registered encoder name (kind=encoder)")
    encoder_options: dict[str, Any] = Field(default_factory=dict, description="encoder builder options")
    decoder_dim: int = Field(64, ge=4, description="width of the light reconstruction decoder (kind=encoder)")
    data: PretrainData
    input_size: tuple[int, int] = Field((256, 256), description="images are resized to (H, W)")
    in_channels: Literal[1, 3] = Field(3, description="1 = grayscale, 3 = RGB")
    mask_ratio: float = Field(0.75, gt=0.0, lt=1.0, description="fraction of patches hidden")
    patch_size: int | None = Field(None, ge=1, description="masking patch side (default: MAE patch / encoder stride)")
    norm_pix_loss: bool = Field(True, description="regress per-patch normalised pixels")
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-4, gt=0.0, description="peak learning rate (AdamW)")
    min_lr: float = Field(1e-6, ge=0.0, description="learning rate at the end of the cosine")
    weight_decay: float = Field(0.05, ge=0.0)
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas (MAE's)")
    warmup_epochs: float = Field(5.0, ge=0.0, description="linear warm-up length in epochs")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch (quick runs)")
    bf16: bool = Field(False, description="bfloat16 autocast (CPU or GPU)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available")
    seed: int = Field(0, description="seeds weights, shuffling, masks and flips")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    out_dir: Path = Field(Path("runs/pretrain"), description="weights, checkpoint, log")
    save_every: int = Field(1, ge=1, description="write weights and checkpoint every N epochs")
    snapshot_epochs: list[int] = Field(default_factory=list,
                                       description="also keep the weights after these epochs as "
                                                   "<weights>_epoch<N>.safetensors (pretraining-length studies)")

    @field_validator("input_size")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 8:
            raise ValueError(f"input_size {v} is too small (minimum 8x8)")
        return v

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _resolve(path: Path, base: Path) -> Path:
    """A relative path is taken from the working folder, else from the config file's folder."""
    path = path.expanduser()
    if path.is_absolute() or path.exists():
        return path
    beside = base / path
    return beside if beside.exists() else path


def load_pretrain_config(path: str | Path | None, overrides: Sequence[str] = (),
                         data: dict[str, Any] | None = None) -> PretrainConfig:
    """Read a YAML config (or take ``data``), apply overrides, validate into :class:`PretrainConfig`.

    Errors name the file and the offending key; every data source must exist.
    """
    where = Path(path).name if path is not None else "config"
    doc: dict[str, Any] = dict(data or {})
    base = Path.cwd()
    if path is not None:
        doc = read_yaml(path)
        base = Path(path).resolve().parent
    apply_overrides(doc, list(overrides))
    try:
        cfg = PretrainConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {condense(exc)}") from None
    d = cfg.data
    d.folders = [_resolve(p, base) for p in d.folders]
    for s in d.splits:
        s.file = _resolve(s.file, base)
    if d.pranet_train is not None:
        d.pranet_train = _resolve(d.pranet_train, base)
    for key, p in [*(("data.folders", f) for f in d.folders), *(("data.splits", s.file) for s in d.splits),
                   *([("data.pranet_train", d.pranet_train)] if d.pranet_train is not None else [])]:
        if not p.exists():
            raise ConfigError(f"{where}: {key}: {p}: no such file or folder")
    return cfg
