"""Swin blocks (medattn.models.blocks.swin) and the Swin-T encoder against naive references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from medattn.errors import ConfigError
from medattn.models.blocks.swin import (
    PatchMerging,
    SwinTransformerBlock,
    relative_position_index,
    window_partition,
    window_reverse,
)
from medattn.models.encoders import create_encoder
from medattn.models.encoders.swin import SwinEncoder


def test_window_partition_round_trip_and_layout() -> None:
    x = torch.randn(2, 12, 8, 5)
    win = window_partition(x, 4)
    assert win.shape == (2 * 3 * 2, 16, 5)
    # window 1 of image 0 is rows 0..3, columns 4..7, row-major
    assert torch.equal(win[1], x[0, 0:4, 4:8].reshape(16, 5))
    assert torch.equal(win[6 + 5], x[1, 8:12, 4:8].reshape(16, 5))
    assert torch.equal(window_reverse(win, 4, 12, 8), x)


def test_relative_position_index_matches_definition() -> None:
    ws = 3
    idx = relative_position_index(ws)
    pos = [(r, c) for r in range(ws) for c in range(ws)]
    for i, (ri, ci) in enumerate(pos):
        for j, (rj, cj) in enumerate(pos):
            assert idx[i, j] == (ri - rj + ws - 1) * (2 * ws - 1) + (ci - cj + ws - 1)


def _naive_block(block: SwinTransformerBlock, x: torch.Tensor) -> torch.Tensor:
    """Reference: full attention over all real tokens with the shifted-window rule written out.

    Tokens p, q attend to each other iff, in every axis, they fall into the same window of the
    partition shifted by s and are both wrapped around by the cyclic shift or both not (Liu et al.,
    Sec. 3.2). Padding tokens do not exist here at all.
    """
    b, h, w, c = x.shape
    ws, heads = block.window_size, block.attn.num_heads
    s_h = block.shift_size if h > ws else 0
    s_w = block.shift_size if w > ws else 0
    hp, wp = h + (-h) % ws, w + (-w) % ws
    pos = [(r, col) for r in range(h) for col in range(w)]
    n = len(pos)
    table = block.attn.relative_position_bias_table.detach()
    allowed = torch.zeros(n, n, dtype=torch.bool)
    bias = torch.zeros(heads, n, n)
    for i, (ri, ci) in enumerate(pos):
        ri_s, ci_s = (ri - s_h) % hp, (ci - s_w) % wp
        for j, (rj, cj) in enumerate(pos):
            rj_s, cj_s = (rj - s_h) % hp, (cj - s_w) % wp
            same_window = ri_s // ws == rj_s // ws and ci_s // ws == cj_s // ws
            same_wrap = (ri < s_h) == (rj < s_h) and (ci < s_w) == (cj < s_w)
            allowed[i, j] = same_window and same_wrap
            if allowed[i, j]:
                dr, dc = (ri_s % ws) - (rj_s % ws), (ci_s % ws) - (cj_s % ws)
                bias[:, i, j] = table[(dr + ws - 1) * (2 * ws - 1) + (dc + ws - 1)]
    y = block.norm1(x).reshape(b, n, c)
    qkv = block.attn.qkv(y).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    logits = q @ k.transpose(-1, -2) / (c // heads) ** 0.5 + bias
    attn = logits.masked_fill(~allowed, float("-inf")).softmax(-1)
    out = (attn @ v).transpose(1, 2).reshape(b, n, c)
    x = x + block.attn.proj(out).reshape(b, h, w, c)
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize(
    ("size", "window", "shift"),
    [((14, 14), 7, 3), ((14, 14), 7, 0), ((10, 13), 4, 2), ((6, 5), 4, 0), ((3, 3), 4, 2)],
)
def test_block_matches_naive_shifted_window_attention(size, window, shift) -> None:
    torch.manual_seed(0)
    block = SwinTransformerBlock(16, 2, window, shift).eval()
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_(0, 1.0)  # make the bias matter
        x = torch.randn(2, *size, 16)
        torch.testing.assert_close(block(x), _naive_block(block, x), rtol=1e-4, atol=1e-5)


def test_shifted_window_tokens_do_not_see_other_regions() -> None:
    """Changing a token only changes the outputs of tokens allowed to attend to it."""
    torch.manual_seed(0)
    block = SwinTransformerBlock(8, 2, 4, 2).eval()
    x = torch.randn(1, 8, 8, 8)
    x2 = x.clone()
    x2[0, 0, 0, 0] += 10.0  # token (0, 0) is wrapped by the shift: its region is the 2x2 corner block
    with torch.no_grad():
        changed = (block(x2) - block(x)).abs().amax(-1)[0] > 1e-6
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[0:2, 0:2] = True
    assert torch.equal(changed, expected)


def test_patch_merging_order_matches_reference() -> None:
    torch.manual_seed(0)
    pm = PatchMerging(3)
    x = torch.randn(2, 6, 4, 3)
    # the order of the original Swin code / torchvision: x0, x1 (odd rows), x2 (odd cols), x3
    cat = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
    torch.testing.assert_close(pm(x), pm.reduction(pm.norm(cat)))
    assert pm(torch.randn(1, 5, 7, 3)).shape == (1, 3, 4, 6)  # odd sides are padded


def test_swin_t_encoder_shapes_and_size() -> None:
    enc = create_encoder("swin_t", in_channels=1)
    assert enc.out_channels == [96, 192, 384, 768]
    assert enc.reductions == [4, 8, 16, 32]
    # timm swin_tiny_patch4_window7_224 has 28,288,354 parameters with its 1000-class head and final norm
    assert sum(p.numel() for p in enc.parameters()) == 28_288_354 - (768 * 1000 + 1000) - 2 * 768 - (3 - 1) * 96 * 16
    enc.eval()
    with torch.no_grad():
        feats = enc(torch.rand(1, 1, 60, 90))
    assert [tuple(f.shape[1:]) for f in feats] == [(96, 15, 23), (192, 8, 12), (384, 4, 6), (768, 2, 3)]


def _random_like(enc: SwinEncoder, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) for k, v in enc.state_dict().items()}


def _tiny() -> SwinEncoder:
    return SwinEncoder(3, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=3)


def _to_timm_old(own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm < 0.9 / Microsoft release: downsample at the end of the previous stage, buffers stored."""
    out = {}
    for k, v in own.items():
        parts = k.split(".")
        if parts[0] == "layers" and parts[2] == "downsample":
            k = ".".join(["layers", str(int(parts[1]) - 1), *parts[2:]])
        out[k] = v
        if k.endswith("attn.qkv.weight"):
            out[k.replace("qkv.weight", "relative_position_index")] = torch.zeros(9, 9, dtype=torch.long)
    out["layers.0.blocks.1.attn_mask"] = torch.zeros(4, 9, 9)
    out["norm.weight"], out["head.weight"] = torch.ones(64), torch.zeros(10, 64)
    return out


