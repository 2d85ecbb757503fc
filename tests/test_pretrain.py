"""``medattn pretrain``: config, schedule, masked-image objective, a real run, loading the results."""

from __future__ import annotations

import csv
import itertools
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from medattn.errors import ConfigError, MedattnIOError
from medattn.models import create
from medattn.models.encoders import create_encoder
from medattn.pretrain import (
    PretrainConfig,
    apply_overrides,
    build_model,
    load_pretrain_config,
    run_pretraining,
    trainer,
)
from medattn.pretrain.masked import MaskedEncoderModel, masked_mse, patchify
from medattn.pretrain.trainer import lr_factor

TINY_MAE = {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_dim": 32,
            "decoder_depth": 1, "decoder_heads": 2}
TINY_ENC = {"channels": [8, 12, 16, 24, 32]}


def _cfg(tmp_path, shared_data=None, **kw) -> PretrainConfig:
    folder = (shared_data / "isic2017-unlabeled") if shared_data is not None else tmp_path
    doc = {"kind": "mae", "mae_options": TINY_MAE, "data": {"folders": [str(folder)], "max_images": 8},
           "input_size": [32, 32], "epochs": 2, "batch_size": 4, "lr": 2e-3, "warmup_epochs": 0.5,
           "out_dir": str(tmp_path / "out"), "device": "cpu"}
    doc.update(kw)
    return load_pretrain_config(None, data=doc)


# --------------------------------------------------------------------------- config


def test_overrides_are_dotted_and_parsed_as_yaml():
    doc = {"data": {"folders": ["a"]}, "epochs": 3}
    apply_overrides(doc, ["epochs=7", "data.max_images=16", "input_size=[64, 96]", "bf16=true",
                          "mae_options.depth=2", "lr=1e-3"])
    assert doc == {"data": {"folders": ["a"], "max_images": 16}, "epochs": 7, "input_size": [64, 96],
                   "bf16": True, "mae_options": {"depth": 2}, "lr": "1e-3"}  # YAML 1.1 reads 1e-3 as text
    doc["data"]["folders"] = ["."]
    cfg = load_pretrain_config(None, data=doc)
    assert cfg.lr == 1e-3 and cfg.input_size == (64, 96) and cfg.bf16 and cfg.data.max_images == 16
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides(doc, ["epochs"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(doc, ["epochs.x=1"])


def test_config_errors_name_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("kind: mae\ndata: {folders: [x]}\nepochs: 0\nunknown: 1\n")
    with pytest.raises(ConfigError) as err:
        load_pretrain_config(path)
    assert "c.yaml" in str(err.value) and "epochs" in str(err.value) and "unknown" in str(err.value)
    path.write_text("kind: mae\ndata: {}\n")
    with pytest.raises(ConfigError, match="at least one image source"):
        load_pretrain_config(path)
    with pytest.raises(MedattnIOError, match="config file not found"):
        load_pretrain_config(tmp_path / "missing.yaml")
    path.write_text(f"data: {{folders: [{tmp_path / 'nowhere'}]}}\n")
    with pytest.raises(ConfigError, match=r"data\.folders: .*nowhere: no such file or folder"):
        load_pretrain_config(path)


def test_shipped_configs_validate():
    for name in ("pretrain_mae_isic", "pretrain_encoder_isic"):
        cfg = load_pretrain_config(f"configs/{name}.yaml", ["epochs=1"])
        assert cfg.epochs == 1
        assert cfg.data.folders[0].name == "isic2017-unlabeled"


def test_lr_schedule_warmup_then_cosine():
    lr, min_lr, total, warm = 1e-3, 1e-5, 100, 10
    f = [lr * lr_factor(s, total, warm, lr, min_lr) for s in range(total + 1)]
    assert f[0] == pytest.approx(lr / warm) and f[9] == pytest.approx(lr)
    assert all(b > a for a, b in itertools.pairwise(f[:10]))
    mid = warm + (total - warm) // 2
    assert f[mid] == pytest.approx(min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f[total] == pytest.approx(min_lr)


# --------------------------------------------------------------------------- objective


def _masked_encoder(patch: int = 16) -> MaskedEncoderModel:
    torch.manual_seed(0)
    return MaskedEncoderModel(create_encoder("unet_encoder", 3, **TINY_ENC), 3, patch, decoder_dim=16)


def test_masked_encoder_hides_patches_with_the_mask_token():
    model = _masked_encoder()
    seen = {}
    model.encoder.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].detach()))
    with torch.no_grad():
        model.mask_token.fill_(0.25)
    imgs = torch.rand(2, 3, 32, 48)
    _, pred, mask = model(imgs, 0.5, torch.Generator().manual_seed(0))
    assert pred.shape == imgs.shape and mask.shape == (2, 6)
    assert (mask.sum(1) == 3).all()
    x = seen["x"]
    for b in range(2):
        for i in range(6):
            r, c = divmod(i, 3)
            cell = (slice(r * 16, (r + 1) * 16), slice(c * 16, (c + 1) * 16))
            expected = torch.full_like(x[b][:, cell[0], cell[1]], 0.25) if mask[b, i] else imgs[b][:, cell[0], cell[1]]
            torch.testing.assert_close(x[b][:, cell[0], cell[1]], expected)


def test_masked_loss_ignores_visible_patches():
    imgs, pred = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    mask = torch.tensor([[True, False, False, True], [False, True, True, False]])
    loss = masked_mse(pred, imgs, mask, 16)
    changed = pred.clone()
    changed[0, :, :16, 16:] = 9.0  # patch 1 of image 0 is visible
    torch.testing.assert_close(masked_mse(changed, imgs, mask, 16), loss)
    changed[0, :, :16, :16] = 9.0  # patch 0 is masked
    assert masked_mse(changed, imgs, mask, 16) > loss
    t = patchify(imgs, 16)
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
    ref = ((patchify(pred, 16) - t) ** 2).mean(-1)[mask].mean()
    torch.testing.assert_close(loss, ref)


