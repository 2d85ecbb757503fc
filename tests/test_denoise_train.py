"""LDCT denoisers trained by the engine (``medattn train``, ``data.kind: ldct``) on synthetic CT volumes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medattn.errors import ConfigError
from medattn.models import create
from medattn.training.checkpoint import save_checkpoint
from medattn.training.config import load_config
from medattn.training.trainer import Trainer, train

REPO = Path(__file__).resolve().parents[1]
TINY_OPTS = {"channels": 8, "kernel_size": 3}  # RED-CNN without normalisation layers: train == eval forward


def _phantom(seed: int, size: int = 40, z: int = 3) -> np.ndarray:
    """Air around a soft-tissue ellipse with a few denser and lighter inserts, in HU."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    vol = np.full((z, size, size), -1000.0, np.float32)
    for k in range(z):
        sl = vol[k]
        sl[(yy / 0.42) ** 2 + (xx / 0.36) ** 2 < 1] = 40.0
        for _ in range(3):
            cy, cx, r = rng.uniform(-0.2, 0.2), rng.uniform(-0.18, 0.18), rng.uniform(0.04, 0.08)
            sl[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.choice([-100.0, 300.0, 900.0])
    return vol


@pytest.fixture(scope="module")
def ct_volumes(tmp_path_factory) -> dict[str, Path]:
    """Two NIfTI phantoms on a 1.2 mm grid (z spacing 3 mm): one for training, one for validation."""
    folder = tmp_path_factory.mktemp("ct")
    out = {}
    for name, seed in (("train", 0), ("val", 1)):
        vol = _phantom(seed)
        path = folder / f"{name}.nii.gz"
        # NIfTI data is (x, y, z); medattn reads it back as (z, y, x) slices
        nib.save(nib.Nifti1Image(vol.transpose(2, 1, 0), np.diag([1.2, 1.2, 3.0, 1.0])), path)
        out[name] = path
    out["cache"] = folder / "cache"
    return out


def _config(tmp_path: Path, ct: dict[str, Path], *extra: str, model: str = "redcnn") -> Path:
    text = f"""
model: {{name: {model}, options: {json.dumps(TINY_OPTS)}}}
data:
  kind: ldct
  options:
    volumes: [{{path: {ct["train"]}, role: target, anatomy: phantom}}, {{path: {ct["val"]}, role: val}}]
    train_roles: [target]
    patch_size: 32
    patches_per_epoch: 8
    slice_step: 1
    spacing: 1.0
    i0: 1.0e5
    cache_dir: {ct["cache"]}
loss: {{name: mse}}
optim: {{name: adam, lr: 1.0e-3}}
schedule: {{name: cosine}}
train: {{epochs: 2, batch_size: 4, seed: 1}}
""" + "\n".join(extra)
    path = tmp_path / "ldct.yaml"
    path.write_text(text)
    return path


def test_cli_trains_a_denoiser_that_medattn_denoise_reads(ct_volumes, tmp_path, run_cli) -> None:
    import tifffile

    run = tmp_path / "run"
    code, out, err = run_cli("train", _config(tmp_path, ct_volumes), "--out", run, "--no-progress")
    assert code == 0, err
    assert "done: 2 epoch(s), best val_psnr" in out
    card = json.loads((run / "best.json").read_text())
    assert card["model"] == "redcnn" and card["task"] == "denoising"
    assert card["input_size"] == [32, 32] and card["normalisation"] == "HU / 1000"
    assert card["params"] == sum(p.numel() for p in create("redcnn", **TINY_OPTS).parameters())
    assert card["volumes"] == {"train": ["train"], "val": ["val"]}
    assert card["simulation"]["spacing_mm"] == 1.0 and "init" not in card
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(np.isfinite(r["val_psnr"]) and r["val_rmse_hu"] > 0 for r in history)
    assert card["metrics"]["val_psnr"] == max(r["val_psnr"] for r in history)
    assert history[-1]["lr"] < history[0]["lr"]  # cosine

    slice_hu = _phantom(5, size=48)[0]
    tifffile.imwrite(tmp_path / "slice.tif", slice_hu)
    code, out, err = run_cli("denoise", "--model", run / "best.safetensors", tmp_path / "slice.tif",
                             "--out", tmp_path / "den")
    assert code == 0, err
    den = tifffile.imread(tmp_path / "den" / "slice.tif")
    assert den.shape == slice_hu.shape and np.isfinite(den).all() and not np.array_equal(den, slice_hu)


class _FirstForward(Trainer):
    """Records the input and output of the first training forward pass."""

    def build_model(self):
        model, options, task = super().build_model()
        self.first: tuple[torch.Tensor, torch.Tensor] | None = None

        def hook(_module, args, output) -> None:
            if self.first is None:
                self.first = (args[0].detach().clone(), output.detach().clone())

        model.register_forward_hook(hook)
        return model, options, task


def test_model_init_starts_from_the_given_weights_and_resume_does_not_need_them(ct_volumes, tmp_path) -> None:
    torch.manual_seed(7)
    start = create("redcnn", **TINY_OPTS)
    init = save_checkpoint(tmp_path / "pre", "best", start, name="redcnn", options=TINY_OPTS, task="denoising")
    cfg = load_config(_config(tmp_path, ct_volumes), [f"model.init={init}"])
    trainer = _FirstForward(cfg, run_dir=tmp_path / "ft", progress=False)
    result = trainer.fit(stop_after=1)
    assert result.paused and trainer.first is not None
    x, y = trainer.first
    with torch.no_grad():
        torch.testing.assert_close(y, start(x), rtol=0, atol=0)
    card = json.loads((tmp_path / "ft" / "last.json").read_text())
    assert card["init"] == str(init) and card["config"]["model"]["init"] == str(init)

    # a fresh run from the default initialisation differs at the first step
    scratch = _FirstForward(load_config(_config(tmp_path, ct_volumes)), run_dir=tmp_path / "sc", progress=False)
    scratch.fit(stop_after=1)
    assert scratch.first is not None and not torch.equal(scratch.first[1], y)

    # --resume continues from state.pt, not from model.init (which may be gone by then)
    paused = {k: v.clone() for k, v in torch.load(tmp_path / "ft" / "state.pt", weights_only=True)["model"].items()}
    init.unlink()
    resumed = _FirstForward(load_config(tmp_path / "ft" / "config.yaml"), run_dir=tmp_path / "ft", resume=True,
                            progress=False)
    assert resumed.fit().epochs_done == 2
    net = create("redcnn", **TINY_OPTS)
    net.load_state_dict(paused)
    with torch.no_grad():
        torch.testing.assert_close(resumed.first[1], net(resumed.first[0]), rtol=0, atol=0)


def test_patches_reach_the_model_at_their_size_and_in_hounsfield_units(ct_volumes, tmp_path) -> None:
    # data.input_size (default 256) is for image data sets: LDCT patches are trained as they come, on
    # their simulated grid and unclipped (the air around the phantom is -1000 HU = -1.0 at the input)
    cfg = load_config(_config(tmp_path, ct_volumes))
    assert tuple(cfg.data.input_size) != (32, 32)
    trainer = _FirstForward(cfg, run_dir=tmp_path / "run", progress=False)
    trainer.fit(stop_after=1)
    x, _ = trainer.first
    assert x.shape == (4, 1, 32, 32)
    assert x.min() < -0.8 and x.max() > 0.0


def test_model_init_mismatches_are_config_errors(ct_volumes, tmp_path) -> None:
    wider = save_checkpoint(tmp_path / "w", "best", create("redcnn", channels=16, kernel_size=3), name="redcnn",
                            options={"channels": 16, "kernel_size": 3}, task="denoising")
    other = save_checkpoint(tmp_path / "o", "best", create("dncnn", depth=3, channels=8), name="dncnn",
                            options={"depth": 3, "channels": 8}, task="denoising")
    cases = ((wider, r"best\.safetensors: weights do not fit model 'redcnn'.*shape mismatches"),
             (other, r"best\.safetensors: the weights are for model 'dncnn', not 'redcnn'"),
             (tmp_path / "gone.safetensors", r"model\.init: .*gone\.safetensors: weights file not found"),
             ("no_such_bundled_model", r"model\.init: no_such_bundled_model: neither a \.safetensors file"))
    for i, (spec, message) in enumerate(cases):
        cfg = load_config(_config(tmp_path, ct_volumes), [f"model.init={spec}"])
        with pytest.raises(ConfigError, match=message):
            train(cfg, run_dir=tmp_path / f"r{i}", progress=False)


def test_ldct_options_and_loss_are_checked(ct_volumes, tmp_path) -> None:
    for override, message in (("data.options.patchsize=32", r"data\.options\.patchsize: unknown setting"),
                              ("data.options.dose=2", r"data\.options\.dose: .*dose fractions are at most 1"),
                              ("loss.name=bce_dice", r"loss\.name 'bce_dice' is not an image-to-image loss"),
                              ("data.options.train_roles=[chest]", r"no CT volume with roles \['chest'\]"),
                              ("data.options.val_roles=[target]", r"in both training and validation")):
        cfg = load_config(_config(tmp_path, ct_volumes), [override])
        with pytest.raises(ConfigError, match=message):
            train(cfg, run_dir=tmp_path / "bad", progress=False)
    cfg = load_config(_config(tmp_path, ct_volumes), ["model.name=unet", "model.options={}"])
    with pytest.raises(ConfigError, match="'unet' is a segmentation model"):
        train(cfg, run_dir=tmp_path / "bad", progress=False)


def test_window_psnr_matches_the_metric() -> None:
    from medattn.denoise.data import ct_window_scores
    from medattn.metrics import psnr

    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 1, 24, 24, generator=g) * 0.6 - 0.3  # -300..300 HU
    out = target + torch.randn(2, 1, 24, 24, generator=g) * 0.03
    scores = ct_window_scores((40.0, 400.0))(out, target)
    for i in range(2):
        want = psnr(out[i, 0].numpy() * 1000, target[i, 0].numpy() * 1000, window=(40.0, 400.0))
        assert scores["psnr"][i].item() == pytest.approx(want, abs=1e-3)
        rmse = float(np.sqrt(np.mean((out[i, 0].numpy() - target[i, 0].numpy()) ** 2)) * 1000)
        assert scores["rmse_hu"][i].item() == pytest.approx(rmse, rel=1e-4)