def _to_torchvision(own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision swin_t: features.0 = [Conv2d, Permute, LayerNorm], odd = stages, even = merging."""
    out = {}
    for k, v in own.items():
        p = k.split(".")
        if p[0] == "patch_embed":
            name = "features.0.0." if p[1] == "proj" else "features.0.2."
            out[name + p[2]] = v
        elif p[2] == "downsample":
            out[f"features.{2 * int(p[1])}." + ".".join(p[3:])] = v
        else:
            rest = ".".join(p[4:]).replace("mlp.fc1", "mlp.0").replace("mlp.fc2", "mlp.3")
            out[f"features.{2 * int(p[1]) + 1}.{p[3]}.{rest}"] = v
            if rest == "attn.qkv.weight":
                out[f"features.{2 * int(p[1]) + 1}.{p[3]}.attn.relative_position_index"] = torch.zeros(81)
    out["norm.weight"], out["head.weight"] = torch.ones(64), torch.zeros(10, 64)
    return out


@pytest.mark.parametrize("layout", ["timm", "timm_old", "torchvision"])
def test_swin_encoder_loads_foreign_layouts(tmp_path, layout) -> None:
    own = _random_like(_tiny())
    foreign = {"timm": lambda d: {**d, "head.fc.weight": torch.zeros(10, 64)},
               "timm_old": _to_timm_old, "torchvision": _to_torchvision}[layout](own)
    path = tmp_path / "swin.safetensors"
    save_file(foreign, str(path))
    enc = _tiny()
    enc.load_pretrained(path)
    loaded = enc.state_dict()
    for k, v in own.items():
        assert torch.equal(loaded[k], v), k
    assert torch.equal(loaded["layers.2.downsample.reduction.weight"], own["layers.2.downsample.reduction.weight"])


def test_swin_encoder_mismatched_file_is_a_clear_error(tmp_path) -> None:
    own = _random_like(_tiny())
    own["layers.1.blocks.0.attn.qkv.weight"] = torch.zeros(5, 5)
    del own["layers.3.blocks.1.mlp.fc2.bias"]
    path = tmp_path / "bad.pth"
    torch.save({"model": own}, path)
    with pytest.raises(ConfigError, match=r"bad\.pth.*missing.*mlp\.fc2\.bias.*shape.*qkv"):
        _tiny().load_pretrained(path)


def test_one_channel_encoder_sums_the_rgb_stem(tmp_path) -> None:
    own = _random_like(_tiny())
    path = tmp_path / "swin.pth"
    torch.save(own, path)
    enc = SwinEncoder(1, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=3)
    enc.load_pretrained(path)
    torch.testing.assert_close(enc.patch_embed.proj.weight, own["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert F.mse_loss(enc.layers[3].blocks[1].mlp.fc1.weight, own["layers.3.blocks.1.mlp.fc1.weight"]) == 0


def test_shifted_padded_block_exports_to_onnx(tmp_path) -> None:
    """torch.roll, the region mask and the padding crop run in ONNX Runtime as in PyTorch."""
    ort = pytest.importorskip("onnxruntime")
    import warnings

    torch.manual_seed(0)
    block = SwinTransformerBlock(16, 2, 4, 2).eval()
    x = torch.randn(2, 10, 13, 16)
    path = tmp_path / "block.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(block, (x,), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = block(x).numpy()
    out = sess.run(None, {"x": x.numpy()})[0]
    assert abs(out - ref).max() < 1e-4
