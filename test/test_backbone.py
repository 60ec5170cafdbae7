"""FrozenViT: shapes, frozen behaviour, position-embedding resizing, local weight loading, parameter counts."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

from dsa_core.config import get_config
from dsa_core.model.backbone import FrozenViT, load_backbone_weights


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add contention on the shared CI cores (measured ~10x slower with 2)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _nano(seed: int = 0, **overrides) -> FrozenViT:
    torch.manual_seed(seed)
    return FrozenViT(get_config("dsa_nano").replace(**overrides))


def test_forward_shapes_non_square():
    vit = _nano()
    images = torch.randn(2, 3, 64, 96)
    outs = vit(images)
    assert len(outs) == 4
    for out in outs:
        assert out.shape == (2, 96, 4, 6)
        assert not out.requires_grad
    # successive groups apply more blocks, so the maps differ
    assert not torch.allclose(outs[0], outs[3])


def test_group_outputs_equal_block_outputs_at_pretrain_size():
    """At the pretraining grid no resizing happens: each output is the token state after its group's last block."""
    vit = _nano()
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        x = vit.vit.patch_embed(images) + vit.vit.pos_embed[:, 1:]  # timm's own (strict-size) patch embedding
        states = []
        for blk in vit.vit.blocks:
            x = blk(x)
            states.append(x.transpose(1, 2).reshape(1, 96, 14, 14))
    outs = vit(images)
    ends = [g[-1] for g in get_config("dsa_nano").backbone.interaction_indexes]
    for out, end in zip(outs, ends):
        torch.testing.assert_close(out, states[end])


def test_pos_embed_resize_matches_timm_bicubic():
    vit = _nano()
    for grid in [(4, 6), (20, 30), (14, 14)]:
        ours = vit.resized_pos_embed(grid)
        ref = resample_abs_pos_embed(
            vit.vit.pos_embed, new_size=list(grid), old_size=[14, 14], num_prefix_tokens=1, antialias=False
        )[:, 1:]
        assert ours.shape == (1, grid[0] * grid[1], 96)
        torch.testing.assert_close(ours, ref)


def test_embed_returns_tokens_and_grid_and_keeps_grad_mode():
    vit = _nano()
    images = torch.randn(1, 3, 64, 96, requires_grad=True)
    tokens, grid = vit.embed(images)
    assert grid == (4, 6) and tokens.shape == (1, 24, 96)
    assert tokens.requires_grad  # gradients can reach the input through the frozen embedding (injector baseline)


def test_frozen_and_stays_in_eval():
    vit = _nano()
    assert all(not p.requires_grad for p in vit.parameters())
    vit.train()
    assert not vit.training and not any(m.training for m in vit.modules())
    parent = torch.nn.Sequential(vit)
    parent.train(True)
    assert not any(m.training for m in vit.modules())


def test_bad_inputs_and_configs():
    vit = _nano()
    with pytest.raises(ValueError, match="multiple of the patch size"):
        vit(torch.randn(1, 3, 65, 96))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        vit(torch.randn(1, 1, 64, 96))
    with pytest.raises(ValueError, match="contiguously"):
        _nano(**{"backbone.interaction_indexes": [[0, 0], [2, 2], [1, 1], [3, 3]]})
    with pytest.raises(ValueError, match="depth"):
        _nano(**{"backbone.interaction_indexes": [[0, 0], [1, 1], [2, 2], [3, 3]], "backbone.depth": 6})
    with pytest.raises(NotImplementedError, match="beit"):
        _nano(**{"backbone.arch": "beit"})


def test_weight_roundtrip_pth_wrapped_with_prefix_and_head(tmp_path):
    src, dst = _nano(seed=1), _nano(seed=2)
    images = torch.randn(1, 3, 64, 96)
    assert not torch.allclose(src(images)[3], dst(images)[3])
    state = {f"module.{k}": v for k, v in src.vit.state_dict().items()}
    state["module.head.weight"] = torch.randn(1000, 96)  # classifier heads are dropped
    state["module.head.bias"] = torch.randn(1000)
    path = tmp_path / "vit.pth"
    torch.save({"model": state, "epoch": 3}, path)
    load_backbone_weights(dst, path)
    for a, b in zip(src(images), dst(images)):
        torch.testing.assert_close(a, b)
    assert all(not p.requires_grad for p in dst.parameters())


