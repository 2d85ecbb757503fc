"""Walk the whole registry; `medattn models` / `medattn export`; bundled-weights lookup."""

from __future__ import annotations

import json

import pytest
import torch

from medattn.errors import ConfigError, MedattnIOError
from medattn.models import create, list_models, model_info
from medattn.models.registry import TASKS

ALL = list_models()
WALK_SIZE = (64, 64)  # a multiple of every patch size / stride in the zoo


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


@pytest.mark.parametrize("name", ALL)
def test_every_model_builds_and_runs(name):
    info = model_info(name)
    assert info.task in TASKS
    assert info.description, f"{name}: give the builder a docstring or a description"
    assert len(info.input_size) == 2 and all(isinstance(s, int) and s > 0 for s in info.input_size)
    torch.manual_seed(0)
    net = create(name).eval()
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params > 0
    if info.paper_params:
        assert abs(n_params - info.paper_params) <= 0.10 * info.paper_params, (
            f"{name}: {n_params:,} parameters, the paper reports {info.paper_params:,}")
    in_ch = getattr(net, "in_channels", 3)
    x = torch.rand(2, in_ch, *WALK_SIZE)
    with torch.no_grad():
        out = net(x)
    tensors = _tensors(out)
    assert tensors and all(torch.isfinite(t).all() for t in tensors)
    if info.task == "segmentation":
        assert isinstance(out, torch.Tensor)
        assert out.shape == (2, getattr(net, "num_classes", 1), *WALK_SIZE)
    elif info.task in ("denoising", "colorization"):
        assert isinstance(out, torch.Tensor)
        assert out.shape[0] == 2 and out.shape[-2:] == WALK_SIZE
    elif info.task == "classification":
        assert isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] == 2
    else:  # reconstruction (MAE: loss, prediction, mask), detection: batch-first tensors
        assert any(t.ndim >= 1 and t.shape[0] == 2 for t in tensors)


def test_models_json_lists_the_whole_registry(run_cli):
    code, out, err = run_cli("models", "--json")
    assert code == 0, err
    records = json.loads(out)
    from medattn.models.hub import is_bundled

    registry = [r for r in records if r["name"] in ALL]
    assert [r["name"] for r in registry] == ALL
    for r in records:
        assert {"name", "task", "params", "input_size", "bundled", "paper", "description"} <= set(r)
        assert r["bundled"] is is_bundled(r["name"])
    for r in records:  # shipped trained models (e.g. bsanet-polyp) name their architecture
        if r["name"] not in ALL:
            assert r["bundled"] is True and r.get("architecture") in ALL
    unet = next(r for r in records if r["name"] == "unet")
    assert unet["params"] == sum(p.numel() for p in create("unet").parameters())
    assert unet["input_size"] == list(model_info("unet").input_size)


def test_models_filters_by_pattern_and_task(run_cli):
    code, out, _ = run_cli("models", "unet*", "--json")
    assert code == 0 and {r["name"] for r in json.loads(out)} == set(list_models("unet*"))
    code, out, _ = run_cli("models", "--task", "segmentation", "--json")
    assert code == 0 and all(r["task"] == "segmentation" for r in json.loads(out))
    code, out, _ = run_cli("models", "unet")
    assert code == 0 and "unet" in out and "segmentation" in out
    code, _, err = run_cli("models", "--task", "nonsense")
    assert code == 2 and err.startswith("error: unknown task 'nonsense'")


def test_export_cli_checks_against_onnxruntime(run_cli, tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "unet.onnx"
    code, out, err = run_cli("export", "--model", "unet", "--onnx", path, "--size", "48", "--in-channels", "1")
    assert code == 0, err
    diff = float(out.rsplit(":", 1)[1])
    assert diff < 1e-4
    import onnxruntime as ort

    inp = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0]
    assert inp.shape == [1, 1, 48, 48]


def test_export_cli_unknown_model(run_cli, tmp_path):
    code, _, err = run_cli("export", "--model", "unte", "--onnx", tmp_path / "x.onnx")
    assert code == 2 and "did you mean unet" in err
    assert not (tmp_path / "x.onnx").exists()


def test_dynamic_batch_export(tmp_path):
    pytest.importorskip("onnxruntime")
    from medattn.models.export import export_onnx, max_abs_difference, onnx_session

    net = create("unetpp", in_channels=3).eval()
    path = export_onnx(net, tmp_path / "u.onnx", size=(32, 48), dynamic_batch=True)
    assert not isinstance(onnx_session(path).get_inputs()[0].shape[0], int)
    assert max_abs_difference(net, path, torch.rand(3, 3, 32, 48)) < 1e-4


# -- bundled weights and model files ----------------------------------------------------------

def test_nothing_is_bundled_yet():
    from medattn.models.hub import bundled_weights, is_bundled, load_bundled

    assert bundled_weights("unet") is None and not is_bundled("unet")
    with pytest.raises(ConfigError, match="no trained weights for 'unet'"):
        load_bundled("unet")


def test_bundled_pair_round_trip(tmp_path, monkeypatch):
    from medattn.models import hub

    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path)
    torch.manual_seed(3)
    src = create("unet", in_channels=1, num_classes=2, channels=(8, 16, 32)).eval()
    hub.save_bundled(src, "unet", {"in_channels": 1, "num_classes": 2, "channels": [8, 16, 32]},
                     card={"trained_on": "synthetic"})
    assert hub.is_bundled("unet")
    assert json.loads((tmp_path / "unet.json").read_text())["trained_on"] == "synthetic"
    loaded = hub.load_bundled("unet")
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(src(x), loaded(x))
    # the same pair anywhere on disk loads through load_model_file
    again = hub.load_model_file(tmp_path / "unet.safetensors")
    with torch.no_grad():
        assert torch.equal(src(x), again(x))


def test_checkpoint_file_and_errors(tmp_path):
    from medattn.models.hub import load_model_file

    src = create("unet", channels=(8, 16)).eval()
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": "unet", "options": {"channels": [8, 16]}, "state_dict": src.state_dict(),
                "epoch": 3}, ckpt)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(load_model_file(ckpt)(x), src(x))
    bad = tmp_path / "bad.pt"
    torch.save({"model": "unet", "options": {"channels": [8, 32]}, "state_dict": src.state_dict()}, bad)
    with pytest.raises(ConfigError, match=r"bad\.pt: weights do not fit model 'unet'"):
        load_model_file(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(MedattnIOError, match=r"junk\.pt: cannot read checkpoint"):
        load_model_file(junk)
    lone = tmp_path / "lone.safetensors"
    from safetensors.torch import save_model

    save_model(src, str(lone))
    with pytest.raises(MedattnIOError, match=r"lone\.json: model card not found"):
        load_model_file(lone)