def test_ldct_configs_are_engine_configs() -> None:
    from medattn.denoise.data import build_ldct, ldct_options
    from medattn.training.data import get_dataset_builder

    assert get_dataset_builder("ldct") is build_ldct
    names = sorted(p.name for p in (REPO / "configs").glob("ldct_*.yaml") if p.name != "ldct_cadn_blind.yaml")
    assert names == ["ldct_cadn.yaml", "ldct_cadn_finetune.yaml", "ldct_cadn_pretrain.yaml",
                     "ldct_cadn_small.yaml", "ldct_dncnn.yaml", "ldct_redcnn.yaml"]
    blind = ldct_options(load_config(REPO / "configs" / "ldct_cadn_blind.yaml", check_paths=False).data.options)
    assert blind.noise == "insert" and blind.dose == (0.015, 0.5) and blind.patch_spacing == (0.6, 1.0)
    assert blind.trained_grid() == (0.6, 1.0) and blind.spacing == 0.7421875 and len(blind.kernels) == 3
    assert blind.val_pairs is not None and "ts_dicom" in blind.train_names
    for name in names:
        cfg = load_config(REPO / "configs" / name, check_paths=False)
        o = ldct_options(cfg.data.options)
        assert cfg.data.kind == "ldct" and cfg.loss.name == "mse" and cfg.schedule.name == "cosine", name
        assert o.spacing == 0.9765625 and o.patch_size == 64 and "val" not in o.train_roles, name
    pre = load_config(REPO / "configs" / "ldct_cadn_pretrain.yaml", check_paths=False)
    fine = load_config(REPO / "configs" / "ldct_cadn_finetune.yaml", check_paths=False)
    assert ldct_options(pre.data.options).train_roles == ["pretrain"]
    # the fine-tuning starts from the pretraining run's folder (out_dir may come back absolute, init is as written)
    assert fine.model.init is not None and Path(fine.model.init).parent.parts[-3:] == Path(pre.out_dir).parts[-3:]
    assert fine.model.name == pre.model.name and fine.optim.lr < pre.optim.lr


