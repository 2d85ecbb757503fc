"""SegmentationDataset / UnlabeledDataset: shapes, ranges, resizing, DSB merging, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medattn.data import (
    Sample,
    SegmentationDataset,
    UnlabeledDataset,
    build_transforms,
    discover,
    read_sample_mask,
    worker_init_fn,
)
from medattn.errors import DatasetError, MedattnIOError


def _write_pair(root: Path, stem: str, h: int = 40, w: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Random RGB image and a rectangle mask saved as 0/255 PNG; returns (image, bool mask)."""
    rng = np.random.default_rng(abs(hash(stem)) % 2**32)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 4 : h // 2, w // 3 : w - 5] = True
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{stem}.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"{stem}.png")
    return image, mask


def test_original_size_values_exact(tmp_path: Path) -> None:
    image, mask = _write_pair(tmp_path / "d", "a")
    ds = SegmentationDataset(discover(tmp_path / "d"), size=None)
    item = ds[0]
    assert item["id"] == "a"
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 40, 60)
    np.testing.assert_allclose(item["image"].numpy(), image.transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert torch.equal(item["mask"][0].bool(), torch.from_numpy(mask))
    assert item["orig_size"].tolist() == [40, 60]


def test_resize_image_bilinear_mask_nearest(tmp_path: Path) -> None:
    image, mask = _write_pair(tmp_path / "d", "a", h=64, w=96)
    ds = SegmentationDataset(discover(tmp_path / "d"), size=(32, 48))
    item = ds[0]
    assert item["image"].shape == (3, 32, 48) and item["mask"].shape == (1, 32, 48)
    assert item["image"].min() >= 0 and item["image"].max() <= 1
    assert set(torch.unique(item["mask"]).tolist()) == {0.0, 1.0}
    # antialiased bilinear is designed to match Pillow's BILINEAR resize (a triangle filter over 4 px)
    ref = np.stack(
        [
            np.asarray(Image.fromarray(image[..., c].astype(np.float32)).resize((48, 32), Image.BILINEAR))
            for c in range(3)
        ]
    )
    np.testing.assert_allclose(item["image"].numpy(), ref / 255.0, atol=2e-3)
    # nearest-exact keeps the pixel nearest each output centre (one per 2x2 block, here the 2nd)
    assert torch.equal(item["mask"][0].bool(), torch.from_numpy(mask[1::2, 1::2]))


def test_gray_channels_and_cache(tmp_path: Path) -> None:
    image, _ = _write_pair(tmp_path / "d", "a")
    gray = SegmentationDataset(discover(tmp_path / "d"), size=None, in_channels=1)[0]["image"]
    assert gray.shape == (1, 40, 60)
    # luminance (cv2/libpng weights differ from BT.601 by at most a gray level after rounding)
    expected = image @ np.array([0.299, 0.587, 0.114])
    assert np.abs(gray[0].numpy() * 255 - expected).max() <= 1.5
    cached = SegmentationDataset(discover(tmp_path / "d"), size=(20, 30), cache=True)
    a, b = cached[0], cached[0]
    assert torch.equal(a["image"], b["image"]) and 0 in cached._cache
    plain = SegmentationDataset(discover(tmp_path / "d"), size=(20, 30))[0]
    assert torch.allclose(a["image"], plain["image"], atol=1 / 255)
    with pytest.raises(DatasetError, match="in_channels"):
        SegmentationDataset(discover(tmp_path / "d"), in_channels=2)


def test_batches_with_dataloader_and_augmentation(tmp_path: Path) -> None:
    for stem in "abcd":
        _write_pair(tmp_path / "d", stem)
    tf = build_transforms(["flip", "rotate", "color_jitter"], (32, 32))
    ds = SegmentationDataset(discover(tmp_path / "d"), size=(32, 32), transforms=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["mask"].shape == (2, 1, 32, 32)
    assert batch["id"] == ["a", "b"]
    assert type(batch["image"]) is torch.Tensor
    ds.set_random_state(3)
    first = ds[1]["image"]
    ds.set_random_state(3)
    assert torch.equal(first, ds[1]["image"])


def test_worker_init_fn_reseeds_each_worker(tmp_path: Path) -> None:
    for stem in "ab":
        _write_pair(tmp_path / "d", stem)
    tf = build_transforms([{"name": "gaussian_noise", "prob": 1.0, "std": 0.1}], (16, 16))
    ds = SegmentationDataset(discover(tmp_path / "d"), size=(16, 16), transforms=tf)

    def run(seed: int) -> torch.Tensor:
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=1,
            num_workers=2,
            worker_init_fn=worker_init_fn,
            generator=torch.Generator().manual_seed(seed),
        )
        return torch.cat([b["image"] for b in loader])

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the two workers got different random states
    assert not torch.allclose(a[0] - ds.load(0)["image"], a[1] - ds.load(1)["image"])


def test_dsb_instances_merged(tmp_path: Path) -> None:
    case = tmp_path / "stage1_train" / "c1"
    (case / "images").mkdir(parents=True)
    (case / "masks").mkdir()
    Image.fromarray(np.zeros((10, 12, 4), np.uint8)).save(case / "images" / "c1.png")  # RGBA like DSB
    expected = np.zeros((10, 12), bool)
    for k, (y, x) in enumerate([(1, 1), (5, 7), (8, 2)]):
        inst = np.zeros((10, 12), np.uint8)
        inst[y : y + 2, x : x + 3] = 255
        expected |= inst > 0
        Image.fromarray(inst).save(case / "masks" / f"m{k}.png")
    index = discover(tmp_path / "stage1_train")
    np.testing.assert_array_equal(read_sample_mask(index.samples[0]), expected)
    item = SegmentationDataset(index)[0]
    assert item["image"].shape == (3, 10, 12)
    assert torch.equal(item["mask"][0].bool(), torch.from_numpy(expected))


def test_errors(tmp_path: Path) -> None:
    _write_pair(tmp_path / "d", "a", h=40, w=60)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "d" / "masks" / "a.png")
    with pytest.raises(
        MedattnIOError, match=r"a\.png: mask size 10x10 differs from its image a\.png \(60x40\)"
    ):
        SegmentationDataset(discover(tmp_path / "d"))[0]
    with pytest.raises(DatasetError, match="UnlabeledDataset"):
        SegmentationDataset([Sample("x", tmp_path / "x.png")])


