"""ONNX op types that TensorRT 10's ONNX parser (onnx-tensorrt) imports natively, and a graph check against them.

Source: the operator support matrix ``docs/operators.md`` of onnx/onnx-tensorrt for the TensorRT 10.x releases
(opset 9..20; the 8.4 matrix plus what later releases added: GridSample (8.5), LayerNormalization (8.6),
Reciprocal, Mod, NonZero, OneHot, Trilu, GroupNormalization, Gelu). Only ops marked "Y" there are listed; ops the
parser rejects (Sequence*, Unique, StringNormalizer, custom domains, ...) are deliberately absent.
Restrictions the matrix attaches (e.g. Resize modes, Conv weights must be initialisers, UINT8 only as network
I/O or Cast) are not checked here: the real parser on a TensorRT machine is the final word.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx

TENSORRT10_ONNX_OPS: frozenset[str] = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "AveragePool",
    "BatchNormalization", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
    "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu",
    "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gelu",
    "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample",
    "GroupNormalization", "GRU", "HardSigmoid", "HardSwish", "Identity", "If", "InstanceNormalization", "IsInf",
    "IsNaN", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LRN", "LSTM",
    "LpNormalization", "LpPool", "MatMul", "Max", "MaxPool", "Mean", "Min", "Mod", "Mul", "Neg", "NonZero",
    "Not", "OneHot", "Or", "Pad", "Pow", "PRelu", "QuantizeLinear", "RandomUniform", "RandomUniformLike", "Range",
    "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
    "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence", "RNN", "Round",
    "Scan", "ScatterElements", "ScatterND", "Selu", "Shape", "Sigmoid", "Sign", "Sin", "Sinh", "Size",
    "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan",
    "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
})


def graph_op_types(model: "onnx.ModelProto | str | Path") -> Counter:
    """Count of every op type in the main graph and all sub-graphs (If/Loop bodies)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    counts: Counter = Counter()

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            counts[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(model.graph)
    return counts


def ops_unsupported_by_tensorrt(model: "onnx.ModelProto | str | Path", plugins: frozenset[str] = frozenset()) -> list[str]:
    """Op types in the graph that TensorRT 10's ONNX parser does not import (custom domains count unless named in
    ``plugins``, the ``domain::op`` types a plugin graph is allowed to hold)."""
    return sorted(op for op in graph_op_types(model) if op not in TENSORRT10_ONNX_OPS and op not in plugins)
