"""ONNX export of zoo models, checked against PyTorch with ONNX Runtime.

The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) is
used: it needs nothing beyond ``onnx`` and works offline for every model in
the zoo. The input spatial size is fixed at export time because
:class:`~medattn.models.base.SegmentationModel` pads to its stride with
Python integers; the batch dimension can be made dynamic.

>>> from medattn.models import create                        # doctest: +SKIP
>>> export_onnx(create("unet"), "unet.onnx", size=(256, 256)) # doctest: +SKIP
>>> max_abs_difference(create("unet"), "unet.onnx")          # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medattn.errors import ConfigError
from medattn.utils.fileio import atomic_path

DEFAULT_OPSET = 17


def _in_channels(model: nn.Module) -> int:
    ch = getattr(model, "in_channels", None)
    if not isinstance(ch, int):
        raise ConfigError(f"{type(model).__name__} has no integer `in_channels`; pass in_channels explicitly")
    return ch


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] = (256, 256),
    in_channels: int | None = None,
    batch_size: int = 1,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
) -> Path:
    """Export ``model`` (in eval mode) to ``path`` atomically; returns the path.

    The graph takes ``image`` of shape ``(batch_size, C, *size)`` and returns
    ``logits``. With ``dynamic_batch`` the batch dimension is symbolic.
    """
    c = in_channels if in_channels is not None else _in_channels(model)
    was_training = model.training
    model.eval()
    x = torch.rand(batch_size, c, *size)
    path = Path(path)
    try:
        with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
            # The legacy exporter warns about its own deprecation and about
            # shape checks traced as constants (expected: H, W are fixed).
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None,
                do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    return path


def onnx_session(path: str | os.PathLike[str], threads: int | None = None):  # -> ort.InferenceSession
    """An ONNX Runtime CPU session for ``path`` (``threads`` intra-op threads when given)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ConfigError("ONNX Runtime is not installed: pip install 'medattn[onnx]'") from exc
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(os.fspath(path), sess_options=opts, providers=["CPUExecutionProvider"])


def max_abs_difference(
    model: nn.Module, path: str | os.PathLike[str], x: torch.Tensor | None = None,
    size: tuple[int, int] | None = None, batch_size: int = 1,
) -> float:
    """Largest absolute difference between ``model(x)`` and the ONNX graph at ``path``.

    Without ``x`` a random input of the exported shape is used.
    """
    sess = onnx_session(path)
    inp = sess.get_inputs()[0]
    if x is None:
        shape = list(inp.shape)
        if size is not None:
            shape[-2:] = size
        shape = [batch_size if not isinstance(d, int) else d for d in shape]
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = model(x)
    finally:
        model.train(was_training)
    if isinstance(ref, (list, tuple)):
        ref = ref[0]
    out = sess.run(None, {inp.name: x.numpy()})[0]
    if out.shape != tuple(ref.shape):
        raise ConfigError(f"{os.fspath(path)}: ONNX output shape {out.shape} != PyTorch {tuple(ref.shape)}")
    return float(np.max(np.abs(out - ref.numpy()))) if out.size else 0.0