def test_unlabeled_dataset(tmp_path: Path) -> None:
    _write_pair(tmp_path / "d", "a")
    _write_pair(tmp_path / "e", "a")
    paths = [tmp_path / "d" / "images" / "a.png", tmp_path / "e" / "images" / "a.png"]
    ds = UnlabeledDataset(paths, size=(16, 24))
    item = ds[1]
    assert set(item) == {"image", "id", "orig_size"}
    assert item["image"].shape == (3, 16, 24)
    assert len({ds[0]["id"], ds[1]["id"]}) == 2  # same stem, distinct ids
    folder = UnlabeledDataset(tmp_path / "d" / "images", size=8, in_channels=1)
    assert folder[0]["image"].shape == (1, 8, 8) and folder[0]["id"] == "a"


@pytest.mark.data
def test_real_kvasir_item(shared_data: Path) -> None:
    index = discover(shared_data / "kvasir-seg")
    ds = SegmentationDataset(index.samples[:2], size=(64, 64))
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
    assert 0.01 < item["mask"].mean() < 0.9
    with Image.open(index.samples[0].image) as im:
        assert item["orig_size"].tolist() == [im.size[1], im.size[0]]


def test_cvc_official_tiff_pairs_load(tmp_path: Path) -> None:
    root = tmp_path / "CVC-ClinicDB"
    (root / "Original").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    image = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    mask = np.zeros((12, 16), np.uint8)
    mask[2:6, 3:9] = 255
    Image.fromarray(image).save(root / "Original" / "1.tif")
    Image.fromarray(mask).save(root / "Ground Truth" / "1.tif")
    item = SegmentationDataset(discover(root))[0]
    np.testing.assert_allclose(item["image"].numpy(), image.transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert torch.equal(item["mask"][0].bool(), torch.from_numpy(mask > 127))


def test_rgb_plus_gray_input_matches_inference(tmp_path: Path) -> None:
    """in_channels=4 (HLF-Net's RGB + gray): training and inference build the same four channels."""
    from medattn.inference.predict import to_model_channels
    from medattn.io import rgb_to_gray

    image, _ = _write_pair(tmp_path / "d", "a")
    item = SegmentationDataset(discover(tmp_path / "d"), size=None, in_channels=4)[0]["image"]
    assert item.shape == (4, 40, 60)
    np.testing.assert_array_equal((item[:3].numpy() * 255).round(), image.transpose(2, 0, 1))
    np.testing.assert_array_equal((item[3].numpy() * 255).round(), rgb_to_gray(image))
    feed = to_model_channels(image, 4)
    np.testing.assert_array_equal(feed.transpose(2, 0, 1), (item.numpy() * 255).round())
    # a grayscale picture becomes R = G = B = gray
    gray_feed = to_model_channels(image[..., 0], 4)
    assert gray_feed.shape == (40, 60, 4) and (gray_feed == image[..., :1]).all()
    unl = UnlabeledDataset(tmp_path / "d" / "images", size=8, in_channels=4)[0]["image"]
    assert unl.shape == (4, 8, 8)


def test_training_config_accepts_four_channels() -> None:
    from pydantic import ValidationError

    from medattn.training.config import DataConfig

    assert DataConfig(in_channels=4).in_channels == 4
    with pytest.raises(ValidationError):
        DataConfig(in_channels=2)
