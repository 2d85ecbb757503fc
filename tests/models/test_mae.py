"""The masked autoencoder: patches, masking, loss on masked patches, residual map."""

from __future__ import annotations

import pytest
import torch

from medattn.models import create, model_info
from medattn.models.mae import MAE, complementary_masks, complementary_sets, sincos_pos_embed

SMALL = {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_dim": 32,
         "decoder_depth": 1, "decoder_heads": 2}


def small_mae(**kw) -> MAE:
    torch.manual_seed(0)
    return create("mae", **{**SMALL, **kw})


def test_registered_as_reconstruction():
    info = model_info("mae")
    assert info.task == "reconstruction"
    assert isinstance(create("mae"), MAE)


@pytest.mark.parametrize("channels", [1, 3])
def test_patchify_round_trip_and_layout(channels):
    mae = small_mae(in_channels=channels)
    x = torch.rand(2, channels, 24, 40)
    patches = mae.patchify(x)
    assert patches.shape == (2, 3 * 5, 8 * 8 * channels)
    # patch (row 1, col 2) holds the pixels x[:, :, 8:16, 16:24] laid out as (p, p, C)
    expected = x[0, :, 8:16, 16:24].permute(1, 2, 0).reshape(-1)
    torch.testing.assert_close(patches[0, 1 * 5 + 2], expected)
    torch.testing.assert_close(mae.unpatchify(patches, (3, 5)), x)


def test_non_multiple_size_is_rejected():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        small_mae().patchify(torch.rand(1, 3, 20, 24))


@pytest.mark.parametrize(("num_patches", "ratio"), [(16, 0.75), (49, 0.75), (36, 0.5), (10, 0.33)])
def test_masking_ratio_is_exact(num_patches, ratio):
    mae = small_mae()
    mask = mae.random_mask(5, num_patches, ratio, torch.Generator().manual_seed(3))
    n_keep = round(num_patches * (1 - ratio))
    assert mask.dtype == torch.bool
    assert (mask.sum(dim=1) == num_patches - n_keep).all()
    # different images get different masks
    assert not all(torch.equal(mask[0], m) for m in mask[1:])


