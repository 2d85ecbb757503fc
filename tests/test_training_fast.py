"""The fast training path and the generalisation recipe: equivalence, disk cache, EMA, resizing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medattn.data import SegmentationDataset, discover
from medattn.data.datasets import DiskCache
from medattn.errors import ConfigError
from medattn.losses import StructureLoss, box_mean
from medattn.training.batch import resize_batch, scaled_size, stage_size
from medattn.training.config import load_config
from medattn.training.ema import ModelEMA
from medattn.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "kvasir"

TINY = f"""
model:
  name: unet
  options: {{channels: [8, 16, 32], num_res_units: 1}}
data:
  root: {SAMPLES}
  input_size: [64, 64]
  split: {{kind: ratio, ratios: [4, 1, 1], seed: 0}}
  augment: [flip]
loss: {{name: structure}}
optim: {{name: adam, lr: 1.0e-3}}
train: {{epochs: 3, batch_size: 2, seed: 3, curves: false}}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


def _fit(cfg_path: Path, out: Path, *sets: str):
    return Trainer(load_config(cfg_path, list(sets)), run_dir=out, progress=False).fit()


# --------------------------------------------------------------------------- equivalence of the fast path


@pytest.mark.parametrize(("precision", "rtol"), [("fp32", 1e-4), ("bf16", 3e-2)])
def test_fast_path_trains_like_the_plain_path(tiny: Path, tmp_path: Path, precision: str, rtol: float) -> None:
    sets = [f"train.precision={precision}", "data.cache=true"]
    plain = _fit(tiny, tmp_path / "plain", *sets)
    fast = _fit(tiny, tmp_path / "fast", *sets, "train.channels_last=true", "optim.fused=true",
                f"data.cache_dir={tmp_path / 'cache'}", "train.log_interval=2")
    a = [r["train_loss"] for r in plain.history]
    b = [r["train_loss"] for r in fast.history]
    assert len(a) == 3 and a[0] != a[-1]  # the weights moved
    np.testing.assert_allclose(b, a, rtol=rtol)
    np.testing.assert_allclose([r["val_dice"] for r in fast.history], [r["val_dice"] for r in plain.history],
                               atol=0.05 if precision == "bf16" else 1e-3)


def test_structure_loss_box_mean_equals_the_31x31_pool() -> None:
    g = torch.Generator().manual_seed(0)
    for x in ((torch.rand(2, 1, 70, 53, generator=g) > 0.6).float(), torch.rand(1, 2, 40, 40, generator=g)):
        ref = F.avg_pool2d(x, 31, stride=1, padding=15, count_include_pad=True)
        torch.testing.assert_close(box_mean(x, 31), ref, rtol=0, atol=1e-6)
    # the weights are remembered per target tensor but recomputed once it changes in place
    loss = StructureLoss()
    t = (torch.rand(1, 1, 40, 40, generator=g) > 0.5).float()
    w1 = loss.weights(t, torch.float32)
    assert loss.weights(t, torch.float32) is w1
    t[..., :20, :] = 0
    w2 = loss.weights(t, torch.float32)
    ref = 1 + 5 * (F.avg_pool2d(t, 31, 1, 15, count_include_pad=True) - t).abs()
    torch.testing.assert_close(w2, ref, rtol=0, atol=1e-5)
    assert not torch.equal(w1, w2)


def test_nonfinite_loss_is_reported_with_the_steps(tiny: Path, tmp_path: Path) -> None:
    class Broken(Trainer):
        def compute_loss(self, model, outputs, target):
            return super().compute_loss(model, outputs, target) * float("nan")

    with pytest.raises(ConfigError, match=r"epoch 1, steps 1-2: the loss is nan"):
        Broken(load_config(tiny, []), run_dir=tmp_path / "nan", progress=False).fit()


# --------------------------------------------------------------------------- the disk cache


def test_disk_cache_yields_the_tensors_of_the_memory_cache(tmp_path: Path) -> None:
    samples = discover(SAMPLES).samples
    plain = SegmentationDataset(samples, size=(48, 40))
    memory = SegmentationDataset(samples, size=(48, 40), cache=True)
    disk = SegmentationDataset(samples, size=(48, 40), cache_dir=tmp_path / "c")
    assert disk.prepare(progress=False) == len(samples)
    assert len(list((tmp_path / "c").glob("*.npy"))) == len(samples)
    assert not list((tmp_path / "c").glob(".*tmp*"))  # nothing half-written left
    again = SegmentationDataset(samples, size=(48, 40), cache_dir=tmp_path / "c")
    assert again.prepare(progress=False) == 0  # a second run decodes nothing
    for i in range(len(samples)):
        m, d, p = memory[i], again[i], plain[i]
        assert torch.equal(d["image"], m["image"]) and torch.equal(d["mask"], m["mask"])
        assert torch.equal(d["orig_size"], p["orig_size"]) and d["id"] == p["id"]
        assert torch.equal(d["mask"], p["mask"])
        assert (d["image"] - p["image"]).abs().max() <= 0.5 / 255 + 1e-6  # uint8 storage


