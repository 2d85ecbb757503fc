"""The training loop on six real Kvasir-SEG samples at 64 x 64: run files, inference, resume, options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from medattn.errors import ConfigError
from medattn.training.config import load_config
from medattn.training.trainer import Trainer, segmentation_scores, train

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
train: {{epochs: 2, batch_size: 2, seed: 3}}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


def _weights(run: Path, tag: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run / f"{tag}.safetensors"))


def test_cli_run_loads_in_inference_and_evaluates(tiny: Path, tmp_path: Path, run_cli) -> None:
    from medattn.inference import load_model

    run = tmp_path / "run"
    code, out, err = run_cli("train", tiny, "--out", run, "--no-progress")
    assert code == 0, err
    assert "done: 2 epoch(s)" in out
    for name in ("best.safetensors", "best.json", "last.safetensors", "last.json", "state.pt", "config.yaml",
                 "split.json", "history.csv", "history.json", "curves.png"):
        assert (run / name).is_file(), name
    card = json.loads((run / "best.json").read_text())
    assert card["model"] == "unet" and card["task"] == "segmentation" and card["input_size"] == [64, 64]
    assert card["options"]["in_channels"] == 3 and card["options"]["num_classes"] == 1
    assert card["config"]["train"]["epochs"] == 2 and card["version"].startswith("tiny@")
    assert card["modality"] == ["endoscopy"]  # inferred from the data folder (samples/kvasir)
    assert card["inference"] == {"input_size": [64, 64], "tta": False, "threshold": 0.5, "zoom": 1}  # the defaults
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    best = max(history, key=lambda r: r["val_dice"])
    assert card["epoch"] == best["epoch"] and card["metrics"]["val_dice"] == pytest.approx(best["val_dice"])
    assert (run / "history.csv").read_text().splitlines()[0].startswith("epoch,lr,train_loss,val_dice")
    split = json.loads((run / "split.json").read_text())
    assert split["counts"] == {"train": 4, "val": 1, "test": 1}

    lm = load_model(run)  # a run folder: best.safetensors first
    assert lm.name == "unet" and lm.input_size == (64, 64)
    for k, v in _weights(run, "best").items():
        assert torch.equal(lm.model.state_dict()[k], v), k

    preds = tmp_path / "preds"
    code, out, err = run_cli("evaluate", "--model", run, "--data", SAMPLES, "--split", run / "split.json",
                             "--out", preds, "--workers", "1")
    assert code == 0, err
    assert "mDice" in out or "Dice" in out
    test_id = split["splits"]["test"][0]["id"]
    from PIL import Image

    pred_img = Image.open(preds / f"{test_id}.png")
    gt_img = Image.open(SAMPLES / "masks" / f"{test_id}.png")
    assert pred_img.size == gt_img.size and pred_img.mode == "L"

    # the same folder again is refused; --resume continues it
    code, _, err = run_cli("train", tiny, "--out", run)
    assert code == 2 and "--resume" in err


def test_card_says_how_to_run_the_model(tiny: Path, tmp_path: Path) -> None:
    """The config's inference section and input size go into both cards; load_model exposes them."""
    from medattn.inference import load_model

    cfg = load_config(tiny, ["train.epochs=1", "train.curves=false", "data.input_size=[48, 64]",
                             "inference.tta=true", "inference.threshold=0.3", "inference.zoom=2"])
    run = tmp_path / "tta"
    Trainer(cfg, run_dir=run, progress=False).fit()
    for tag in ("best", "last"):
        card = json.loads((run / f"{tag}.json").read_text())
        assert card["inference"] == {"input_size": [48, 64], "tta": True, "threshold": 0.3, "zoom": 2}, tag
        assert card["input_size"] == [48, 64]  # kept for older readers
    lm = load_model(run)
    assert (lm.tta, lm.threshold, lm.zoom, lm.input_size) == (True, 0.3, 2, (48, 64))


