"""Self-supervised pretraining: masked image modelling on unlabeled images.

* ``kind: mae`` trains GRCSF's masked autoencoder (He et al., CVPR 2022) and
  writes ``mae.safetensors`` (weights + architecture in the metadata) for
  ``create("grcsf", mae=PATH)``;
* ``kind: encoder`` trains any registered encoder with a SimMIM/SparK-style
  objective and writes ``encoder.safetensors`` in the encoder's own key
  layout, for ``create_encoder(name, pretrained=PATH)`` and the zoo models'
  ``pretrained_encoder=`` option.

>>> from medattn.pretrain import load_pretrain_config, run_pretraining      # doctest: +SKIP
>>> cfg = load_pretrain_config("configs/pretrain_mae_isic.yaml", ["epochs=1"])  # doctest: +SKIP
>>> run_pretraining(cfg).weights                                          # doctest: +SKIP
PosixPath('runs/pretrain_mae_isic/mae.safetensors')
"""

from __future__ import annotations

from medattn.pretrain.config import (
    PretrainConfig,
    PretrainData,
    SplitSource,
    apply_overrides,
    load_pretrain_config,
)
from medattn.pretrain.trainer import PretrainResult, build_model, collect_images, run_pretraining

__all__ = [
    "PretrainConfig",
    "PretrainData",
    "PretrainResult",
    "SplitSource",
    "apply_overrides",
    "build_model",
    "collect_images",
    "load_pretrain_config",
    "run_pretraining",
]