def test_masking_is_reproducible_with_a_generator():
    mae = small_mae()
    a = mae.random_mask(2, 16, 0.75, torch.Generator().manual_seed(7))
    b = mae.random_mask(2, 16, 0.75, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_sincos_embedding_is_distinct_per_position():
    pe = sincos_pos_embed(4, 5, 16)
    assert pe.shape == (20, 16)
    assert torch.cdist(pe, pe).add(torch.eye(20)).min() > 0.1


def test_loss_only_on_masked_patches():
    mae = small_mae()
    x = torch.rand(2, 3, 32, 32)
    loss, pred, mask = mae.forward_loss(x, 0.75, torch.Generator().manual_seed(0))
    assert pred.shape == (2, 16, 8 * 8 * 3)
    # replacing the predictions of visible patches changes nothing
    changed = torch.where(mask.unsqueeze(-1), pred, torch.randn_like(pred) * 100)
    torch.testing.assert_close(mae.loss_from_pred(x, changed, mask), loss)
    # replacing a masked patch's prediction does
    changed = pred.clone()
    b, i = torch.nonzero(mask)[0]
    changed[b, i] += 1.0
    assert not torch.allclose(mae.loss_from_pred(x, changed, mask), loss)
    # the loss equals an independent computation of the normalised-pixel MSE on masked patches
    t = mae.patchify(x)
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
    ref = ((pred - t) ** 2).mean(-1)[mask].mean()
    torch.testing.assert_close(loss, ref)


def test_backward_and_training_reduces_loss():
    mae = small_mae()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(mae.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        # a fixed batch and mask: the network can memorise it, so the loss must fall
        loss, _, _ = mae(x, 0.5, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in mae.parameters())
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3


@pytest.mark.parametrize(("num_patches", "ratio", "k"), [(16, 0.75, 4), (36, 0.75, 2), (49, 0.5, 2), (30, 0.6, 3)])
def test_complementary_masks_cover_every_patch(num_patches, ratio, k):
    masks = complementary_masks(num_patches, ratio, k, seed=2)
    n_mask = num_patches - round(num_patches * (1 - ratio))
    assert masks.shape == (k, num_patches)
    assert (masks.sum(dim=1) == n_mask).all()
    assert masks.any(dim=0).all()
    assert [sorted(s) for s in complementary_sets(num_patches, ratio, k, seed=2)] == [
        torch.nonzero(m).flatten().tolist() for m in masks
    ]


def test_too_few_masks_is_an_error():
    with pytest.raises(ValueError, match="cannot cover"):
        complementary_masks(16, 0.25, 2)


class _PerfectDecoderMAE(MAE):
    """Decoder replaced by an oracle that returns the true normalised patches."""

    def decode(self, latent, ids_keep, grid):
        return self.target(self._imgs)


def test_residual_map_is_zero_for_a_perfect_reconstructor():
    torch.manual_seed(0)
    # a perfect pixel predictor; a perfect normalised-pixel predictor given each patch's own statistics
    for norm_pix, stats in ((True, "patch"), (False, "patch"), (False, "context")):
        mae = _PerfectDecoderMAE(**SMALL, norm_pix_loss=norm_pix).eval()
        x = torch.rand(2, 3, 32, 24)
        mae._imgs = x
        r = mae.residual_map(x, n_masks=4, stats=stats)
        assert r.shape == (2, 1, 32, 24)
        assert r.abs().max() < 1e-4


def _skin_with_dark_patch() -> torch.Tensor:
    """A 32x32 textured 'skin' image (patch 8: 4x4 grid) whose patch (1, 2) is dark, like a lesion."""
    g = torch.Generator().manual_seed(0)
    x = 0.75 + 0.05 * torch.rand(1, 3, 32, 32, generator=g)
    x[..., 8:16, 16:24] -= 0.5
    return x


def test_residual_map_does_not_see_a_hidden_patch_brightness():
    """Defect (issue 16): the residual of a hidden patch was de-normalised with that patch's own mean
    and std, so even a dark lesion the context cannot predict left no residual. By default the
    hidden patch's statistics now come from the visible patches only."""
    mae = _PerfectDecoderMAE(**SMALL, norm_pix_loss=True).eval()
    x = _skin_with_dark_patch()
    mae._imgs = x
    with torch.no_grad():
        r = mae.residual_map(x, n_masks=4)
        leaky = mae.residual_map(x, n_masks=4, stats="patch")
    lesion = r[..., 8:16, 16:24].mean()
    rest = (r.sum() - r[..., 8:16, 16:24].sum()) / (r.numel() - 64)
    assert lesion > 5 * rest
    assert leaky.abs().max() < 1e-4  # the leak: a perfect *normalised* predictor explains the lesion away


def test_context_reconstruction_ignores_hidden_pixels():
    mae = small_mae().eval()
    x = torch.rand(1, 3, 16, 16)
    keep = torch.tensor([0, 1, 2])  # patch 3 (bottom right) hidden
    y = x.clone()
    y[..., 8:, 8:] = 0.1 * y[..., 8:, 8:]
    with torch.no_grad():
        a, b = (mae.reconstruct(v, keep, stats="context")[..., 8:, 8:] for v in (x, y))
        pa, pb = (mae.reconstruct(v, keep, stats="patch")[..., 8:, 8:] for v in (x, y))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(pa, pb)
    with pytest.raises(ValueError, match="stats"):
        mae.reconstruct(x, keep, stats="own")


def test_residual_map_averages_masked_passes_only():
    mae = small_mae().eval()
    x = torch.rand(1, 3, 16, 16)
    n, ratio, k = 4, 0.5, 2
    sets = complementary_sets(n, ratio, k, seed=0)
    expected = torch.zeros(1, 1, 16, 16)
    count = torch.zeros(1, 1, 16, 16)
    with torch.no_grad():
        for masked in sets:
            keep = torch.tensor([i for i in range(n) if i not in masked])
            err = (mae.reconstruct(x, keep, stats="context") - x).abs().mean(1, keepdim=True)
            for i in masked:
                r, c = divmod(i, 2)
                expected[..., r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += err[..., r * 8:(r + 1) * 8, c * 8:(c + 1) * 8]
                count[..., r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 1
        got = mae.residual_map(x, mask_ratio=ratio, n_masks=k, seed=0)
    torch.testing.assert_close(got, expected / count)


def test_residual_map_is_deterministic_and_seed_dependent():
    mae = small_mae().eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a = mae.residual_map(x, seed=1)
        b = mae.residual_map(x, seed=1)
        c = mae.residual_map(x, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_visible_tokens_only_reach_the_encoder():
    """Changing a masked patch's pixels cannot change the encoder's output."""
    mae = small_mae().eval()
    x = torch.rand(1, 3, 16, 16)
    mask = torch.tensor([True, False, False, True])
    y = x.clone()
    y[..., :8, :8] = 0.0  # patch 0, masked
    with torch.no_grad():
        torch.testing.assert_close(mae.forward_encoder(x, mask), mae.forward_encoder(y, mask))
        y[..., :8, 8:] = 0.0  # patch 1, visible
        assert not torch.allclose(mae.forward_encoder(x, mask), mae.forward_encoder(y, mask))