def test_patches_change_every_epoch_and_slices_are_resampled(ct_volumes, tmp_path) -> None:
    from medattn.denoise.data import build_ldct

    bundle = build_ldct(load_config(_config(tmp_path, ct_volumes)))
    assert bundle.train.volumes[0].hu.shape == (3, 48, 48)  # 40 px of 1.2 mm -> 48 px of 1.0 mm
    assert bundle.val[0]["image"].shape == (1, 48, 48) and bundle.val_batch_size == 1
    bundle.train.set_random_state(11)
    first = bundle.train[0]
    bundle.train.set_random_state(12)
    assert first["id"] != bundle.train[0]["id"]
    bundle.train.set_random_state(11)
    assert torch.equal(bundle.train[0]["image"], first["image"])


def _real_pairs(folder: Path, n: int = 2, size: int = 40) -> Path:
    """Fake 'real' pairs in the AAPM/Mayo layout: a phantom slice and a noisier copy."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for k in range(n):
        full = _phantom(10 + k, size=size, z=1)[0]
        np.save(folder / f"P_{k:03d}_full_hu.npy", full.astype(np.int16))
        np.save(folder / f"P_{k:03d}_quarter_hu.npy", (full + rng.normal(0, 30, full.shape)).astype(np.int16))
    return folder


def test_blind_options_insert_noise_over_dose_kernel_and_grid_ranges(ct_volumes, tmp_path) -> None:
    """noise: insert + ranges: clean + scaled noise, several grids sharing the slices, real pairs to validate."""
    from medattn.denoise.data import RealLDCTPairs, build_ldct

    pairs = _real_pairs(tmp_path / "real")
    cfg = load_config(_config(tmp_path, ct_volumes), [
        "data.options.noise=insert", "data.options.dose=[0.05,0.5]", "data.options.patch_spacing=[0.5,2.0]",
        "data.options.kernels=[[hann,1.0],[hann,1.5]]", "data.options.spacing=1.2",
        f"data.options.val_pairs={pairs}", "data.options.val_pairs_spacing=0.7"])
    bundle = build_ldct(cfg)
    vols = bundle.train.volumes
    assert [v.spacing for v in vols] == [pytest.approx((1.2, 1.2))] and vols[0].hu.shape[1:] == (40, 40)
    noise = bundle.train._simulated(0, 0)
    assert noise.shape == (2, 40, 40) and noise[0].std() < noise[1].std()  # hann 1.0 is the smoother kernel
    # patches: target + scaled noise; the noise level varies from patch to patch (dose range)
    levels = []
    for i in range(8):
        item = bundle.train[i]
        levels.append(float((item["image"] - item["target"]).std()) * 1000)
    assert max(levels) > 2 * min(levels) > 0
    assert isinstance(bundle.val, RealLDCTPairs) and len(bundle.val) == 2
    assert bundle.val[0]["image"].shape == (1, 40, 40)
    sim = bundle.card["simulation"]
    assert sim["noise"] == "insert" and sim["spacing_mm"] == (0.5, 2.0) and sim["simulated_at_mm"] == 1.2
    assert bundle.card["volumes"]["val"] == ["real:real/P_000", "real:real/P_001"]


def test_blind_options_are_checked(ct_volumes, tmp_path) -> None:
    for override, message in (("data.options.dose=[0.5,0.1]", r"must be \[low, high\]"),
                              ("data.options.patch_spacing=[0.6,1.0]", r"patch_spacing range need noise: insert"),
                              ("data.options.dose=[0.1,0.5]", r"need noise: insert"),
                              ("data.options.kernels=[[sharp,1.0]]", r"filter is ramp or hann"),
                              ("data.options.val_pairs=/no/such/folder", r"val_pairs: .*no such folder"),
                              ("data.options.train_names=[nope]", r"no CT volume named \['nope'\]")):
        cfg = load_config(_config(tmp_path, ct_volumes), [override])
        with pytest.raises(ConfigError, match=message):
            train(cfg, run_dir=tmp_path / "bad", progress=False)


def test_engine_validates_on_real_pairs(ct_volumes, tmp_path) -> None:
    pairs = _real_pairs(tmp_path / "real")
    cfg = load_config(_config(tmp_path, ct_volumes), ["data.options.noise=insert", f"data.options.val_pairs={pairs}",
                                                      "train.monitor=val_psnr"])
    trainer = Trainer(cfg, run_dir=tmp_path / "run", progress=False)
    trainer.fit()
    rows = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "val_psnr" in header and len(rows) == 3
    # the validation score is the window PSNR of the untouched low-dose slices' denoised versions
    assert all(float(r.split(",")[header.index("val_psnr")]) > 10 for r in rows[1:])


def test_patch_spacing_resamples_clean_and_noisy_alike(ct_volumes, tmp_path) -> None:
    """A patch drawn at a coarser pixel size covers more of the slice and keeps noisy - clean = resampled noise."""
    from medattn.denoise.data import LDCTPairs, SimulationSettings, load_ct

    vol = load_ct(ct_volumes["train"])
    settings = SimulationSettings(dose=0.25, i0=1e5, n_angles=48, noise="insert")
    plain = LDCTPairs([vol], "patch", settings, patch_size=16, patches_per_epoch=4, augment=False)
    coarse = LDCTPairs([vol], "patch", settings, patch_size=16, patches_per_epoch=4, augment=False,
                       patch_spacing=(2.4, 2.4))  # 1.2 mm slices: 32 px squares shrunk to 16
    a, b = plain[0], coarse[0]
    assert a["image"].shape == b["image"].shape == (1, 16, 16)
    # shrinking averages the noise: a coarser grid has less noise per pixel
    assert float((b["image"] - b["target"]).std()) < 0.8 * float((a["image"] - a["target"]).std())
    with pytest.raises(ValueError, match="patch_spacing needs noise='insert'"):
        LDCTPairs([vol], "patch", SimulationSettings(), patch_size=16, patch_spacing=(1.0, 2.0))
