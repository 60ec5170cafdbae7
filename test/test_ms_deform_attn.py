"""Multi-scale deformable attention: the grid_sample path against an independent naive implementation, gradcheck,
and the MSDeformAttn module (shapes, initialisation, padding mask)."""
from __future__ import annotations

import math

import pytest
import torch

from dsa_core.ops import MSDeformAttn, ms_deform_attn, ms_deform_attn_pytorch


def naive_bilinear(plane: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample plane [H, W, D] at normalised (x, y), align_corners=False (pixel i covers [i/W, (i+1)/W]), zeros
    outside. Written from the definition, corner by corner."""
    height, width, channels = plane.shape
    h = y * height - 0.5
    w = x * width - 0.5
    h0, w0 = math.floor(h), math.floor(w)
    out = torch.zeros(channels, dtype=plane.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            row, col = h0 + dy, w0 + dx
            if 0 <= row < height and 0 <= col < width:
                weight = (1 - abs(h - row)) * (1 - abs(w - col))
                out += weight * plane[row, col]
    return out


def naive_ms_deform_attn(value, spatial_shapes, sampling_locations, attention_weights) -> torch.Tensor:
    """Explicit loops over batch, query, head, level, point."""
    n, s, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    out = torch.zeros(n, lq, m, d, dtype=value.dtype)
    start = 0
    planes = []
    for h, w in spatial_shapes.tolist():
        planes.append(value[:, start:start + h * w].reshape(n, h, w, m, d))
        start += h * w
    assert start == s
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                for lvl in range(n_levels):
                    for p in range(n_points):
                        x, y = sampling_locations[b, q, head, lvl, p].tolist()
                        sample = naive_bilinear(planes[lvl][b, :, :, head], x, y)
                        out[b, q, head] += attention_weights[b, q, head, lvl, p] * sample
    return out.reshape(n, lq, m * d)


def make_inputs(shapes, n=2, lq=5, m=2, d=3, p=3, dtype=torch.float64, spread=0.3, seed=0):
    """Random inputs; locations spread beyond [0, 1] by `spread` on each side so some fall outside the map."""
    g = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.int64)
    level_start_index = torch.cat([spatial_shapes.new_zeros(1), (spatial_shapes[:, 0] * spatial_shapes[:, 1]).cumsum(0)[:-1]])
    s = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    n_levels = len(shapes)
    value = torch.randn(n, s, m, d, generator=g, dtype=dtype)
    locations = torch.rand(n, lq, m, n_levels, p, 2, generator=g, dtype=dtype) * (1 + 2 * spread) - spread
    weights = torch.rand(n, lq, m, n_levels, p, generator=g, dtype=dtype)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    return value, spatial_shapes, level_start_index, locations, weights


NON_SQUARE_SHAPES = [(6, 4), (3, 5), (1, 2), (2, 1)]


def test_naive_bilinear_matches_definition_at_pixel_centres():
    """Sanity of the test's own reference: at pixel centre (j+0.5)/W, (i+0.5)/H it returns exactly that pixel,
    halfway between two centres the mean, and a quarter pixel outside the border half of the edge pixel."""
    plane = torch.arange(12, dtype=torch.float64).reshape(3, 4, 1)
    for i in range(3):
        for j in range(4):
            assert naive_bilinear(plane, (j + 0.5) / 4, (i + 0.5) / 3).item() == plane[i, j, 0].item()
    assert naive_bilinear(plane, 1.0 / 4, 0.5 / 3).item() == pytest.approx(0.5 * (plane[0, 0, 0] + plane[0, 1, 0]).item())
    # x = 0 is half a pixel left of the first centre: the left neighbour is padding (zero).
    assert naive_bilinear(plane, 0.0, 0.5 / 3).item() == pytest.approx(0.5 * plane[0, 0, 0].item())
    assert naive_bilinear(plane, -0.5, 0.5).item() == 0.0


@pytest.mark.parametrize("spread", [0.0, 0.3, 1.0])
def test_pytorch_path_matches_naive_float64(spread):
    value, shapes, _, locations, weights = make_inputs(NON_SQUARE_SHAPES, spread=spread, seed=int(spread * 10))
    expected = naive_ms_deform_attn(value, shapes, locations, weights)
    got = ms_deform_attn_pytorch(value, shapes, locations, weights)
    assert got.shape == (2, 5, 2 * 3)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_points_fully_outside_give_zero_and_border_points_are_partial():
    value, shapes, _, locations, weights = make_inputs([(4, 3)], n=1, lq=4, m=1, d=2, p=1)
    value = value.abs() + 1.0  # strictly positive, so a partial sample is strictly between 0 and the full sample
    locations[0, 0, 0, 0, 0] = torch.tensor([-0.6, 0.5], dtype=torch.float64)  # far left: w = -0.6*3-0.5 < -1
    locations[0, 1, 0, 0, 0] = torch.tensor([0.5, 1.3], dtype=torch.float64)  # below the bottom edge
    locations[0, 2, 0, 0, 0] = torch.tensor([1.0, 0.5], dtype=torch.float64)  # half a pixel right of last centre
    locations[0, 3, 0, 0, 0] = torch.tensor([5.0 / 6.0, 0.625], dtype=torch.float64)  # exactly last column centre
    weights.fill_(1.0)
    out = ms_deform_attn_pytorch(value, shapes, locations, weights)
    assert torch.equal(out[0, 0], torch.zeros(2, dtype=torch.float64))
    assert torch.equal(out[0, 1], torch.zeros(2, dtype=torch.float64))
    plane = value[0, :, 0].reshape(4, 3, 2)
    # x = 1.0 -> w = 2.5: half on the last column, half on padding; y = 0.5 -> h = 1.5: rows 1 and 2 equally.
    torch.testing.assert_close(out[0, 2], 0.25 * (plane[1, 2] + plane[2, 2]), rtol=1e-12, atol=1e-12)
    # x = 5/6 -> w = 2.0, y = 0.625 -> h = 2.0: exactly pixel (2, 2).
    torch.testing.assert_close(out[0, 3], plane[2, 2], rtol=1e-12, atol=1e-12)


def test_dispatcher_on_cpu_matches_the_reference(monkeypatch):
    """The reference path bit for bit when selected; the default (C++ kernel) to float rounding."""
    import importlib

    msda = importlib.import_module("dsa_core.ops.ms_deform_attn")  # the package re-exports a function of this name
    value, shapes, starts, locations, weights = make_inputs(NON_SQUARE_SHAPES[:2])
    reference = ms_deform_attn_pytorch(value, shapes, locations, weights)
    torch.testing.assert_close(ms_deform_attn(value, shapes, starts, locations, weights), reference,
                               rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(msda, "CPU_IMPLEMENTATION", "grid_sample")
    torch.testing.assert_close(ms_deform_attn(value, shapes, starts, locations, weights), reference, rtol=0, atol=0)


def test_pytorch_path_gradcheck_float64():
    # Locations kept away from pixel-centre lattice lines by randomness (bilinear is not differentiable there).
    value, shapes, _, locations, weights = make_inputs([(3, 4), (2, 3)], n=1, lq=2, m=2, d=2, p=2, spread=0.2, seed=3)
    inputs = (value.requires_grad_(), locations.requires_grad_(), weights.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda v, loc, w: ms_deform_attn_pytorch(v, shapes, loc, w), inputs, eps=1e-6, atol=1e-5, rtol=1e-4
    )


def test_float32_matches_float64():
    value, shapes, _, locations, weights = make_inputs(NON_SQUARE_SHAPES, n=1, lq=7, m=2, d=4, p=4)
    ref = ms_deform_attn_pytorch(value, shapes, locations, weights)
    got = ms_deform_attn_pytorch(value.float(), shapes, locations.float(), weights.float())
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- MSDeformAttn module


def level_inputs(shapes, n=2, c=16, lq=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.int64)
    areas = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    s = int(areas.sum())
    query = torch.randn(n, lq, c, generator=g)
    reference_points = torch.rand(n, lq, len(shapes), 2, generator=g)
    input_flatten = torch.randn(n, s, c, generator=g)
    return query, reference_points, input_flatten, spatial_shapes, level_start_index


def test_module_output_shape_and_ratio():
    torch.manual_seed(0)
    shapes = [(8, 6), (4, 3), (2, 2)]
    module = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2, ratio=0.5)
    assert module.value_proj.out_features == 8
    args = level_inputs(shapes)
    out = module(*args)
    assert out.shape == (2, 6, 16)
    assert torch.isfinite(out).all()


def test_module_rejects_indivisible_value_dim():
    with pytest.raises(ValueError, match="divisible by n_heads"):
        MSDeformAttn(d_model=10, n_levels=1, n_heads=4, n_points=1)


def test_module_init_offsets_pattern_and_uniform_weights():
    n_heads, n_levels, n_points = 8, 3, 4
    module = MSDeformAttn(d_model=32, n_levels=n_levels, n_heads=n_heads, n_points=n_points)
    assert torch.count_nonzero(module.sampling_offsets.weight) == 0
    bias = module.sampling_offsets.bias.detach().view(n_heads, n_levels, n_points, 2)
    for m in range(n_heads):
        theta = 2 * math.pi * m / n_heads
        direction = torch.tensor([math.cos(theta), math.sin(theta)])
        direction = direction / direction.abs().max()  # square ring: max(|dx|, |dy|) = 1
        for lvl in range(n_levels):
            for p in range(n_points):
                torch.testing.assert_close(bias[m, lvl, p], direction * (p + 1), rtol=1e-6, atol=1e-6)
    # Attention logits are zero at init: softmax over L*P is uniform for every query.
    query, *_ = level_inputs([(4, 4)], c=32)
    logits = module.attention_weights(query).view(2, 6, n_heads, n_levels * n_points)
    torch.testing.assert_close(logits.softmax(-1), torch.full_like(logits, 1.0 / (n_levels * n_points)))
    assert torch.count_nonzero(module.value_proj.bias) == 0 and torch.count_nonzero(module.output_proj.bias) == 0


def test_module_at_init_averages_values_at_offset_points():
    """With init weights, output = output_proj(mean over levels/points of bilinear samples at ref + offsets)."""
    torch.manual_seed(1)
    shapes = [(5, 7), (3, 4)]
    module = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2).double()
    query, ref, flat, spatial_shapes, _ = (t.double() if t.is_floating_point() else t for t in level_inputs(shapes, n=1, c=8, lq=3))
    out = module(query, ref, flat, spatial_shapes, torch.tensor([0, 35]))
    value = module.value_proj(flat).view(1, 47, 2, 4)
    offsets = module.sampling_offsets.bias.view(2, 2, 2, 2)
    normaliser = torch.tensor([[7.0, 5.0], [4.0, 3.0]], dtype=torch.float64)  # (W, H) per level
    locations = ref[:, :, None, :, None, :] + (offsets / normaliser[None, :, None, :])[None, None]
    weights = torch.full((1, 3, 2, 2, 2), 0.25, dtype=torch.float64)
    expected = module.output_proj(naive_ms_deform_attn(value, spatial_shapes, locations, weights))
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_module_padding_mask_zeroes_masked_values():
    """Masked keys contribute nothing: changing their features does not change the output, and masking all keys
    leaves only the output bias."""
    torch.manual_seed(2)
    shapes = [(4, 4), (2, 2)]
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=3)
    module.sampling_offsets.weight.data.normal_(std=0.1)  # query-dependent offsets, not just the init pattern
    module.output_proj.bias.data.normal_()
    query, ref, flat, spatial_shapes, starts = level_inputs(shapes, n=2, c=16)
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[0, 10:] = True
    mask[1, ::3] = True
    out = module(query, ref, flat, spatial_shapes, starts, mask)
    perturbed = flat.clone()
    perturbed[mask] = torch.randn(int(mask.sum()), 16) * 100
    torch.testing.assert_close(module(query, ref, perturbed, spatial_shapes, starts, mask), out)
    assert not torch.allclose(module(query, ref, perturbed, spatial_shapes, starts), out)
    all_masked = module(query, ref, flat, spatial_shapes, starts, torch.ones(2, 20, dtype=torch.bool))
    torch.testing.assert_close(all_masked, module.output_proj.bias.expand_as(all_masked))


def test_module_gradients_reach_all_projections():
    torch.manual_seed(3)
    module = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2)
    args = level_inputs([(4, 5), (2, 3)], n=1, c=8)
    module(*args).square().sum().backward()
    for name, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        if name != "sampling_offsets.weight":  # still reached, but check below that it is non-zero too
            assert param.grad.abs().sum() > 0, name
    assert module.sampling_offsets.weight.grad.abs().sum() > 0