def test_resume_reproduces_uninterrupted_run(tiny: Path, tmp_path: Path, run_cli) -> None:
    sets = ["--set", "train.epochs=3", "--set", "data.augment=[flip, {name: rotate, range: 20}]",
            "--set", "model.options.dropout=0.2", "--set", "schedule.name=cosine",
            "--set", "schedule.warmup_epochs=1", "--set", "optim.lr=1e-3", "--set", "data.workers=1", "--no-progress"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_cli("train", tiny, "--out", full, *sets)[0] == 0
    code, out, _ = run_cli("train", tiny, "--out", part, "--stop-after", "1", *sets)
    assert code == 0 and "paused" in out
    assert json.loads((part / "last.json").read_text())["epoch"] == 1
    code, out, err = run_cli("train", "--resume", part, "--no-progress")
    assert code == 0, err
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the interruption changed something real: weights after epoch 1 differ from the final ones
    h_full = json.loads((full / "history.json").read_text())
    h_part = json.loads((part / "history.json").read_text())
    assert [r["train_loss"] for r in h_full] == [r["train_loss"] for r in h_part]
    assert h_full[0]["lr"] != h_full[-1]["lr"]  # cosine moved


def test_bf16_autocast_and_early_stopping(tiny: Path, tmp_path: Path) -> None:
    cfg = load_config(tiny, ["train.precision=bf16", "train.epochs=6", "train.early_stopping=2",
                             "train.min_delta=1.0", "train.monitor=val_loss", "train.curves=false"])
    seen: list[torch.dtype] = []

    class Spy(Trainer):
        def compute_loss(self, model, outputs, target):
            seen.append(outputs.dtype)
            return super().compute_loss(model, outputs, target)

    result = Spy(cfg, run_dir=tmp_path / "bf16", progress=False).fit()
    assert seen and all(d == torch.bfloat16 for d in seen)  # autocast ran the convolutions in bf16
    # min_delta=1 means no later epoch improves on the first: stop after 1 + 2 epochs
    assert result.stopped_early and result.epochs_done == 3 and result.best_epoch == 1
    assert result.monitor == "val_loss" and not (tmp_path / "bf16" / "curves.png").exists()
    assert np.isfinite([r["train_loss"] for r in result.history]).all()


def test_point_loss_and_deep_supervision_are_added(tiny: Path, tmp_path: Path) -> None:
    cfg = load_config(tiny, ["loss.aux_weights=[0.5]", "loss.point_loss_weight=0.25"])
    trainer = Trainer(cfg, run_dir=tmp_path / "x", progress=False)
    trainer.loss_fn = trainer.build_loss()
    target = (torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    main, aux = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)

    class WithPoints(torch.nn.Module):
        last_points = ()

        def point_loss(self, t: torch.Tensor) -> torch.Tensor:
            return t.mean() * 4

    base = trainer.loss_fn.loss
    got = trainer.compute_loss(WithPoints(), [main, aux], target)
    want = base(main, target) + 0.5 * base(aux, target) + 0.25 * target.mean() * 4
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert trainer.compute_loss(torch.nn.Identity(), main, target).item() == pytest.approx(
        base(main, target).item(), rel=1e-6)


class _Squares(Dataset):
    """Synthetic pairs for a custom builder (key "target" instead of "mask")."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        img = torch.rand(3, 32, 32, generator=g) * 0.2
        t = torch.zeros(1, 32, 32)
        t[:, 8 + i % 4: 20 + i % 4, 10:22] = 1
        img[:, t[0] > 0] += 0.7
        return {"image": img, "target": t, "id": str(i)}


def test_custom_dataset_builder(tiny: Path, tmp_path: Path) -> None:
    from medattn.training.data import DataBundle, register_dataset_builder

    @register_dataset_builder("test_squares")
    def build(cfg) -> DataBundle:
        return DataBundle(train=_Squares(6), val=_Squares(2), target_key="target")

    cfg = load_config(tiny, ["data.kind=test_squares", "train.epochs=1"])
    result = train(cfg, run_dir=tmp_path / "sq", progress=False)
    assert result.epochs_done == 1 and 0.0 <= result.history[0]["val_dice"] <= 1.0
    cfg = load_config(tiny, ["data.kind=test_squarez"])
    with pytest.raises(ConfigError, match="did you mean test_squares"):
        train(cfg, run_dir=tmp_path / "sq2", progress=False)


def test_validation_scores_match_numpy() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 20, 20, generator=g)
    target = (torch.rand(3, 1, 20, 20, generator=g) > 0.6).float()
    target[2] = 0
    logits[2] = -1  # both empty: perfect
    s = segmentation_scores(logits, target)
    for i in range(3):
        p, t = logits[i, 0].numpy() > 0, target[i, 0].numpy() > 0.5
        denom = p.sum() + t.sum()
        dice = 1.0 if denom == 0 else 2 * (p & t).sum() / denom
        union = (p | t).sum()
        iou = 1.0 if union == 0 else (p & t).sum() / union
        assert s["dice"][i].item() == pytest.approx(dice, rel=1e-6)
        assert s["iou"][i].item() == pytest.approx(iou, rel=1e-6)


def test_schedules() -> None:
    from medattn.training.config import OptimConfig, ScheduleConfig
    from medattn.training.optim import build_optimizer, build_scheduler

    def lrs(sched_cfg: ScheduleConfig, epochs: int, steps: int, metrics=None) -> list[float]:
        opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], OptimConfig(name="sgd", lr=0.1))
        sched = build_scheduler(opt, sched_cfg, epochs, steps, mode="max")
        out = []
        for e in range(epochs):
            for _ in range(steps):
                out.append(opt.param_groups[0]["lr"])
                opt.step()
                if sched.interval == "step":
                    sched.step()
            if sched.interval == "epoch":
                sched.step(metrics[e] if metrics else None)
        return out

    step = lrs(ScheduleConfig(name="step", step_size=2), 5, 1)
    assert step == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    cos = lrs(ScheduleConfig(name="cosine", warmup_epochs=1, min_lr=0.0), 3, 2)
    total, warm = 6, 2
    want = [0.1 * (s + 1) / warm if s < warm else 0.1 * 0.5 * (1 + np.cos(np.pi * (s - warm) / (total - warm)))
            for s in range(total)]
    assert cos == pytest.approx(want)
    plateau = lrs(ScheduleConfig(name="plateau", patience=1, factor=0.5), 5, 1, metrics=[0.5, 0.6, 0.6, 0.6, 0.6])
    assert plateau == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05])


def test_bsanet_trains_with_deep_supervision_and_point_loss(tiny: Path, tmp_path: Path) -> None:
    """A paper model through the engine: list outputs weighted, ARM point loss added, card reloads."""
    from medattn.inference import load_model

    calls: list[tuple[int, float]] = []

    class Spy(Trainer):
        def compute_loss(self, model, outputs, target):
            loss = super().compute_loss(model, outputs, target)
            calls.append((len(outputs) if isinstance(outputs, list) else 1, loss.item()))
            return loss

    cfg = load_config(tiny, ["model.name=bsanet", "model.options={}", "train.epochs=1", "data.limit=2",
                             "train.max_steps_per_epoch=1", "loss.name=structure", "train.curves=false"])
    result = Spy(cfg, run_dir=tmp_path / "bsa", progress=False).fit()
    assert result.epochs_done == 1 and len(calls) == 1
    n_outputs, value = calls[0]
    assert n_outputs > 1 and np.isfinite(value)
    lm = load_model(tmp_path / "bsa")
    assert lm.name == "bsanet" and lm.input_size == (64, 64)


def test_card_options_do_not_depend_on_init_files(tmp_path):
    """A checkpoint must rebuild after the pretrained file it started from is gone."""
    import torch

    from medattn.inference import load_model
    from medattn.models import create
    from medattn.models.encoders import create_encoder
    from medattn.training.checkpoint import save_checkpoint

    enc_file = tmp_path / "enc.safetensors"
    from safetensors.torch import save_file

    save_file(create_encoder("resnext_lite").state_dict(), str(enc_file))
    opts = {"in_channels": 3, "num_classes": 1, "encoder": "resnext_lite", "encoder_pretrained": str(enc_file)}
    model = create("bsanet", **opts)
    path = save_checkpoint(tmp_path / "run", "best", model, name="bsanet", options=opts, input_size=(64, 64))
    enc_file.unlink()
    lm = load_model(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, lm.model.state_dict()[k]), k