@pytest.mark.parametrize("kind", ["mae", "encoder"])
def test_loss_decreases_on_a_fixed_batch(tmp_path, kind):
    cfg = _cfg(tmp_path, kind=kind, encoder="unet_encoder", encoder_options=TINY_ENC, patch_size=8)
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(20):
        loss = model(x, 0.5, torch.Generator().manual_seed(1))[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3])


# --------------------------------------------------------------------------- real runs


@pytest.mark.data
def test_mae_run_on_isic_loads_into_grcsf(tmp_path, shared_data):
    cfg = _cfg(tmp_path, shared_data)
    res = run_pretraining(cfg, progress=False)
    assert res.num_images == 8 and len(res.epoch_losses) == 2 and len(res.step_losses) == 4
    assert all(math.isfinite(v) for v in res.step_losses)
    with open(res.checkpoint.parent / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    saved = load_file(res.weights)
    net = create("grcsf", mae=str(res.weights), encoder_options={"channels": TINY_ENC["channels"]},
                 decoder_channels=(16, 16, 16, 8), rcu_dim=16, rcu_heads=2).eval()
    assert net.mae.patch_size == 8 and net.mae.embed_dim == 32  # architecture from the file's metadata
    for k, v in net.mae.state_dict().items():
        assert torch.equal(v, saved[k]), k
    with torch.no_grad():
        assert net(torch.rand(1, 3, 40, 40)).shape == (1, 1, 40, 40)


@pytest.mark.data
def test_encoder_run_loads_through_create_encoder_and_resumes(tmp_path, shared_data, monkeypatch):
    opts = {"kind": "encoder", "encoder": "unet_encoder", "encoder_options": TINY_ENC, "decoder_dim": 16,
            "patch_size": 16}
    full = run_pretraining(_cfg(tmp_path / "full", shared_data, **opts), progress=False)
    sd = load_file(full.weights)
    with safe_open(str(full.weights), framework="pt") as fh:
        assert fh.metadata()["encoder"] == "unet_encoder"
    enc = create_encoder("unet_encoder", 3, pretrained=str(full.weights), **TINY_ENC)
    assert set(sd) == set(enc.state_dict())
    for k, v in enc.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # and through a zoo model's encoder option
    net = create("grcsf", encoder_options=TINY_ENC, pretrained_encoder=str(full.weights), mae_options=TINY_MAE)
    assert torch.equal(net.encoder.stages[0][0][0].weight, sd["stages.0.0.0.weight"])

    # a run killed in its second epoch, resumed from the epoch-1 checkpoint: same weights as uninterrupted
    cfg = _cfg(tmp_path / "half", shared_data, **{**opts, "out_dir": str(tmp_path / "r")})
    calls = {"n": 0}
    real_flips = trainer._random_flips

    def crash_in_epoch_two(imgs, gen):
        calls["n"] += 1
        if calls["n"] == 3:  # 2 steps per epoch
            raise KeyboardInterrupt
        return real_flips(imgs, gen)

    monkeypatch.setattr(trainer, "_random_flips", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run_pretraining(cfg, progress=False)
    monkeypatch.setattr(trainer, "_random_flips", real_flips)
    resumed = run_pretraining(cfg, resume=True, progress=False)
    assert len(resumed.epoch_losses) == 2
    for k, v in load_file(resumed.weights).items():
        torch.testing.assert_close(v, sd[k], msg=k)


@pytest.mark.data
def test_cli_pretrain(tmp_path, shared_data, run_cli):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"kind: mae\ndata: {{folders: ['{shared_data / 'isic2017-unlabeled'}'], max_images: 4}}\n"
        "mae_options: {patch_size: 8, embed_dim: 16, depth: 1, num_heads: 2, decoder_dim: 16, decoder_depth: 1, "
        "decoder_heads: 2}\ninput_size: [16, 16]\nepochs: 5\nbatch_size: 2\ndevice: cpu\nbf16: true\n"
    )
    code, out, err = run_cli("pretrain", cfg, "--set", "epochs=1", "--out", tmp_path / "o", "--quiet")
    assert code == 0, err
    assert "pretrained mae on 4 images: 1 epochs" in out  # under bf16 autocast
    assert math.isfinite(float(out.split("final loss ")[1].split(",")[0]))
    assert (tmp_path / "o" / "mae.safetensors").is_file() and (tmp_path / "o" / "checkpoint.pt").is_file()
    code, _, err = run_cli("pretrain", cfg, "--set", "mask_ratio=1.5")
    assert code == 2 and err.strip().startswith("error: ") and "mask_ratio" in err and len(err.strip().splitlines()) == 1


def test_snapshot_epochs_keep_the_weights_of_those_epochs(tmp_path, shared_data):
    """snapshot_epochs=[1]: mae_epoch1.safetensors is the model after epoch 1, not the final one."""
    cfg = _cfg(tmp_path, shared_data, epochs=2, snapshot_epochs=[1])
    res = run_pretraining(cfg, progress=False)
    snap = trainer.snapshot_path(res.weights, 1)
    assert snap.name == "mae_epoch1.safetensors" and snap.is_file()
    assert not trainer.snapshot_path(res.weights, 2).exists()
    first, last = load_file(snap), load_file(res.weights)
    assert first.keys() == last.keys()
    assert any(not torch.equal(first[k], last[k]) for k in first)
    with safe_open(str(snap), framework="pt") as fh:
        assert "mae_options" in fh.metadata()