def test_disk_cache_key_follows_file_mtime_and_size(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    img.write_bytes((SAMPLES / "images").glob("*").__next__().read_bytes())
    cache = DiskCache(tmp_path / "c")
    k1 = cache.key([img], (32, 32), 3)
    assert cache.key([img], (32, 32), 3) == k1
    assert cache.key([img], (64, 64), 3) != k1 and cache.key([img], (32, 32), 1) != k1
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache.key([img], (32, 32), 3) != k1
    # an unreadable entry is treated as absent (rebuilt), not an error
    cache.path(k1).write_bytes(b"not a numpy file")
    assert cache.get(k1) is None


def test_disk_cache_folder_error_names_the_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Exception, match="file/sub: cannot create the cache folder"):
        DiskCache(blocker / "sub")


# --------------------------------------------------------------------------- EMA


def test_ema_follows_the_formula_and_is_validated_and_saved(tiny: Path, tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    ema = ModelEMA(net, decay=0.9)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net.train()(torch.randn(4, 1, 8, 8))  # moves the running statistics, counts a batch
    ema.update(net)
    d = min(0.9, 2 / 11)
    for k, v in net.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(ema.module.state_dict()[k], d * before[k] + (1 - d) * v)
        else:
            assert torch.equal(ema.module.state_dict()[k], v)
    assert not any(p.requires_grad for p in ema.module.parameters())

    # in training: the saved checkpoint holds the average, which differs from the raw weights
    from safetensors.torch import load_file

    run = tmp_path / "ema"
    _fit(tiny, run, "train.ema=0.5", "train.epochs=2")
    state = torch.load(run / "state.pt", weights_only=False)
    saved = load_file(str(run / "last.safetensors"))
    for k, v in state["ema"]["module"].items():
        assert torch.equal(saved[k], v), k
    assert any(not torch.equal(saved[k], state["model"][k]) for k in saved)


def test_resume_with_ema_reproduces_the_uninterrupted_run(tiny: Path, tmp_path: Path) -> None:
    sets = ["train.ema=0.8", "train.multi_scale=[0.5, 1.0]", "train.progressive=[{epochs: 1, size: 32}]"]
    full = _fit(tiny, tmp_path / "full", *sets)
    cfg = load_config(tiny, sets)
    Trainer(cfg, run_dir=tmp_path / "part", progress=False).fit(stop_after=1)
    part = Trainer(cfg, run_dir=tmp_path / "part", resume=True, progress=False).fit()
    assert [r["train_loss"] for r in part.history] == [r["train_loss"] for r in full.history]
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "full" / "last.safetensors")), load_file(str(tmp_path / "part" / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- multi-scale and progressive resizing


def test_scaled_and_stage_sizes() -> None:
    assert scaled_size((352, 352), 0.75) == (256, 256)
    assert scaled_size((352, 352), 1.25) == (448, 448)
    assert scaled_size((352, 288), 1.0) == (352, 288)
    assert scaled_size((40, 40), 0.1) == (32, 32)  # never below one multiple
    cfg = load_config(None, ["train.progressive=[{epochs: 2, size: 128}, {epochs: 1, size: [160, 192]}]"],
                      check_paths=False)
    sizes = [stage_size(cfg.train.progressive, e, (352, 352)) for e in range(5)]
    assert sizes == [(128, 128), (128, 128), (160, 192), (352, 352), (352, 352)]


def test_resize_batch_keeps_alignment_and_memory_format() -> None:
    m = torch.zeros(2, 1, 64, 64)
    m[:, :, 16:48, 8:40] = 1
    x = m.repeat(1, 3, 1, 1).contiguous(memory_format=torch.channels_last)
    xs, ys = resize_batch(x, m, (32, 32))
    assert xs.shape == (2, 3, 32, 32) and ys.shape == (2, 1, 32, 32)
    assert xs.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(xs[:, :1], ys)  # image and soft mask resized identically
    assert ys[:, :, 9:23, 5:19].min() == 1 and ys.sum() == pytest.approx(m.sum() / 4)
    _, hard = resize_batch(x, m, (96, 96), soft_target=False)
    assert set(torch.unique(hard).tolist()) == {0.0, 1.0}
    same_x, same_y = resize_batch(x, m, (64, 64))
    assert same_x is x and same_y is m


def test_resize_batch_keeps_the_range_of_images_and_image_targets() -> None:
    # denoising batches: HU / 1000 images and image targets, resized bilinearly and never clipped
    x = torch.linspace(-1.0, 2.0, 64).repeat(2, 1, 64, 1)
    xs, ys = resize_batch(x, x.clone(), (32, 32))
    torch.testing.assert_close(xs, ys)
    assert xs.min() < -0.9 and xs.max() > 1.9
    assert torch.all(xs[..., 1:] > xs[..., :-1])  # a ramp stays a ramp (bilinear, not nearest)


def test_multi_scale_and_progressive_sizes_reach_the_model(tiny: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    class Spy(Trainer):
        def compute_loss(self, model, outputs, target):
            if model.training:
                seen.append(tuple(target.shape[-2:]))
            return super().compute_loss(model, outputs, target)

    cfg = load_config(tiny, ["train.multi_scale=[0.5, 1.5]", "train.progressive=[{epochs: 1, size: 32}]"])
    result = Spy(cfg, run_dir=tmp_path / "ms", progress=False).fit()
    assert result.epochs_done == 3
    first, later = seen[:2], seen[2:]
    assert set(first) <= {(32, 32), (48, 48)}  # 32 x {0.5, 1.5}, rounded to 32 (at least 32)
    assert set(later) <= {(32, 32), (96, 96)} and len(set(later)) == 2
    card = json.loads((tmp_path / "ms" / "last.json").read_text())
    assert card["input_size"] == [64, 64]  # inference runs at the full size


def test_recipe_options_are_validated() -> None:
    for bad, msg in (("train.multi_scale=[]", "positive factors"), ("train.multi_scale=[0, 1]", "positive"),
                     ("train.ema=1.5", "less than 1"), ("train.progressive=[{epochs: 0, size: 64}]", "epochs"),
                     ("train.progressive=[{epochs: 1, size: 4}]", "too small"), ("train.log_interval=0", "log_interval")):
        with pytest.raises(ConfigError, match=msg):
            load_config(None, [bad], check_paths=False)


def test_train_speed_cell_times_real_trainer_steps(tmp_path: Path, monkeypatch) -> None:
    """The benchmark's timing wrapper sees every training batch of every epoch."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_speed", REPO / "benchmarks" / "train_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setitem(mod.MODELS, "tiny", {"model": {"name": "unet", "options": {"channels": [8, 16],
                                                                                   "num_res_units": 0}},
                                             "loss": {"name": "structure"}, "optim": {"name": "adam", "lr": 1e-3}})
    t0 = time.perf_counter()
    row = mod.run_cell({"model": "tiny", "size": 32, "batch": 2, "steps": 3, "threads": 1, "data": str(SAMPLES),
                        "overrides": [f"data.cache_dir={tmp_path / 'c'}"], "run_dir": str(tmp_path / "r"),
                        "profile_step": 2})
    assert row["timed_steps"] == 4  # epochs 2 and 3, 3 batches each: 2 intervals each
    assert row["images_per_s"] > 0 and row["step_s"] < time.perf_counter() - t0
    assert len(row["train_loss"]) == 3 and row["peak_rss_mb"] > 50
    assert row["profile_ops"] and all(op["self_ms"] >= 0 for op in row["profile_ops"])


def test_channels_last_auto_skips_group_norm_models(tiny: Path, tmp_path: Path) -> None:
    from medattn.training.trainer import use_channels_last

    bn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    gn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
    assert use_channels_last(bn, "auto") and not use_channels_last(gn, "auto")
    assert use_channels_last(gn, True) and not use_channels_last(bn, False)
    cfg = load_config(tiny, ["train.channels_last=auto", "train.epochs=1"])
    assert cfg.train.channels_last == "auto"
    trainer = Trainer(cfg, run_dir=tmp_path / "cl", progress=False)
    trainer.fit()
    assert trainer.channels_last  # the tiny U-Net has batch norm
    with pytest.raises(ConfigError, match="channels_last"):
        load_config(None, ["train.channels_last=sometimes"], check_paths=False)
