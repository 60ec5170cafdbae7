"""Mask logits to the input size: cropped only when padding was added, and the export has no Slice then."""
from __future__ import annotations

import torch

from dsa_core.model.preprocess import masks_to_input_size


def test_crop_only_with_padding_and_values_are_the_interpolation() -> None:
    masks = torch.randn(1, 4, 8, 16)
    full = torch.nn.functional.interpolate(masks, size=(32, 64), mode="bilinear", align_corners=False)
    same = masks_to_input_size(masks, (32, 64), (32, 64))
    torch.testing.assert_close(same, full, rtol=0, atol=0)
    cropped = masks_to_input_size(masks, (32, 64), (30, 50))
    torch.testing.assert_close(cropped, full[..., :30, :50], rtol=0, atol=0)


def test_no_slice_in_the_exported_graph_without_padding(tmp_path) -> None:
    import onnx

    class Up(torch.nn.Module):
        def __init__(self, original):
            super().__init__()
            self.original = original

        def forward(self, m):
            return masks_to_input_size(m, (32, 64), self.original)

    last = {}
    for original in ((32, 64), (30, 50)):
        path = tmp_path / f"up_{original[0]}.onnx"
        torch.onnx.export(Up(original), (torch.randn(1, 4, 8, 16),), str(path), opset_version=17, dynamo=False)
        graph = onnx.load(str(path)).graph
        last[original] = next(n.op_type for n in graph.node if graph.output[0].name in n.output)
    assert last == {(32, 64): "Resize", (30, 50): "Slice"}  # the output is the Resize itself without padding
