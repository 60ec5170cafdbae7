"""dsa_core/bench/ort_profile.py on the session's exported dsa_nano: ORT's real profiler, node time split by op
type, by part of the model and into deformable-attention glue / projections, checked against the graph itself."""
from __future__ import annotations

import onnx
import pytest

from dsa_core.bench.ort_profile import PARTS, profile_model_dir


def test_profile_shares_add_up_and_match_the_graph(exported_nano) -> None:
    result = profile_model_dir(exported_nano.model_dir, runs=1, threads=1)
    graph = onnx.load(str(exported_nano.model_dir / "fused.onnx")).graph
    scopes = {n.name[: n.name.index("sampling_offsets/")] for n in graph.node if "sampling_offsets/" in n.name}
    assert result["msda_modules"] == len(scopes) > 0
    assert result["size"] == [exported_nano.manifest["input"]["height"], exported_nano.manifest["input"]["width"]]
    assert sum(result["part_share"].values()) == pytest.approx(1.0, abs=1e-3)
    labels = {label for label, _ in PARTS}
    assert set(result["part_share"]) <= labels | {"other (nodes ORT renamed when fusing)"}
    # the deformable attention runs inside the pixel decoder and the adapter: both appear, and its glue is real work
    assert result["part_share"]["pixel decoder (MSDA encoder + FPN)"] > 0
    assert result["part_share"]["adapter (prior, dual streams)"] > 0
    assert 0 < result["msda_glue_share"] < 1 and 0 < result["msda_projection_share"] < 1
    assert result["msda_glue_share"] + result["msda_projection_share"] < 1
    assert "GridSample" in result["msda_glue_by_op_share"]  # the exported formulation samples with GridSample
    assert sum(result["msda_glue_by_op_share"].values()) <= result["msda_glue_share"] + 1e-3
    assert result["op_type_share"]["GridSample"] == pytest.approx(result["msda_glue_by_op_share"]["GridSample"], abs=1e-4)
    assert sum(result["op_type_share"].values()) <= 1 + 1e-3 and result["node_ms_per_run"] > 0
    assert len(result["load1_before_after"]) == 2
