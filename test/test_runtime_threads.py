"""ONNX Runtime threading options reach the session (intra-op threads, allow_spinning) and leave outputs unchanged."""
from __future__ import annotations

import numpy as np

from dsa_core.runtime import create_backend
from dsa_core.runtime.onnxruntime_backend import DEFAULT_ALLOW_SPINNING

from exported_nano import H, W


def test_allow_spinning_and_threads_reach_the_session_and_outputs_are_bit_identical(exported_nano) -> None:
    model_dir = exported_nano.model_dir
    images = np.random.default_rng(7).integers(0, 256, (1, H, W, 3), dtype=np.uint8)
    results = {}
    for spinning in (None, False, True):  # None: the backend's default
        kwargs = {} if spinning is None else {"allow_spinning": spinning}
        backend = create_backend("onnxruntime", model_dir, intra_op_threads=1, **kwargs)
        opts = backend.sessions["fused.onnx"].get_session_options()
        assert opts.intra_op_num_threads == 1
        expected = DEFAULT_ALLOW_SPINNING if spinning is None else spinning
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if expected else "0")
        assert backend.describe()["threads"]["allow_spinning"] is expected
        results[spinning] = backend.infer(images)
    for spinning in (False, True):
        np.testing.assert_array_equal(results[spinning].class_ids, results[None].class_ids)
        np.testing.assert_array_equal(results[spinning].anomaly, results[None].anomaly)


def test_node_parameter_default_is_the_backend_default() -> None:
    import yaml
    from pathlib import Path

    from dsa_core.perception.params import spec_for

    assert spec_for("allow_spinning").default is DEFAULT_ALLOW_SPINNING
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "dsa.yaml").read_text())
    assert config["/**"]["ros__parameters"]["allow_spinning"] is DEFAULT_ALLOW_SPINNING