def test_weight_roundtrip_safetensors(tmp_path):
    src, dst = _nano(seed=3), _nano(seed=4)
    path = tmp_path / "vit.safetensors"
    save_file({f"backbone.{k}": v.contiguous() for k, v in src.vit.state_dict().items()}, str(path))
    load_backbone_weights(dst, path)
    for k, v in src.vit.state_dict().items():
        torch.testing.assert_close(dst.vit.state_dict()[k], v)


def test_meta_built_backbone_takes_the_file_tensors(tmp_path):
    src = _nano(seed=8)
    path = tmp_path / "vit.pth"
    torch.save(src.vit.state_dict(), path)
    with torch.device("meta"):
        dst = FrozenViT(get_config("dsa_nano"))
    load_backbone_weights(dst, path)
    assert not any(p.is_meta or p.requires_grad for p in dst.parameters())
    images = torch.randn(1, 3, 64, 96)
    for a, b in zip(src(images), dst(images)):
        torch.testing.assert_close(a, b)


def test_checkpoint_pos_embed_is_resized_to_model_grid(tmp_path):
    src = _nano(seed=5, **{"backbone.pretrain_img_size": 384})  # 24x24 grid
    dst = _nano(seed=6)  # 14x14 grid
    path = tmp_path / "vit384.pth"
    torch.save(src.vit.state_dict(), path)
    load_backbone_weights(dst, path)
    expected = resample_abs_pos_embed(src.vit.pos_embed, new_size=[14, 14], num_prefix_tokens=1, antialias=False)
    torch.testing.assert_close(dst.vit.pos_embed, expected)


def test_mismatched_checkpoint_raises_clear_error(tmp_path):
    dst = _nano()
    wide = _nano(**{"backbone.embed_dim": 192, "backbone.num_heads": 3})
    path = tmp_path / "wide.pth"
    torch.save(wide.vit.state_dict(), path)
    with pytest.raises(ValueError, match=r"shape mismatches \[blocks\.0\.attn\.proj\.bias: file \(192,\) vs model \(96,\)"):
        load_backbone_weights(dst, path)

    deep = _nano(**{"backbone.depth": 5, "backbone.interaction_indexes": [[0, 1], [2, 2], [3, 3], [4, 4]]})
    path = tmp_path / "deep.safetensors"
    save_file({k: v.contiguous() for k, v in deep.vit.state_dict().items()}, str(path))
    with pytest.raises(ValueError, match=r"unexpected keys \[blocks\.4\."):
        load_backbone_weights(dst, path)

    partial = {k: v for k, v in dst.vit.state_dict().items() if not k.startswith("blocks.3.")}
    path = tmp_path / "partial.pt"
    torch.save(partial, path)
    with pytest.raises(ValueError, match=r"missing keys \[blocks\.3\."):
        load_backbone_weights(dst, path)

    with pytest.raises(FileNotFoundError):
        load_backbone_weights(dst, tmp_path / "absent.pth")
    bad = tmp_path / "weights.npz"
    bad.write_bytes(b"x")
    with pytest.raises(ValueError, match="safetensors"):
        load_backbone_weights(dst, bad)


@pytest.mark.parametrize("name,expected", [("dsa_tiny", 5.524e6), ("dsa_large", 303.30e6)])
def test_frozen_parameter_count_on_meta(name, expected):
    """Paper A.1: 5.5M (ViT-Tiny/16 without head) and 303.3M (ViT-L/16 @224 without head), docs/model_reference.md §5."""
    with torch.device("meta"):
        vit = FrozenViT(get_config(name))
    count = sum(p.numel() for p in vit.parameters())
    print(f"{name} frozen backbone: {count / 1e6:.3f}M")
    assert all(p.is_meta for p in vit.parameters())
    assert abs(count / expected - 1) < 0.01
