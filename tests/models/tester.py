"""Shared per-model tests, subclassed once per architecture (as smp's ``BaseModelTester``).

Usage in a model's own test file::

    from tests.models.tester import SegmentationModelTester

    class TestBSANet(SegmentationModelTester):
        model_name = "bsanet"
        paper_params = 6_360_000

Every class attribute below can be overridden. The class has no
``__init__`` (pytest collects it only through ``Test*`` subclasses, since its
own name does not start with ``Test``). Inputs are tiny so that a model's
whole suite runs in a few seconds on a CPU.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from medattn.models import create


class SegmentationModelTester:
    """The contract every segmentation model in the zoo must keep.

    Attributes:
        model_name: registry name of the model under test.
        options: extra options for every build (over the registry defaults).
        sizes: (H, W) input sizes; the second is not a multiple of a usual stride.
        in_channels_cases: input channel counts to check.
        num_classes_cases: output channel counts to check (binary and multi-class).
        batch_size: batch used in training-mode passes (2, so batch norm works).
        paper_params: parameter count the paper reports (None: not checked).
        param_options: options for the parameter count build (default: ``options``).
        param_tolerance: allowed relative difference to ``paper_params``.
        onnx: whether the ONNX export check runs.
        onnx_size: input size of the ONNX check.
        onnx_atol: allowed max abs difference between PyTorch and ONNX Runtime.
        unused_parameters: glob patterns of parameter names allowed to get no gradient.
    """

    model_name: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    sizes: ClassVar[tuple[tuple[int, int], ...]] = ((64, 64), (72, 88))
    in_channels_cases: ClassVar[tuple[int, ...]] = (1, 3)
    num_classes_cases: ClassVar[tuple[int, ...]] = (1, 3)
    batch_size: ClassVar[int] = 2
    paper_params: ClassVar[int | None] = None
    param_options: ClassVar[dict[str, Any] | None] = None
    param_tolerance: ClassVar[float] = 0.10
    onnx: ClassVar[bool] = True
    onnx_size: ClassVar[tuple[int, int]] = (64, 64)
    onnx_atol: ClassVar[float] = 1e-4
    unused_parameters: ClassVar[tuple[str, ...]] = ()

    # -- helpers ---------------------------------------------------------
    def build(self, seed: int = 0, **kwargs: Any) -> nn.Module:
        torch.manual_seed(seed)
        return create(self.model_name, **{**self.options, **kwargs})

    @staticmethod
    def _input(batch: int, channels: int, size: tuple[int, int], seed: int = 1) -> torch.Tensor:
        return torch.rand(batch, channels, *size, generator=torch.Generator().manual_seed(seed))

    @staticmethod
    def _outputs(out: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        return list(out) if isinstance(out, (list, tuple)) else [out]

    # -- tests -----------------------------------------------------------
    def test_forward_shapes(self) -> None:
        """Eval-mode logits are (B, num_classes, H, W) for every size, channel and class count."""
        cases = [(c, self.num_classes_cases[0]) for c in self.in_channels_cases]
        cases += [(self.in_channels_cases[-1], k) for k in self.num_classes_cases[1:]]
        for in_ch, n_cls in cases:
            net = self.build(in_channels=in_ch, num_classes=n_cls).eval()
            for size in self.sizes:
                with torch.no_grad():
                    y = net(self._input(1, in_ch, size))
                assert isinstance(y, torch.Tensor), f"eval mode must return one tensor, got {type(y)}"
                assert y.shape == (1, n_cls, *size), f"in={in_ch} classes={n_cls} size={size}: {tuple(y.shape)}"
                assert torch.isfinite(y).all()

    def test_backward_reaches_every_parameter(self) -> None:
        """A loss over all outputs gives every trainable parameter a finite gradient."""
        in_ch = self.in_channels_cases[-1]
        net = self.build(in_channels=in_ch, num_classes=self.num_classes_cases[0]).train()
        outs = self._outputs(net(self._input(self.batch_size, in_ch, self.sizes[-1])))
        loss = sum(o.float().pow(2).mean() for o in outs)
        loss.backward()
        missing, bad = [], []
        for name, p in net.named_parameters():
            if not p.requires_grad or any(fnmatch.fnmatch(name, pat) for pat in self.unused_parameters):
                continue
            if p.grad is None:
                missing.append(name)
            elif not torch.isfinite(p.grad).all():
                bad.append(name)
        assert not missing, f"{len(missing)} parameters got no gradient: {missing[:10]}"
        assert not bad, f"non-finite gradients in {bad[:10]}"

    def test_eval_is_deterministic(self) -> None:
        net = self.build().eval()
        x = self._input(1, net.in_channels, self.sizes[-1])
        with torch.no_grad():
            a, b = net(x), net(x)
        assert torch.equal(a, b)

    def test_deep_supervision_only_in_training(self) -> None:
        in_ch = self.in_channels_cases[-1]
        n_cls = self.num_classes_cases[0]
        net = self.build(in_channels=in_ch, num_classes=n_cls)
        size = self.sizes[-1]
        x = self._input(self.batch_size, in_ch, size)
        net.train()
        out = net(x)
        if getattr(net, "deep_supervision", False):
            assert isinstance(out, list) and len(out) >= 2, "deep supervision must give [main, aux...] in training"
            for o in out:
                assert o.shape == (self.batch_size, n_cls, *size)
        else:
            assert isinstance(out, torch.Tensor), "without deep supervision training mode returns one tensor"
        net.eval()
        with torch.no_grad():
            assert isinstance(net(x), torch.Tensor)

    def test_predict_gives_probabilities(self) -> None:
        for n_cls in (self.num_classes_cases[0], self.num_classes_cases[-1]):
            net = self.build(num_classes=n_cls)
            p = net.predict(self._input(1, net.in_channels, self.sizes[0]))
            assert p.min() >= 0 and p.max() <= 1
            if n_cls > 1:
                torch.testing.assert_close(p.sum(1), torch.ones_like(p.sum(1)))

    def test_wrong_channel_count_is_rejected(self) -> None:
        net = self.build(in_channels=1).eval()
        with pytest.raises(ValueError, match="channel"):
            net(self._input(1, 3, self.sizes[0]))

    def test_save_load_round_trip(self, tmp_path) -> None:
        """Weights and buffers saved through safetensors reproduce the outputs exactly."""
        from safetensors.torch import load_model, save_model

        src = self.build(seed=0)
        with torch.no_grad():  # move away from the initial values so a no-op load cannot pass
            for p in src.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        src.train()
        with torch.no_grad():  # updates batch-norm running statistics (buffers)
            src(self._input(self.batch_size, src.in_channels, self.sizes[0], seed=5))
        src.eval()
        path = tmp_path / f"{self.model_name}.safetensors"
        save_model(src, str(path))
        dst = self.build(seed=123).eval()
        x = self._input(1, src.in_channels, self.sizes[-1])
        with torch.no_grad():
            ref = src(x)
            assert not torch.equal(ref, dst(x)), "fresh model already equals the trained one"
            load_model(dst, str(path))
            assert torch.equal(ref, dst(x))

    def test_onnx_export_matches(self, tmp_path) -> None:
        if not self.onnx:
            pytest.skip(f"{self.model_name}: ONNX export not supported")
        pytest.importorskip("onnxruntime")
        from medattn.models.export import export_onnx, max_abs_difference

        net = self.build().eval()
        path = export_onnx(net, tmp_path / "model.onnx", size=self.onnx_size)
        diff = max_abs_difference(net, path, self._input(1, net.in_channels, self.onnx_size))
        assert diff < self.onnx_atol, f"ONNX Runtime differs from PyTorch by {diff:.3g}"

    def test_parameter_count_matches_paper(self) -> None:
        if self.paper_params is None:
            pytest.skip(f"{self.model_name}: the paper gives no parameter count")
        opts = self.param_options if self.param_options is not None else self.options
        torch.manual_seed(0)
        net = create(self.model_name, **opts)
        n = sum(p.numel() for p in net.parameters())
        rel = abs(n - self.paper_params) / self.paper_params
        assert rel <= self.param_tolerance, (
            f"{self.model_name}: {n:,} parameters vs {self.paper_params:,} in the paper "
            f"({rel:.1%} > {self.param_tolerance:.0%})"
        )
        assert math.isfinite(rel)
