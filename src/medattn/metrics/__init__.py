"""Metrics on NumPy arrays (no torch): segmentation, PraNet/SOD, denoising, detection.

Each family has plain functions for one image and a streaming object with
``update()`` per image and ``aggregate()`` at the end. Definitions and the
values for empty masks are in ``docs/metrics.md``.
"""

from medattn.metrics.base import StreamingMetric, finite_mean
from medattn.metrics.denoising import DenoisingMetrics, psnr, rmse_hu, ssim
from medattn.metrics.detection import (
    FrocResult,
    box_iou,
    froc,
    froc_curve,
    match_detections,
    sensitivity_at_fp,
)
from medattn.metrics.segmentation import (
    DISTANCE_NAMES,
    SEGMENTATION_NAMES,
    SegmentationMetrics,
    assd,
    binarize,
    confusion,
    dice,
    hd95,
    iou,
    scores_from_confusion,
    segmentation_scores,
    surface_distances,
)
from medattn.metrics.sod import SOD_NAMES, SODMetrics, sod_scores

__all__ = [
    "DISTANCE_NAMES",
    "SEGMENTATION_NAMES",
    "SOD_NAMES",
    "DenoisingMetrics",
    "FrocResult",
    "SODMetrics",
    "SegmentationMetrics",
    "StreamingMetric",
    "assd",
    "binarize",
    "box_iou",
    "confusion",
    "dice",
    "finite_mean",
    "froc",
    "froc_curve",
    "hd95",
    "iou",
    "match_detections",
    "psnr",
    "rmse_hu",
    "scores_from_confusion",
    "segmentation_scores",
    "sensitivity_at_fp",
    "sod_scores",
    "ssim",
    "surface_distances",
]
