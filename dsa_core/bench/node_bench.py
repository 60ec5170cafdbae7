"""`dsa bench node`: the running node under two cameras at 30 Hz; latency, drops, overhead vs model, RSS.

Three processes, like on a vehicle: the node (installed `dsa_perception_node`), a load generator
(`python -m dsa_perception.bench_driver`, publishes and receives over DDS) and this orchestrator, which samples
the node's RSS from /proc and writes results/bench_node.json + .md. No rclpy here: dsa_core stays ROS-free.

Both processes get the shipped large-frame Fast DDS profile (config/fastdds_large_frames.xml) unless
``--dds-profile none``. Two fixed plans:
  --delivery  raw 1280x720 and 1920x1080 rgb8 at 30 Hz, each without and with the profile: the fraction of sent
              frames the node received (results/bench_node_delivery.*)
  --soak      2 cameras x 30 Hz x 1280x720 for --duration (default 300 s): RSS growth, end-to-end latency p50/p99,
              delivered / processed / dropped per camera (results/bench_node_soak.*)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.bench import write_results

log = logging.getLogger(__name__)
SHIPPED_PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_large_frames.xml"
DELIVERY_SIZES = ((720, 1280), (1080, 1920))
#: /diagnostics stages (wall ms) that make up the node's own work per frame; inference and queueing are not.
NODE_WORK_STAGES = ("decode", "mask", "obstacles", "visualization", "message", "publish")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", type=Path, default=None,
                   help="exported model dir; default: export a random-init --preset (timing only, no accuracy)")
    p.add_argument("--preset", default="dsa_nano")
    p.add_argument("--export-size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    p.add_argument("--backends", default="onnxruntime", help="comma-separated backend preference list")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = library default)")
    p.add_argument("--cameras", default="front,rear")
    p.add_argument("--rate", type=float, default=30.0, help="frames per second per camera")
    p.add_argument("--duration", type=float, default=None, help="seconds of load (default 60; see the plans)")
    p.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="camera image size (default 360 640; 720 1280 with --soak)")
    p.add_argument("--alerts-only", action="store_true",
                   help="the load generator listens to the alerts only (image outputs are then skipped by the node)")
    p.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "88")))
    p.add_argument("--dds-profile", default=str(SHIPPED_PROFILE),
                   help="Fast DDS XML profile for the node and the load generator ('none' = Fast DDS defaults)")
    p.add_argument("--note", default="", help="a sentence added to the Markdown summary (e.g. why a run was shortened)")
    plan = p.add_mutually_exclusive_group()
    plan.add_argument("--delivery", action="store_true",
                      help="delivered fraction of raw 720p and 1080p frames at --rate, without and with the profile "
                           "(one run per case, --duration each; default 20 s)")
    plan.add_argument("--soak", action="store_true",
                      help="2 cameras x 30 Hz x 1280x720 for --duration (default 300 s): RSS growth, latency, counts")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (default results/bench_node.json, bench_node_delivery.json with --delivery, "
                        "bench_node_soak.json with --soak); a Markdown summary is written next to it (.md)")


def _node_executable() -> list[str]:
    installed = Path(sys.prefix) / "lib" / "dsa_perception" / "dsa_perception_node"
    if installed.exists():
        return [sys.executable, "-P", str(installed)]
    found = shutil.which("dsa_perception_node")
    if not found:
        raise FileNotFoundError("dsa_perception_node is not installed (scripts/build_ros_interfaces.sh or colcon build)")
    return [found]


def _tree_rss_mb(pid: int) -> float:
    """RSS of ``pid`` and its descendants (MiB), from /proc."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024.0


