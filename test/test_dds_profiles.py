"""Issue 13: camera frames that arrive. The shipped Fast DDS profile is parsed by Fast DDS itself and makes raw 720p
frames at 30 Hz reach a best-effort reader in another process (with the default transports almost none did); the
launch file points every process it starts at the shipped DDS configs unless the user chose others.

launch / launch_ros cannot be installed here: the launch file's pure ``dds_environment`` function is read with
``ast`` and run as written."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
FASTDDS = REPO / "config" / "fastdds_large_frames.xml"
CYCLONE = REPO / "config" / "cyclonedds_large_frames.xml"
LAUNCH = REPO / "launch" / "dsa.launch.py"

PUBSUB = textwrap.dedent("""
    import json, sys, time
    import numpy as np, rclpy
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    role, h, w, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    rclpy.init()
    node = Node("dds_probe_" + role)
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    if role == "sub":
        got, last = [0], [0.0]

        def on_image(msg):
            got[0] += 1
            last[0] = time.monotonic()

        node.create_subscription(Image, "/dds_probe/image", on_image, qos)
        print("ready", flush=True)
        deadline = time.monotonic() + seconds + 20  # the publisher waits for discovery, then sends for `seconds`
        while got[0] < int(seconds * 30) and time.monotonic() < deadline:
            if got[0] and time.monotonic() - last[0] > 4.0:
                break  # the stream is over
            rclpy.spin_once(node, timeout_sec=0.1)
        print(json.dumps({"received": got[0]}), flush=True)
    else:
        pub = node.create_publisher(Image, "/dds_probe/image", qos)
        while pub.get_subscription_count() == 0:
            time.sleep(0.05)
        time.sleep(1.0)
        msg = Image(height=h, width=w, encoding="rgb8", step=w * 3)
        msg.data = np.random.default_rng(0).integers(0, 256, h * w * 3, dtype=np.uint8).tobytes()
        n, t0 = int(seconds * 30), time.monotonic()
        for i in range(n):
            time.sleep(max(0.0, t0 + i / 30 - time.monotonic()))
            pub.publish(msg)
        print(json.dumps({"sent": n}), flush=True)
        time.sleep(3.0)
    node.destroy_node()
    rclpy.shutdown()
