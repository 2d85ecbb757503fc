"""The MONAI baselines through the shared per-model tester."""

from __future__ import annotations

from .tester import SegmentationModelTester


class TestUNet(SegmentationModelTester):
    model_name = "unet"


class TestAttentionUNet(SegmentationModelTester):
    model_name = "attention_unet"


class TestUNetPlusPlus(SegmentationModelTester):
    model_name = "unetpp"
