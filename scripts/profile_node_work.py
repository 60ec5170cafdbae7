"""Where the node's own work goes at camera resolution: cProfile of the worker's per-frame processing.

The node runs in this process with the deterministic colour-rule engine (dsa_core/perception/testing.py), so the
model costs ~nothing and every frame reaches post-processing, message building and publishing; `dsa_perception.bench_driver`
runs in another process, publishes rgb8 frames at --rate and subscribes to every image output and the alerts, as a
real consumer would. The profile covers only the worker's `_process` (thread CPU), written as the top functions by
own time plus the node's /diagnostics stage medians.

    .venv/bin/python -P scripts/profile_node_work.py --out results/profile_node_work_720p.md
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rclpy
from rclpy.parameter import Parameter


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--domain-id", type=int, default=93)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", type=Path, required=True, help="Markdown report")
    args = p.parse_args()

    from dsa_core.perception.testing import ColourRuleBackend
    from dsa_perception.background_spin import BackgroundSpin, make_executor
    from dsa_perception.node import DsaPerceptionNode

    profile_xml = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_frames.xml"
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile_xml)  # same transport as `dsa bench node`
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    profiler = cProfile.Profile()
    cpu = {"thread_s": 0.0, "frames": 0}

    class ProfiledNode(DsaPerceptionNode):
        def _process(self, batch):  # the worker thread's whole per-batch work, profiled
            c0 = time.thread_time()
            profiler.enable()
            try:
                return super()._process(batch)
            finally:
                profiler.disable()
                cpu["thread_s"] += time.thread_time() - c0
                cpu["frames"] += len(batch)

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=args.domain_id)
    node = ProfiledNode(context=ctx, backend_factory=lambda kind: ColourRuleBackend(), parameter_overrides=[
        Parameter("cameras", value=["front"]), Parameter("camera.front.image_topic", value="/bench/front/image_raw"),
        Parameter("diagnostics_period_s", value=0.5), Parameter("backends", value=["onnxruntime"])])
    executor = make_executor(ctx)
    executor.add_node(node)
    spin = BackgroundSpin(executor).start()
    env = {**os.environ, "ROS_DOMAIN_ID": str(args.domain_id), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        driver_json = Path(tmp) / "driver.json"
        driver = subprocess.run(
            [sys.executable, "-P", "-m", "dsa_perception.bench_driver", "--cameras", "front", "--rate", str(args.rate),
             "--duration", str(args.duration), "--height", str(args.height), "--width", str(args.width),
             "--out", str(driver_json)], env=env, check=False)
        if driver.returncode != 0:
            raise SystemExit(f"bench driver failed ({driver.returncode})")
        result = json.loads(driver_json.read_text())
    diag = node.diagnostics()
    stages = {kv.key: kv.value for s in diag.status if s.name.endswith("camera front") for kv in s.values}
    spin.stop()
    node.destroy_node()
    rclpy.shutdown(context=ctx)

    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.top)
    per_frame = cpu["thread_s"] / max(1, cpu["frames"]) * 1e3
    load = os.getloadavg()
    lines = [f"# The node's own work per {args.width}x{args.height} frame, profiled", "",
             f"Command: `{' '.join([Path(sys.executable).name, '-P'] + sys.argv)}`  ",
             f"Colour-rule engine in place of the model; every image output and the alerts subscribed by the load "
             f"generator (another process); {args.rate} Hz for {args.duration} s; load average at the end "
             f"{[round(x, 2) for x in load]} on {os.cpu_count()} CPUs.", "",
             f"- frames processed by the worker: {cpu['frames']} (sent {sum(len(v) for v in result['sent'].values())})",
             f"- worker thread CPU per frame (engine + mask .. publish): **{per_frame:.1f} ms** "
             "(cProfile's own overhead included)",
             "- /diagnostics medians (wall ms): " + ", ".join(
                 f"{k.split('.')[1]} {v}" for k, v in stages.items() if k.startswith("latency_ms.") and k.endswith(".p50")),
             "", "Top functions by own time (cProfile, worker thread only):", "", "```", text.getvalue().strip(), "```", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines[:10]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