""")


def _env(domain: int, profile: Path | None) -> dict[str, str]:
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "PYTHONUNBUFFERED": "1"}
    for var in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        env.pop(var, None)
    if profile is not None:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return env


def _deliver(tmp_path: Path, domain: int, profile: Path | None, h: int = 720, w: int = 1280,
             seconds: float = 3.0) -> tuple[int, int, str]:
    """(sent, received, stderr of both) for raw rgb8 frames at 30 Hz between two processes."""
    script = tmp_path / "pubsub.py"
    script.write_text(PUBSUB)
    env = _env(domain, profile)
    sub = subprocess.Popen([sys.executable, "-P", str(script), "sub", str(h), str(w), str(seconds)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert sub.stdout.readline().strip() == "ready"
    pub = subprocess.run([sys.executable, "-P", str(script), "pub", str(h), str(w), str(seconds)], env=env,
                         capture_output=True, text=True, timeout=120)
    out, err = sub.communicate(timeout=120)
    return json.loads(pub.stdout.strip().splitlines()[-1])["sent"], json.loads(out.strip().splitlines()[-1])["received"], \
        pub.stderr + err


def test_fast_dds_parses_the_shipped_profile_and_refuses_a_broken_copy(tmp_path: Path) -> None:
    probe = ("import rclpy; from rclpy.node import Node; from sensor_msgs.msg import Image; rclpy.init(); "
             "n = Node('profile_probe'); n.create_publisher(Image, '/x', 1); n.destroy_node(); rclpy.shutdown()")
    ok = subprocess.run([sys.executable, "-P", "-c", probe], env=_env(77, FASTDDS), capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0 and "XMLPARSER" not in ok.stderr + ok.stdout, ok.stderr
    broken = tmp_path / "broken.xml"
    broken.write_text(FASTDDS.read_text().replace("<segment_size>", "<segment_sise>").replace("</segment_size>",
                                                                                               "</segment_sise>"))
    bad = subprocess.run([sys.executable, "-P", "-c", probe], env=_env(77, broken), capture_output=True, text=True,
                         timeout=60)
    assert "XMLPARSER" in bad.stderr and "segment_sise" in bad.stderr  # the check above can see a bad profile


def test_raw_720p_frames_at_30_hz_arrive_with_the_shipped_profile(tmp_path: Path) -> None:
    sent, received, err = _deliver(tmp_path, 78, FASTDDS)
    assert sent == 90 and received >= 0.8 * sent, (sent, received, err[-2000:])


def test_the_profile_is_sized_for_4k_frames() -> None:
    root = ET.parse(FASTDDS).getroot()
    ns = {"p": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    shm = [t for t in root.iterfind(".//p:transport_descriptor", ns) if t.findtext("p:type", namespaces=ns) == "SHM"]
    assert len(shm) == 1
    segment = int(shm[0].findtext("p:segment_size", namespaces=ns))
    assert segment >= 4 * 3840 * 2160 * 3  # several 4K UHD rgb8 frames in flight
    participant = root.find(".//p:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iterfind(".//p:userTransports/p:transport_id", ns)]
    assert shm[0].findtext("p:transport_id", namespaces=ns) in used
    assert participant.findtext(".//p:useBuiltinTransports", namespaces=ns) == "false"


def test_cyclonedds_config_is_well_formed_and_raises_the_receive_buffer() -> None:
    root = ET.parse(CYCLONE).getroot()
    ns = {"c": "https://cdds.io/config"}
    assert root.tag == "{https://cdds.io/config}CycloneDDS"
    buf = root.find("c:Domain/c:Internal/c:SocketReceiveBufferSize", ns)
    assert buf is not None and buf.get("min", "").endswith("MB") and int(buf.get("min")[:-2]) >= 16


def _launch_function(name: str):
    from test_launch_contract import _module_constants

    tree = ast.parse(LAUNCH.read_text())
    constants = _module_constants(tree)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    namespace = {"os": os, **constants}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(LAUNCH), "exec"), namespace)
    return namespace[name], tree


def test_launch_points_every_process_at_the_shipped_dds_configs() -> None:
    dds_environment, tree = _launch_function("dds_environment")
    config = str(REPO / "config")
    env = dds_environment({"ROS_DISTRO": "kilted"}, config)
    assert env == {"FASTDDS_DEFAULT_PROFILES_FILE": str(FASTDDS), "CYCLONEDDS_URI": f"file://{CYCLONE}"}
    assert Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()
    humble = dds_environment({"ROS_DISTRO": "humble"}, config)  # Fast DDS 2 reads the older variable name
    assert humble["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(FASTDDS)
    # the user's own choices win
    assert dds_environment({"FASTRTPS_DEFAULT_PROFILES_FILE": "/mine.xml", "CYCLONEDDS_URI": "file:///c.xml"},
                           config) == {}
    # the environment actions come before every process of the launch description
    gen = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description")
    calls = sorted((c for c in ast.walk(gen) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "OpaqueFunction"),
                   key=lambda c: (c.lineno, c.col_offset))
    functions = [kw.value.id for c in calls for kw in c.keywords if kw.arg == "function"]
    assert functions[0] == "_dds" and {"_node", "_rviz"} <= set(functions[1:]), functions  # processes after it
    assert "large_frame_dds" in LAUNCH.read_text()


@pytest.mark.parametrize("name", ["fastdds_large_frames.xml", "cyclonedds_large_frames.xml"])
def test_the_configs_are_installed_with_the_package(name: str) -> None:
    assert "install(DIRECTORY launch config DESTINATION share/${PROJECT_NAME})" in (REPO / "CMakeLists.txt").read_text()
    assert 'glob("config/*")' in (REPO / "setup.py").read_text()
    assert (REPO / "config" / name).is_file()
