"""The paper's Table 1 on data we have: a real RetinaNet (MONAI, 2D) trained on polyp boxes, per input arm.

Data: PraNet training images for training (Kvasir-SEG boxes from
``kavsir_bboxes.json``; CVC-ClinicDB boxes from the connected components of its
masks), the PraNet test images (100 + 62) for testing. Every image is resized
to ``size`` x ``size`` and its boxes scaled.

Arms (the detector and its training are identical, only the input differs):

* ``gray``        the grayscale image (the baseline: radiology-like input);
* ``color``       the grayscale image colorized by the GAN;
* ``cawe``        eq. 7 on the grayscale image with the CAWE map;
* ``color_cawe``  eq. 7 on the colorized image;
* ``rgb``         the original colour image (a reference, not a paper arm);
* ``clahe``, ``unsharp``, ``histeq``  classical enhancement of the grayscale image
  (:mod:`medattn.enhance.classic`), stand-ins for the paper's AFDA and MedGA baselines.

Scores: FROC from :func:`medattn.metrics.detection.froc` (a box hits a polyp
at IoU >= ``iou``), sensitivity at 1, 2, 3, 4 false positives per image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medattn.data.types import Sample
from medattn.enhance._images import gray_of, resize, track
from medattn.enhance.classic import CLASSIC_ENHANCERS

ARMS = ("gray", "color", "cawe", "color_cawe", "rgb")
#: the baseline enhancement arms (stand-ins for AFDA and MedGA, see medattn.enhance.classic)
CLASSIC_ARMS = ("clahe", "unsharp", "histeq")
FPS = (1.0, 2.0, 3.0, 4.0)


def mask_boxes(mask: np.ndarray, min_fraction: float = 0.001) -> list[tuple[int, int, int, int]]:
    """(x1, y1, x2, y2) boxes of the connected components of a binary mask (8-connectivity).

    Components smaller than ``min_fraction`` of the image (anti-aliasing specks) are ignored.
    """
    from scipy import ndimage

    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or (labels[sl] == i).sum() < min_fraction * mask.size:
            continue
        out.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
    return out


@dataclass
class DetectionSet:
    """Images uint8 (N, S, S, 3) and per-image boxes (x1, y1, x2, y2) float32 (k, 4) in pixels of S."""

    ids: list[str]
    images: np.ndarray
    boxes: list[np.ndarray]


def load_detection_set(samples: Sequence[Sample], size: int, kvasir_boxes: dict[str, list] | None = None,
                       progress: bool = True) -> DetectionSet:
    """Resized colour images and their polyp boxes (Kvasir: the JSON boxes; others: mask components)."""
    from medattn.data.datasets import read_sample_mask
    from medattn.io import read_rgb

    ids, images, boxes = [], [], []
    for s in track(samples, "reading detection images", len(samples), progress):
        rgb = read_rgb(s.image)
        h, w = rgb.shape[:2]
        if kvasir_boxes is not None and s.dataset == "kvasir-seg" and s.id in kvasir_boxes:
            raw = kvasir_boxes[s.id]
        else:
            raw = mask_boxes(read_sample_mask(s))
        scale = np.array([size / w, size / h, size / w, size / h], np.float32)
        b = np.asarray(raw, np.float32).reshape(-1, 4) * scale
        ids.append(s.id)
        images.append(resize(rgb, (size, size)))
        boxes.append(b)
    return DetectionSet(ids, np.stack(images), boxes)


def make_arms(rgb: np.ndarray, classifier: Any = None, colorizer: Any = None, arms: Sequence[str] = ARMS,
              alpha: float = 0.5, progress: bool = True) -> dict[str, np.ndarray]:
    """The input of every arm for images ``rgb`` (N, S, S, 3) uint8, each (N, S, S, 3) uint8."""
    from medattn.enhance import _load, enhance_image

    # load each model once, not once per image
    classifier = _Pair(*_load(classifier)) if classifier is not None else None
    colorizer = _Pair(*_load(colorizer)) if colorizer is not None else None
    need_cawe = any("cawe" in a for a in arms)
    need_color = any(a.startswith("color") for a in arms)
    out = {a: np.empty_like(rgb) for a in arms}
    for i in track(range(len(rgb)), "enhancing detection images", len(rgb), progress):
        gray = gray_of(rgb[i])
        gray3 = np.repeat(gray[..., None], 3, axis=2)
        res = enhance_image(gray, classifier, colorizer if need_color else None, alpha) if need_cawe else None
        colorized = None
        if need_color:
            if res is not None:
                colorized = res["colorized"]
            else:
                from medattn.enhance.colorize import colorize

                size = (colorizer.card.get("input_size") or [256])[0]
                colorized = colorize(colorizer.model, gray, size=int(size))
        from medattn.enhance.fusion import fuse

        for a in arms:
            if a == "gray":
                out[a][i] = gray3
            elif a == "rgb":
                out[a][i] = rgb[i]
            elif a == "color":
                out[a][i] = colorized
            elif a == "cawe":
                out[a][i] = fuse(gray3, res["heatmap"], alpha)
            elif a == "color_cawe":
                out[a][i] = fuse(colorized, res["heatmap"], alpha)
            elif a in CLASSIC_ENHANCERS:
                out[a][i] = np.repeat(CLASSIC_ENHANCERS[a](gray)[..., None], 3, axis=2)
            else:
                raise ValueError(f"unknown arm {a!r}; choose from {', '.join(ARMS + CLASSIC_ARMS)}")
    return out


def _without_torchvision() -> None:
    """Let MONAI's RetinaNetDetector run without torchvision.

    It type-checks its matcher and sampler against torchvision's ``Matcher`` and
    ``BalancedPositiveNegativeSampler``; without torchvision those names are
    lazy-import stubs that raise on use. We only use MONAI's own ATSS matcher and
    hard negative sampler, so stand-in classes (of which nothing is an instance)
    make those checks answer False, as they would with torchvision installed.
    """
    import monai.apps.detection.networks.retinanet_detector as rd

    for name in ("Matcher", "BalancedPositiveNegativeSampler"):
        if not isinstance(getattr(rd, name), type):
            setattr(rd, name, type(f"_Unavailable{name}", (), {}))


class ResNetFPN(torch.nn.Module):
    """A MONAI ResNet's stages ``returned`` through MONAI's FeaturePyramidNetwork (+ a max-pooled level)."""

    def __init__(self, backbone: torch.nn.Module, returned: Sequence[int], in_channels: Sequence[int],
                 out_channels: int) -> None:
        from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        super().__init__()
        self.body, self.returned = backbone, list(returned)
        self.fpn = FeaturePyramidNetwork(2, list(in_channels), out_channels, extra_blocks=LastLevelMaxPool(2))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        from collections import OrderedDict

        b = self.body
        x = b.maxpool(b.act(b.bn1(b.conv1(x))))
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        for k in range(1, 5):
            x = getattr(b, f"layer{k}")(x)
            if k in self.returned:
                feats[str(k)] = x
            if k >= max(self.returned):
                break
        return self.fpn(feats)


class _Pair:
    """(module, card) in the shape :func:`medattn.enhance._load` accepts."""

    def __init__(self, model: Any, card: dict[str, Any]) -> None:
        self.model, self.card = model, card


def build_detector(size: int, width: int = 32, layers: Sequence[int] = (1, 1, 1, 1), fpn_channels: int = 64) -> Any:
    """MONAI RetinaNet (2D) on a small ResNet + FPN, one class (polyp), ATSS matching, hard negative sampling.

    The ResNet + FPN feature extractor is assembled here (:class:`ResNetFPN`): MONAI's
    ``resnet_fpn_feature_extractor`` needs torchvision, and its fixed 256 FPN channels are
    too heavy for a CPU budget.
    """
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
    from monai.apps.detection.networks.retinanet_network import RetinaNet
    from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
    from monai.networks.nets import resnet

    _without_torchvision()
    planes = [width, width * 2, width * 4, width * 8]
    backbone = resnet.ResNet(block="basic", layers=list(layers), block_inplanes=planes,
                             spatial_dims=2, n_input_channels=3, conv1_t_size=7, conv1_t_stride=2)
    returned = [2, 3, 4]
    extractor = ResNetFPN(backbone, returned, [planes[k - 1] for k in returned], fpn_channels)
    # strides 8, 16, 32 (+ a pooled 64); anchors from 1/16 to ~1/2 of the image
    base = max(4, size // 16)
    anchors = AnchorGeneratorWithAnchorShape(
        feature_map_scales=[2**i for i in range(len(returned) + 1)],
        base_anchor_shapes=[(base, base), (base * 2, base), (base, base * 2)])
    net = RetinaNet(spatial_dims=2, num_classes=1, num_anchors=anchors.num_anchors_per_location()[0],
                    feature_extractor=extractor, size_divisible=32)
    det = RetinaNetDetector(network=net, anchor_generator=anchors, spatial_dims=2, num_classes=1, size_divisible=32)
    det.set_atss_matcher(num_candidates=4, center_in_gt=False)
    det.set_hard_negative_sampler(batch_size_per_image=64, positive_fraction=0.3, pool_size=20, min_neg=16)
    det.set_target_keys(box_key="box", label_key="label")
    det.set_box_selector_parameters(score_thresh=0.01, topk_candidates_per_level=300, nms_thresh=0.3,
                                    detections_per_img=20)
    return det


def _to_monai(boxes: np.ndarray) -> torch.Tensor:
    # MONAI orders box coordinates by tensor axis: (row_min, col_min, row_max, col_max)
    return torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4)[:, [1, 0, 3, 2]].copy())


def _from_monai(boxes: torch.Tensor) -> np.ndarray:
    return boxes.detach().float().numpy().reshape(-1, 4)[:, [1, 0, 3, 2]]


def _batch(images: np.ndarray, idx: Sequence[int], flip: np.ndarray | None = None) -> torch.Tensor:
    x = torch.from_numpy(images[list(idx)]).permute(0, 3, 1, 2).float().div(255)
    return x


def train_detector(images: np.ndarray, boxes: Sequence[np.ndarray], *, epochs: int = 10, batch: int = 8,
                   lr: float = 0.01, width: int = 32, seed: int = 0, time_limit_s: float | None = None,
                   progress: bool = True, log: Callable[[str], None] | None = print) -> tuple[Any, list[dict]]:
    """SGD (momentum 0.9, the paper's optimiser; lr 0.01 by default) with horizontal/vertical flips."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    size = images.shape[1]
    det = build_detector(size, width)
    opt = torch.optim.SGD(det.network.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    keep = [i for i, b in enumerate(boxes) if len(b)]
    history = []
    start = time.monotonic()
    for epoch in range(1, epochs + 1):
        det.train()
        order = rng.permutation(keep)
        total, n = 0.0, 0
        steps = range(0, len(order), batch)
        for s in track(steps, f"detector epoch {epoch}/{epochs}", len(steps), progress):
            idx = order[s:s + batch]
            x = _batch(images, idx)
            targets = []
            for j, i in enumerate(idx):
                b = boxes[i].copy()
                if rng.random() < 0.5:  # horizontal flip
                    x[j] = x[j].flip(-1)
                    b[:, [0, 2]] = size - b[:, [2, 0]]
                if rng.random() < 0.5:  # vertical flip
                    x[j] = x[j].flip(-2)
                    b[:, [1, 3]] = size - b[:, [3, 1]]
                targets.append({"box": _to_monai(b), "label": torch.zeros(len(b), dtype=torch.long)})
            losses = det(list(x), targets)
            loss = losses[det.cls_key] + losses[det.box_reg_key]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        history.append({"epoch": epoch, "loss": total / max(n, 1), "seconds": time.monotonic() - start})
        if log:
            log(f"epoch {epoch}: loss {total / max(n, 1):.4f}")
        if time_limit_s is not None and time.monotonic() - start > time_limit_s:
            break
    return det.eval(), history


@torch.no_grad()
def detect(det: Any, images: np.ndarray, batch: int = 16) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Boxes (x1, y1, x2, y2) and scores per image."""
    det.eval()
    boxes, scores = [], []
    for s in range(0, len(images), batch):
        outs = det(list(_batch(images, range(s, min(s + batch, len(images))))), use_inferer=False)
        for o in outs:
            boxes.append(_from_monai(o["box"]))
            scores.append(o["label_scores"].detach().float().numpy().reshape(-1))
    return boxes, scores


def evaluate_arm(det: Any, images: np.ndarray, gt: Sequence[np.ndarray], iou: float = 0.5) -> dict[str, Any]:
    """FROC of a trained detector on test images: Sens@1..4, the curve and the FROC score."""
    from medattn.metrics.detection import froc

    boxes, scores = detect(det, images)
    r = froc(boxes, scores, list(gt), iou_threshold=iou, fps_per_image=FPS)
    return {"sens": {str(int(k)): v for k, v in r.sensitivities.items()}, "froc_score": r.score,
            "curve_fps": r.fps.tolist(), "curve_sensitivity": r.sensitivity.tolist(),
            "targets": r.num_targets, "images": r.num_images,
            "max_sensitivity": float(r.sensitivity.max()) if len(r.sensitivity) else 0.0}


def plot_froc(results: dict[str, dict[str, Any]], path: str | Path, title: str) -> Path:
    """FROC curves of all arms in one PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medattn.utils.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    for arm, r in results.items():
        fps, sens = np.asarray(r["curve_fps"]), np.asarray(r["curve_sensitivity"])
        order = np.argsort(fps)
        ax.plot(fps[order], sens[order], label=f"{arm} (FROC {r['froc_score']:.3f})",
                linestyle="--" if arm == "rgb" else "-")
    ax.set_xlim(0, 4.5)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("sensitivity")
    import textwrap

    ax.set_title(textwrap.fill(title, 80), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