def _rss_parts_mb(pid: int) -> dict[str, float]:
    """The node process's RSS split (MiB): anonymous (heap: where a leak shows), file-backed, shared memory (the
    DDS shared-memory segments of the publishers it maps, which fill up as frames cycle through them)."""
    out = {"anon": 0.0, "file": 0.0, "shmem": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = {"RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}.get(line.split(":")[0] + ":")
            if key:
                out[key] = int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def _steady(samples: list[float]) -> float:
    """Median of the last third minus median of the middle third: growth that goes on after the warm-up steps
    (allocator arenas, engine buffers), which a straight-line trend over the whole run mixes in."""
    n = len(samples) // 3
    return float(np.median(samples[2 * n:]) - np.median(samples[n:2 * n])) if n else float("nan")


def soak_memory(r: dict[str, Any]) -> None:
    """Adds the soak's memory figures to a run summary (also usable on a stored JSON to re-render it)."""
    samples = r["rss_mb"]["samples_1hz"]
    r["rss_mb"]["growth"] = (samples[-1] - samples[0]) if samples else float("nan")
    r["rss_mb"]["slope_mib_per_min"] = _trend(samples)
    r["rss_mb"]["steady_growth"] = _steady(samples)
    r["rss_parts_trend_mib_per_min"] = {k: _trend(v) for k, v in r["rss_parts_mb_1hz"].items()}
    r["rss_parts_steady_growth_mib"] = {k: _steady(v) for k, v in r["rss_parts_mb_1hz"].items()}


def _trend(samples: list[float]) -> float:
    """Least-squares slope of 1 Hz samples, per minute."""
    return float(np.polyfit(np.arange(len(samples)) / 60.0, samples, 1)[0]) if len(samples) >= 2 else float("nan")


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    a = np.asarray(values, float)
    return {"count": int(a.size), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def _export(preset: str, size: tuple[int, int], out: Path) -> None:
    import torch

    from dsa_core import build_model
    from dsa_core.export.onnx_export import export_model_dir

    torch.manual_seed(0)
    export_model_dir(build_model(preset).eval(), out, size[0], size[1], batch=1, graphs=("fused",))


def _summarise(driver: dict[str, Any], rss: list[tuple[float, float]], config: dict[str, Any]) -> dict[str, Any]:
    cams = driver["cameras"]
    per_cam, all_lat = {}, []
    for c in cams:
        sent = driver["sent"][c]
        answered = dict((int(k), int(v)) for k, v in driver["answered"][c])
        lat = [(answered[s] - s) / 1e6 for s in sent if s in answered]
        all_lat += lat
        per_cam[c] = {"sent": len(sent), "answered": len(lat), "not_answered": len(sent) - len(lat),
                      "answered_rate_hz": len(lat) / driver["publish_wall_s"], "end_to_end_ms": _percentiles(lat)}
    last = driver["diagnostics"][-1]["status"] if driver["diagnostics"] else {}
    node_side = {}
    for c in cams:
        st = last.get(f"dsa_perception: camera {c}", {})
        stages = {}
        for key, value in st.items():
            if key.startswith("latency_ms."):
                _, stage, stat = key.split(".")
                stages.setdefault(stage, {})[stat] = float(value)
        node_side[c] = {"received": int(st.get("received", 0)), "processed": int(st.get("processed", 0)),
                        "dropped_overwritten": int(st.get("dropped", 0)), "rejected": int(st.get("rejected", 0)),
                        "stage_ms_last_300": stages}
    backend = last.get("dsa_perception: backend", {})
    overhead = {}
    for c in cams:
        stages = node_side[c]["stage_ms_last_300"]
        if "node" in stages and "inference" in stages:
            work = sum(stages[k]["p50"] for k in NODE_WORK_STAGES if k in stages)
            overhead[c] = {"node_p50_ms": stages["node"]["p50"], "inference_p50_ms": stages["inference"]["p50"],
                           "overhead_p50_ms": stages["node"]["p50"] - stages["inference"]["p50"],
                           "queue_p50_ms": stages.get("queue", {}).get("p50", float("nan")),
                           "node_work_p50_ms": work,  # the NODE_WORK_STAGES, wall
                           # the worker thread's CPU time for mask .. publish: what the node's own work costs when the
                           # machine is busy with something else (wall times then include waiting for a core)
                           "node_work_cpu_p50_ms": stages.get("own_cpu", {}).get("p50", float("nan")),
                           "model_share_p50": stages["inference"]["p50"] / stages["node"]["p50"]}
    rss_mb = [r for _, r in rss]
    return {"config": config, "machine": {"cpu_count": os.cpu_count(), "load_average_end": list(os.getloadavg()),
                                          "python": platform.python_version()},
            "backend": {"name": backend.get("backend"), "state": backend.get("state"),
                        "events": backend.get("events")},
            "end_to_end_ms_all": _percentiles(all_lat), "per_camera": per_cam, "node": node_side,
            "overhead": overhead, "image_outputs_received": driver.get("image_outputs_received", {}),
            "rss_mb": {"start": rss_mb[0] if rss_mb else None, "end": rss_mb[-1] if rss_mb else None,
                       "max": max(rss_mb) if rss_mb else None, "samples_1hz": [round(r, 1) for r in rss_mb]},
            "node_counts": driver.get("node_counts", {})}


def _markdown(r: dict[str, Any]) -> str:
    c = r["config"]
    lines = [
        "# `dsa bench node`",
        "",
        f"Command: `{c['command']}`  ",
        f"Model: {c['model']} (export size {c['export_size']}), backend **{r['backend']['name']}** "
        f"({r['backend']['state']}), device {c['device']}, threads {c['threads']}.  ",
        f"Load: {len(c['cameras'])} cameras x {c['rate']} Hz, {c['image_size'][1]}x{c['image_size'][0]} rgb8, "
        f"{c['duration']} s, publisher in a separate process; machine {r['machine']['cpu_count']} CPUs (shared; "
        f"load average at end {[round(x, 2) for x in r['machine']['load_average_end']]}). "
        f"Subscribed outputs: {'alerts only' if c['alerts_only'] else 'alerts and all five image outputs'}.",
        "",
        "| camera | sent | answered | answered Hz | received by node | processed | dropped (overwritten) | "
        "e2e p50 ms | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cam, pc in r["per_camera"].items():
        n, e = r["node"][cam], pc["end_to_end_ms"]
        lines.append(f"| {cam} | {pc['sent']} | {pc['answered']} | {pc['answered_rate_hz']:.2f} | {n['received']} | "
                     f"{n['processed']} | {n['dropped_overwritten']} | {e.get('p50', float('nan')):.1f} | "
                     f"{e.get('p90', float('nan')):.1f} | {e.get('p99', float('nan')):.1f} | {e.get('max', float('nan')):.1f} |")
    lines += ["", "Node stages (last 300 frames per camera, from /diagnostics), ms p50 / p95:", ""]
    for cam, n in r["node"].items():
        parts = [f"{s} {v['p50']:.1f}/{v['p95']:.1f}" for s, v in n["stage_ms_last_300"].items()]
        lines.append(f"- {cam}: " + ", ".join(parts))
    lines += ["", "Node overhead vs model (p50): "
              + "; ".join(f"{cam}: node {o['node_p50_ms']:.1f} ms = inference {o['inference_p50_ms']:.1f} ms "
                          f"({o['model_share_p50']:.0%}) + overhead {o['overhead_p50_ms']:.1f} ms, of which waiting "
                          f"for the busy worker {o['queue_p50_ms']:.1f} ms and the node's own work ({', '.join(NODE_WORK_STAGES)}) "
                          f"{o['node_work_p50_ms']:.1f} ms wall, {o.get('node_work_cpu_p50_ms', float('nan')):.1f} ms "
                          f"worker-thread CPU (mask to publish)"
                          for cam, o in r["overhead"].items()),
              "",
              f"RSS of the node process during the measured period (MiB): start {r['rss_mb']['start']:.0f}, end {r['rss_mb']['end']:.0f}, "
              f"max {r['rss_mb']['max']:.0f}; 1 Hz samples in the JSON.",
              "",
              "Notes: end-to-end (table) = arrival of the camera's ObstacleAlert at the load generator minus the image "
              "stamp (same clock); it includes the load generator's own receive queueing, which is large when the "
              "machine is overloaded. The node-side 'end_to_end' stage (node clock at publish minus stamp) excludes "
              "it. Frames are not answered when a newer frame of the same camera overwrote them before "
              "the worker was free (counted by the node as dropped) or when the best-effort transport dropped them. "
              "'inference' includes the backend's resize to the export size and back.", ""]
    return "\n".join(lines)


def _profile(text: str) -> Path | None:
    if text.strip().lower() in ("", "none"):
        return None
    path = Path(text).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"--dds-profile {text}: no such file")
    return path


def _measure(args: argparse.Namespace, model_dir: Path, manifest: dict[str, Any], tmp: Path, cams: list[str],
             image_size: tuple[int, int], duration: float, profile: Path | None, tag: str) -> dict[str, Any]:
    """One run: start the node and the load generator, sample the node's RSS, summarise."""
    env = {**os.environ, "ROS_DOMAIN_ID": str(args.domain_id), "PYTHONUNBUFFERED": "1",
           "ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")}
    for var in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        env.pop(var, None)
    if profile is not None:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    ros_args = ["--ros-args", "-p", f"cameras:=[{','.join(cams)}]", "-p", f"model_dir:={model_dir}",
                "-p", f"backends:=[{args.backends}]", "-p", f"device:={args.device}",
                "-p", f"precision:={args.precision}", "-p", f"inference_threads:={args.threads}",
                "-p", "diagnostics_period_s:=0.5"]
    for c in cams:
        ros_args += ["-p", f"camera.{c}.image_topic:=/bench/{c}/image_raw", "-p", f"camera.{c}.rate_hz:={args.rate}"]
    node_log = tmp / f"node_{tag}.log"
    driver_json = tmp / f"driver_{tag}.json"
    with open(node_log, "w") as node_out:
        node = subprocess.Popen(_node_executable() + ros_args, env=env, stdout=node_out, stderr=subprocess.STDOUT,
                                cwd="/")
        driver = subprocess.Popen(
            [sys.executable, "-P", "-m", "dsa_perception.bench_driver", "--cameras", ",".join(cams),
             "--rate", str(args.rate), "--duration", str(duration), "--height", str(image_size[0]),
             "--width", str(image_size[1]), "--out", str(driver_json)]
            + (["--alerts-only"] if args.alerts_only else []), env=env, cwd="/")
        rss: list[tuple[float, float]] = []
        parts: list[dict[str, float]] = []
        t0 = time.monotonic()
        try:
            while driver.poll() is None:
                if node.poll() is not None:
                    raise RuntimeError(f"the node exited with {node.returncode}; log: {node_log}")
                if driver_json.with_suffix(".started").exists():  # after warm-up: the measured period
                    rss.append((time.monotonic() - t0, _tree_rss_mb(node.pid)))
                    parts.append(_rss_parts_mb(node.pid))
                time.sleep(1.0)
        finally:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill()
            if driver.poll() is None:
                driver.kill()
    if driver.returncode != 0:
        raise RuntimeError(f"bench driver failed with {driver.returncode}; node log: {node_log}")
    config = {"command": _command(args),
              "model": manifest.get("model_name"), "export_size": [manifest["input"]["height"], manifest["input"]["width"]],
              "device": args.device, "threads": args.threads, "cameras": cams, "rate": args.rate,
              "duration": duration, "image_size": list(image_size), "backends": args.backends,
              "alerts_only": args.alerts_only, "dds_profile": str(profile) if profile else None}
    log.info("node log: %s", node_log)
    report = _summarise(json.loads(driver_json.read_text()), rss, config)
    report["rss_parts_mb_1hz"] = {k: [round(p[k], 1) for p in parts] for k in ("anon", "file", "shmem")}
    return report


def _command(args: argparse.Namespace) -> str:
    parts = ["dsa bench node"]
    for k, v in vars(args).items():
        if k in ("func", "benchmark") or v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        parts.append(flag if v is True else f"{flag} {' '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}")
    return " ".join(parts)


def _delivery_markdown(runs: list[dict[str, Any]], note: str) -> str:
    lines = ["# `dsa bench node --delivery`: raw frames that reach the node", "",
             f"Command: `{runs[0]['config']['command']}`  ",
             f"Each row: one camera publishing rgb8 at {runs[0]['config']['rate']} Hz for "
             f"{runs[0]['config']['duration']} s into the running node (separate processes, best-effort QoS, depth 1); "
             "delivered = frames the node's subscription received / frames sent, from the node's own counters.",
             "", "| image | Fast DDS profile | sent | received by the node | delivered | processed | dropped (overwritten) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        h, w = r["config"]["image_size"]
        for cam, d in r["delivery"].items():
            lines.append(f"| {w}x{h} | {'config/fastdds_large_frames.xml' if r['config']['dds_profile'] else 'default'} "
                         f"| {d['sent']} | {d['received']} | {d['delivered_fraction']:.1%} | {d['processed']} | "
                         f"{d['dropped']} |")
    lines += ["", note, ""]
    return "\n".join(lines)


def _soak_markdown(r: dict[str, Any], note: str) -> str:
    c, rss = r["config"], r["rss_mb"]
    lines = [f"# `dsa bench node --soak`: {len(c['cameras'])} cameras x {c['rate']} Hz x "
             f"{c['image_size'][1]}x{c['image_size'][0]} for {c['duration']:g} s", "",
             f"Command: `{c['command']}`  ",
             f"Model {c['model']} (export size {c['export_size']}), backend {r['backend']['name']} "
             f"({r['backend']['state']}), DDS profile {c['dds_profile'] or 'Fast DDS defaults'}; machine "
             f"{r['machine']['cpu_count']} CPUs, load average at the end {[round(x, 2) for x in r['machine']['load_average_end']]}.",
             "", "| camera | sent | received (delivered) | processed | dropped (overwritten) | rejected | answered | "
             "e2e p50 ms | e2e p99 ms |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cam, d in r["delivery"].items():
        e = r["per_camera"][cam]["end_to_end_ms"]
        lines.append(f"| {cam} | {d['sent']} | {d['received']} ({d['delivered_fraction']:.1%}) | {d['processed']} | "
                     f"{d['dropped']} | {d['rejected']} | {r['per_camera'][cam]['answered']} | "
                     f"{e.get('p50', float('nan')):.0f} | {e.get('p99', float('nan')):.0f} |")
    lines += ["", f"RSS of the node (MiB): start {rss['start']:.0f}, end {rss['end']:.0f}, max {rss['max']:.0f}, "
              f"growth {rss['growth']:+.1f} MiB, linear trend {rss['slope_mib_per_min']:+.2f} MiB/min over the "
              f"measured period, last third vs middle third {rss['steady_growth']:+.1f} MiB (1 Hz samples in the "
              "JSON)."]
    parts = r.get("rss_parts_mb_1hz", {})
    if parts.get("anon"):
        lines.append("Of it: " + ", ".join(
            f"{name} {v[0]:.0f} -> {v[-1]:.0f} MiB (trend {r['rss_parts_trend_mib_per_min'][k]:+.2f} MiB/min, "
            f"last third vs middle third {r['rss_parts_steady_growth_mib'][k]:+.1f} MiB)"
            for k, name, v in (("anon", "anonymous (heap)", parts["anon"]), ("shmem", "shared memory (DDS segments "
                               "mapped from the publisher)", parts["shmem"]), ("file", "file-backed", parts["file"])))
            + ". A leak shows in the anonymous part; shared memory grows until the publisher's segment has been "
              "cycled through once.")
    lines += ["", note, ""]
    return "\n".join(lines)


def _delivery(r: dict[str, Any], driver_counts: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    out = {}
    for cam, pc in r["per_camera"].items():
        n = driver_counts.get(cam, {})
        sent = pc["sent"]
        out[cam] = {"sent": sent, "received": n.get("received", 0), "processed": n.get("processed", 0),
                    "dropped": n.get("dropped", 0), "rejected": n.get("rejected", 0),
                    "delivered_fraction": n.get("received", 0) / sent if sent else float("nan")}
    return out


def run(args: argparse.Namespace) -> int:
    cams = [c for c in args.cameras.split(",") if c]
    if args.delivery:
        args.alerts_only = True  # input transport only: the node publishes no image outputs
    duration = args.duration if args.duration is not None else (300.0 if args.soak else 20.0 if args.delivery else 60.0)
    image_size = tuple(args.image_size) if args.image_size else ((720, 1280) if args.soak else (360, 640))
    out = args.out or Path("results/bench_node_soak.json" if args.soak else
                           "results/bench_node_delivery.json" if args.delivery else "results/bench_node.json")
    profile = _profile(args.dds_profile)
    tmp = Path(tempfile.mkdtemp(prefix="dsa_bench_node_"))
    # absolute: the node runs in its own working directory
    model_dir = None if args.model_dir is None else Path(args.model_dir).resolve()
    if model_dir is None:
        model_dir = tmp / "model"
        log.info("exporting a random-init %s at %s into %s (timing only)", args.preset, args.export_size, model_dir)
        _export(args.preset, tuple(args.export_size), model_dir)
    manifest = json.loads((Path(model_dir) / "manifest.json").read_text())
    note = (f"Machine: {os.cpu_count()} CPUs, shared with other jobs while this ran (load average at the start "
            f"{[round(x, 2) for x in os.getloadavg()]}).") + (f" {args.note}" if args.note else "")
    if args.delivery:
        runs = []
        for size in DELIVERY_SIZES:
            for prof in (None, profile or SHIPPED_PROFILE):
                tag = f"{size[1]}x{size[0]}_{'profile' if prof else 'default'}"
                log.info("delivery run %s", tag)
                r = _measure(args, model_dir, manifest, tmp, cams[:1], size, duration, prof, tag)
                r["delivery"] = _delivery(r, r.pop("node_counts"))
                runs.append(r)
        write_results(out, {"runs": runs}, _delivery_markdown(runs, note))
        return 0
    r = _measure(args, model_dir, manifest, tmp, cams, image_size, duration, profile, "run")
    r["delivery"] = _delivery(r, r.pop("node_counts"))
    if args.soak:
        soak_memory(r)
        if duration < 300:
            note += (f" Shortened run: {duration:g} s instead of the plan's 300 s (pass --duration 300 for the full "
                     "soak).")
        write_results(out, r, _soak_markdown(r, note))
        return 0
    write_results(out, r, _markdown(r))
    return 0
