"""Augmentation: names and options, image/mask alignment, intensity ranges, determinism."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from medattn.data.transforms import (
    TRANSFORMS,
    RandColorJitterd,
    RandJPEGd,
    RandResizedCropd,
    RandSpecularHighlightsd,
    build_transforms,
)
from medattn.errors import ConfigError

GEOMETRIC = ["flip", "rotate90", "rotate", "zoom", "affine", "elastic", "random_resized_crop"]
INTENSITY = ["color_jitter", "gamma", "gaussian_noise", "blur", "jpeg", "specular"]


def _blobs(size: int = 64) -> torch.Tensor:
    m = torch.zeros(1, size, size)
    m[:, 8:30, 20:50] = 1
    m[:, 40:56, 4:14] = 1
    m[:, 44:60, 40:44] = 1
    return m


def _pair(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"image": mask.repeat(3, 1, 1).clone(), "mask": mask.clone()}


def _boundary(mask: torch.Tensor) -> torch.Tensor:
    """Pixels with a 4-neighbour of the other value (where bilinear and nearest may differ)."""
    m = mask.bool()
    p = torch.nn.functional.pad(m[None].float(), (1, 1, 1, 1), mode="replicate")[0].bool()
    diff = torch.zeros_like(m)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        diff |= p[:, dy : dy + m.shape[1], dx : dx + m.shape[2]] != m
    return diff


@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_keeps_image_and_mask_aligned(name: str) -> None:
    mask = _blobs()
    pipeline = build_transforms([{"name": name, "prob": 1.0}], (64, 64))
    changed = 0
    for seed in range(4):
        pipeline.set_random_state(seed)
        out = pipeline(_pair(mask))
        img, m = out["image"], out["mask"]
        assert type(img) is torch.Tensor and img.dtype == torch.float32 and img.shape == (3, 64, 64)
        assert m.shape == (1, 64, 64)
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}  # nearest keeps the mask binary
        # image channels equal to the mask before; after the transform they may differ only on edges
        disagree = (img[0:1] > 0.5) != (m > 0.5)
        assert not (disagree & ~_boundary(m)).any(), f"{name}: image and mask misaligned away from edges"
        assert disagree.float().mean() < 0.03
        changed += int(not torch.equal(m, mask))
    assert changed >= 3  # the transform really moved things


@pytest.mark.parametrize("name", ["flip", "rotate90"])
def test_exact_transforms_are_permutations(name: str) -> None:
    mask = _blobs()
    pipeline = build_transforms([{"name": name, "prob": 1.0}], (64, 64))
    pipeline.set_random_state(5)
    out = pipeline(_pair(mask))
    assert torch.equal(out["image"][0:1], out["mask"])
    assert out["mask"].sum() == mask.sum()


@pytest.mark.parametrize("name", INTENSITY)
def test_intensity_leaves_mask_and_range(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 32, 32, generator=gen)
    mask = (torch.rand(1, 32, 32, generator=gen) > 0.5).float()
    pipeline = build_transforms([{"name": name, "prob": 1.0}], (32, 32))
    pipeline.set_random_state(1)
    out = pipeline({"image": image.clone(), "mask": mask.clone()})
    assert torch.equal(out["mask"], mask)
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    assert not torch.allclose(out["image"], image)


def test_color_jitter_hue_matches_hsv_rotation() -> None:
    """Hue only: the HSV hue moves by the drawn shift; value and saturation stay (colorsys reference)."""
    jitter = RandColorJitterd("image", brightness=0, contrast=0, saturation=0, hue=0.1, prob=1.0)
    jitter.set_random_state(3)
    rgb = torch.tensor([0.7, 0.4, 0.3]).view(3, 1, 1).repeat(1, 2, 2)
    out = jitter({"image": rgb})["image"][:, 0, 0].numpy()
    shift = jitter._factors[3]
    h0 = colorsys.rgb_to_hsv(0.7, 0.4, 0.3)[0]
    assert shift != 0
    expected = colorsys.hsv_to_rgb((h0 + shift) % 1.0, *colorsys.rgb_to_hsv(0.7, 0.4, 0.3)[1:])
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert abs(((colorsys.rgb_to_hsv(*out)[0] - h0 + 0.5) % 1.0) - 0.5 - shift) < 1e-4


def test_color_jitter_brightness_factor_and_gray_input() -> None:
    jitter = RandColorJitterd("image", brightness=0.5, contrast=0, saturation=0, hue=0, prob=1.0)
    jitter.set_random_state(0)
    gray = torch.full((1, 4, 4), 0.4)
    out = jitter({"image": gray})["image"]
    b = jitter._factors[0]
    assert 0.5 <= b <= 1.5
    assert torch.allclose(out, torch.full_like(gray, min(0.4 * b, 1.0)))


def test_same_seed_same_augmentation() -> None:
    spec = ["flip", "rotate", "zoom", "elastic", "color_jitter", "gaussian_noise"]
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    runs = []
    for seed in (7, 7, 8):
        pipeline = build_transforms(spec, (32, 32))
        pipeline.set_random_state(seed)
        runs.append(pipeline({"image": image.clone(), "mask": _blobs(32)})["image"])
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_eval_mode_is_identity_and_mask_optional() -> None:
    image = torch.rand(3, 16, 16)
    out = build_transforms(["flip", "rotate"], (16, 16), train=False)({"image": image})
    assert torch.equal(out["image"], image) and "mask" not in out
    out = build_transforms(["flip", "rotate"], (16, 16), keys=("image",))({"image": image})
    assert out["image"].shape == (3, 16, 16)


def test_aliases_and_options() -> None:
    build_transforms(["scale", {"name": "rotate", "range": 30, "prob": 0.5}], (16, 16))
    with pytest.raises(ConfigError, match=r"unknown augmentation 'twirl'; available: .*color_jitter.*flip"):
        build_transforms(["twirl"], (16, 16))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['angle'\]"):
        build_transforms([{"name": "rotate", "angle": 3}], (16, 16))
    with pytest.raises(ConfigError, match="prob"):
        build_transforms([{"name": "flip", "prob": 2}], (16, 16))
    with pytest.raises(ConfigError, match="no 'name'"):
        build_transforms([{"prob": 0.5}], (16, 16))
    # validated even when not training, so a bad config fails early
    with pytest.raises(ConfigError):
        build_transforms(["twirl"], (16, 16), train=False)
    assert {"flip", "rotate", "zoom", "elastic", "color_jitter", "gaussian_noise", "blur"} <= set(TRANSFORMS)


def test_hue_shift_matches_colorsys_on_random_colours() -> None:
    from medattn.data.transforms import _shift_hue

    rgb = torch.rand(3, 6, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = _shift_hue(rgb, 0.3)
    for y in range(6):
        for x in range(7):
            h, s, v = colorsys.rgb_to_hsv(*rgb[:, y, x].tolist())
            np.testing.assert_allclose(
                out[:, y, x].numpy(), colorsys.hsv_to_rgb((h + 0.3) % 1.0, s, v), atol=1e-9
            )


# -- EFEN's augmentation kinds (paper 001): centre crop, transpose, grid distortion, ... ----------
EFEN_GEOMETRIC = ["center_crop", "transpose", "grid_distortion"]
EFEN_INTENSITY = ["sharpen", "channel_shuffle", "grayscale", "coarse_dropout"]


@pytest.mark.parametrize("name", EFEN_GEOMETRIC)
def test_efen_geometric_keeps_image_and_mask_aligned(name: str) -> None:
    test_geometric_keeps_image_and_mask_aligned(name)


@pytest.mark.parametrize("size", [(64, 64), (48, 64)])
def test_transpose_is_the_diagonal_reflection(size: tuple[int, int]) -> None:
    mask = _blobs()[:, : size[0], : size[1]]
    pipeline = build_transforms([{"name": "transpose", "prob": 1.0}], size)
    out = pipeline(_pair(mask))
    assert out["mask"].shape == (1, *size) and out["image"].shape == (3, *size)
    if size[0] == size[1]:
        assert torch.equal(out["mask"], mask.transpose(-1, -2)) and torch.equal(out["image"][0:1], out["mask"])
    else:  # resized back to (H, W): the transposed mask, nearest-resampled
        expected = torch.nn.functional.interpolate(mask.transpose(-1, -2)[None], size=size, mode="nearest-exact")[0]
        assert torch.equal(out["mask"], expected)


def test_center_crop_takes_the_centre() -> None:
    mask = torch.zeros(1, 8, 8)
    mask[:, 3, 2] = 1  # inside the central 4x4 window (rows 2-5, columns 2-5)
    mask[:, 0, 0] = 1  # outside it: cropped away
    pipeline = build_transforms([{"name": "center_crop", "scale": 0.5, "prob": 1.0}], (8, 8))
    out = pipeline(_pair(mask))
    expected = torch.zeros(1, 8, 8)
    expected[:, 2:4, 0:2] = 1  # pixel (1, 0) of the crop, scaled by 2
    assert torch.equal(out["mask"], expected)


@pytest.mark.parametrize("name", EFEN_INTENSITY)
def test_efen_intensity_leaves_mask_and_range(name: str) -> None:
    test_intensity_leaves_mask_and_range(name)


def test_channel_shuffle_permutes_and_grayscale_is_luma() -> None:
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    shuffle = build_transforms([{"name": "channel_shuffle", "prob": 1.0}], (16, 16))
    perms = set()
    for seed in range(8):
        shuffle.set_random_state(seed)
        out = shuffle({"image": image.clone()})["image"]
        perm = tuple(next(j for j in range(3) if torch.equal(out[i], image[j])) for i in range(3))
        perms.add(perm)
    assert len(perms) > 1 and all(sorted(p) == [0, 1, 2] for p in perms)
    gray = build_transforms([{"name": "grayscale", "prob": 1.0}], (16, 16))({"image": image.clone()})["image"]
    luma = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    torch.testing.assert_close(gray, luma.expand(3, -1, -1))


def test_efen_pipeline_is_deterministic_with_a_seed() -> None:
    from medattn.data.transforms import EFEN_AUGMENT

    mask = _blobs()[:, :48, :]
    data = {"image": torch.rand(3, 48, 64, generator=torch.Generator().manual_seed(0)), "mask": mask}

    def run(seed: int) -> list[dict[str, torch.Tensor]]:
        pipeline = build_transforms(list(EFEN_AUGMENT), (48, 64))
        pipeline.set_random_state(seed)
        return [pipeline({k: v.clone() for k, v in data.items()}) for _ in range(3)]

    a, b, c = run(3), run(3), run(4)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])
    assert any(not torch.equal(x["image"], z["image"]) for x, z in zip(a, c, strict=True))
    for x in a:  # every sample keeps the input shape and a binary mask
        assert x["image"].shape == (3, 48, 64) and x["mask"].shape == (1, 48, 64)
        assert set(torch.unique(x["mask"]).tolist()) <= {0.0, 1.0}


def test_random_resized_crop_window_follows_scale_and_ratio() -> None:
    crop = RandResizedCropd(("image", "mask"), (64, 64), scale=(0.25, 0.5), ratio=(0.5, 2.0), prob=1.0)
    crop.set_random_state(0)
    for _ in range(50):
        top, left, h, w = crop._draw(200, 300)
        assert 0 <= top <= 200 - h and 0 <= left <= 300 - w
        assert 0.25 * 0.9 <= h * w / (200 * 300) <= 0.5 * 1.1
        assert 0.5 / 1.1 <= w / h <= 2.0 * 1.1
    # the output is the window resized: a mask of one filled quadrant stays filled where the window was
    mask = torch.zeros(1, 64, 64)
    mask[:, :32, :32] = 1
    crop = RandResizedCropd(("image", "mask"), (64, 64), scale=(0.25, 0.25), ratio=(1.0, 1.0), prob=1.0)
    crop.set_random_state(3)
    crop._draw = lambda h, w: (0, 0, h // 2, w // 2)  # window = the top-left quadrant
    out = crop({"image": mask.repeat(3, 1, 1), "mask": mask})
    assert torch.equal(out["mask"], torch.ones(1, 64, 64)) and torch.allclose(out["image"], torch.ones(3, 64, 64))
    with pytest.raises(ConfigError, match="scale"):
        build_transforms([{"name": "random_resized_crop", "scale": [0.5, 1.5]}], (16, 16))


def test_jpeg_matches_a_pil_round_trip_and_hurts_more_at_low_quality() -> None:
    import io

    from PIL import Image

    img = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    a = (img * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=40)
    ref = torch.from_numpy(np.asarray(Image.open(buf)).transpose(2, 0, 1).copy()).float() / 255
    assert torch.equal(RandJPEGd.compress(img, 40), ref)
    err = [(RandJPEGd.compress(img, q) - img).abs().mean().item() for q in (10, 95)]
    assert err[0] > err[1]
    gray = RandJPEGd.compress(img[:1], 50)
    assert gray.shape == (1, 32, 32)


def test_specular_highlights_are_white_spots_of_the_given_size() -> None:
    spec = RandSpecularHighlightsd(count=(1, 1), radius=(0.05, 0.05), intensity=(1.0, 1.0), prob=1.0)
    spec.set_random_state(2)
    image = torch.full((3, 100, 100), 0.3)
    mask = torch.zeros(1, 100, 100)
    out = spec({"image": image, "mask": mask})
    assert torch.equal(out["mask"], mask)
    x = out["image"]
    assert x.max() > 0.99 and x.min() >= 0.3 - 1e-6  # a saturated spot, the rest untouched
    bright = (x[0] > 0.65).float().sum().item()  # alpha > 0.5 within ~1.18 sigma of the centre
    assert 5 <= bright <= 3.1416 * 6**2  # radius 5 px (x 0.6..1 per axis)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # white: all channels alike
