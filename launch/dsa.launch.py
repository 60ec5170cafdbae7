"""`ros2 launch dsa_perception dsa.launch.py [params_file:=...] [model_dir:=...] [backend:=onnxruntime,torch]
[camera_topic:=/camera/front/image_raw] [camera_topics:=front=/cam/front/image_raw,rear=/cam/rear/image_raw]
[use_sim_time:=true] [build_only:=true] [rviz:=true] [rviz_fixed_frame:=FRAME] [lifecycle:=true]
[large_frame_dds:=false]`

Replaying a synthetic drive (`dsa synth bag`, topics under /camera/front/):
`ros2 bag play drive_bag --clock` next to
`ros2 launch dsa_perception dsa.launch.py camera_topic:=/camera/front/image_raw use_sim_time:=true rviz:=true`.

Starts the dsa_perception node with a parameter file (config/dsa.yaml by default; config/vehicle_two_cameras.yaml
shows two cameras). Launch arguments left empty keep the file's values. test/test_launch_contract.py checks, by
parsing this file, that every argument maps onto a parameter the node declares.

DDS: unless large_frame_dds:=false, every process started after this point (the node, rviz, and camera drivers
of a launch file that includes this one after its own environment actions) gets the shipped large-frame DDS
configuration (config/fastdds_large_frames.xml, config/cyclonedds_large_frames.xml); a variable already set in the
environment wins. Without it, default Fast DDS loses most raw 720p/1080p frames (results/bench_node_delivery.md).
"""
import os
import tempfile
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "dsa_perception"
EXECUTABLE = "dsa_perception_node"
LIFECYCLE_EXECUTABLE = "dsa_perception_lifecycle_node"

# launch argument -> node parameter it overrides when non-empty
ARG_TO_PARAM = {
    "model_dir": "model_dir",
    "backend": "backends",  # comma-separated preference list
    "use_sim_time": "use_sim_time",
    "build_only": "build_only",
}
# camera_topics "name=topic,..." overrides camera.<name>.image_topic
CAMERA_TOPIC_PARAM = "image_topic"
# camera_topic TOPIC: the image topic of camera CAMERA_TOPIC_CAMERA, plus its CameraInfo at <TOPIC's namespace>/camera_info
CAMERA_TOPIC_CAMERA = "front"
CAMERA_INFO_PARAM = "camera_info_topic"
FASTDDS_PROFILE = "fastdds_large_frames.xml"
CYCLONEDDS_CONFIG = "cyclonedds_large_frames.xml"

ARGUMENTS = [
    ("params_file", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "dsa.yaml"]),
     "node parameter file (/**: ros__parameters:)"),
    ("model_dir", "", "exported model directory (empty: the params file's model_dir)"),
    ("backend", "", "backend preference list, comma-separated, e.g. tensorrt,onnxruntime (empty: params file)"),
    ("camera_topic", "", "image topic of camera front, e.g. /camera/front/image_raw (dsa synth bag's); its CameraInfo "
     "is taken from the same namespace (/camera/front/camera_info)"),
    ("camera_topics", "", "image topic per camera, e.g. front=/cam/front/image_raw,rear=/cam/rear/image_raw"),
    ("use_sim_time", "false", "use /clock (bag replay with ros2 bag play --clock)"),
    ("build_only", "false", "create the backend (build / cache the TensorRT engine), then exit"),
    ("rviz", "false", "also start rviz2 with config/dsa.rviz"),
    ("rviz_fixed_frame", "", "RViz fixed frame (empty: config/dsa.rviz's camera_front_optical_frame, the frame of "
     "dsa synth bag; give your camera's frame_id, or base_link with a TF tree)"),
    ("lifecycle", "false", "start the managed variant dsa_perception_lifecycle_node (unconfigured; configure loads "
     "the model, activate subscribes and publishes)"),
    ("large_frame_dds", "true", "point Fast DDS / CycloneDDS at the shipped large-frame configs (config/*.xml)"),
]


def dds_environment(environ: dict, config_dir: str) -> dict:
    """Environment variables that select the shipped DDS configs, leaving alone what the user already set.

    Fast DDS 3 (Jazzy and newer) reads FASTDDS_DEFAULT_PROFILES_FILE; Fast DDS 2 (Humble, Iron) reads
    FASTRTPS_DEFAULT_PROFILES_FILE. Either one set by the user counts as the user's choice.
    """
    out = {}
    profile = os.path.join(config_dir, FASTDDS_PROFILE)
    if not (environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or environ.get("FASTRTPS_DEFAULT_PROFILES_FILE")):
        out["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
        if environ.get("ROS_DISTRO", "") in ("humble", "iron"):
            out["FASTRTPS_DEFAULT_PROFILES_FILE"] = profile
    if not environ.get("CYCLONEDDS_URI"):
        out["CYCLONEDDS_URI"] = "file://" + os.path.join(config_dir, CYCLONEDDS_CONFIG)
    return out


def camera_topic_params(topic: str) -> dict:
    """camera_topic:=TOPIC -> camera front's image topic and the CameraInfo beside it (the camera driver convention:
    image_raw and camera_info share a namespace; a .../image_raw/compressed topic selects the compressed transport)."""
    if not topic.startswith("/"):
        raise ValueError(f"camera_topic must be an absolute topic like /camera/front/image_raw, got {topic!r}")
    image = topic[: -len("/compressed")] if topic.endswith("/compressed") else topic
    prefix = f"camera.{CAMERA_TOPIC_CAMERA}."
    params = {prefix + CAMERA_TOPIC_PARAM: topic, prefix + CAMERA_INFO_PARAM: image.rsplit("/", 1)[0] + "/camera_info"}
    if topic.endswith("/compressed"):
        params[prefix + "transport"] = "compressed"
    return params


def rviz_config_text(text: str, fixed_frame: str) -> str:
    """config/dsa.rviz with another fixed frame (a real camera's frame_id, or base_link where a TF tree exists)."""
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.strip().startswith("Fixed Frame:")]
    if len(hits) != 1:
        raise ValueError(f"expected one 'Fixed Frame:' line in the RViz config, found {len(hits)}")
    indent = lines[hits[0]][: len(lines[hits[0]]) - len(lines[hits[0]].lstrip())]
    lines[hits[0]] = f"{indent}Fixed Frame: {fixed_frame}\n"
    return "".join(lines)


def _rviz(context):
    config = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "dsa.rviz"]).perform(context)
    frame = LaunchConfiguration("rviz_fixed_frame").perform(context).strip()
    if frame:
        fd, path = tempfile.mkstemp(prefix="dsa_fixed_frame_", suffix="_" + Path(config).name)
        with os.fdopen(fd, "w") as out:
            out.write(rviz_config_text(Path(config).read_text(), frame))
        config = path
    return [Node(package="rviz2", executable="rviz2", name="dsa_rviz", output="screen", arguments=["-d", config],
                 parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}])]


def _dds(context):
    if LaunchConfiguration("large_frame_dds").perform(context).strip().lower() not in ("1", "true", "yes"):
        return [LogInfo(msg="large_frame_dds:=false: DDS left at its defaults")]
    config_dir = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"]).perform(context)
    env = dds_environment(dict(os.environ), config_dir)
    return [SetEnvironmentVariable(name, value) for name, value in env.items()] + [
        LogInfo(msg="DDS for large frames: " + (", ".join(f"{k}={v}" for k, v in env.items()) or "user settings kept"))]


def _overrides(context) -> dict:
    """Parameter overrides from the non-empty launch arguments."""
    values = {arg: LaunchConfiguration(arg).perform(context) for arg in ARG_TO_PARAM}
    params = {}
    for arg, param in ARG_TO_PARAM.items():
        text = values[arg].strip()
        if not text:
            continue
        if param == "backends":
            params[param] = [k.strip() for k in text.split(",") if k.strip()]
        elif param in ("use_sim_time", "build_only"):
            params[param] = text.lower() in ("1", "true", "yes")
        else:
            params[param] = text
    single = LaunchConfiguration("camera_topic").perform(context).strip()
    if single:
        params.update(camera_topic_params(single))
    for item in filter(None, LaunchConfiguration("camera_topics").perform(context).split(",")):
        camera, _, topic = item.partition("=")
        if not topic:
            raise ValueError(f"camera_topics entries must be name=topic, got {item!r}")
        params[f"camera.{camera.strip()}.{CAMERA_TOPIC_PARAM}"] = topic.strip()
    return params


def _node(context):
    parameters = [LaunchConfiguration("params_file"), _overrides(context)]
    if LaunchConfiguration("lifecycle").perform(context).strip().lower() in ("1", "true", "yes"):
        # starts unconfigured: `ros2 lifecycle set /dsa_perception configure`, then `activate` (or a lifecycle manager)
        return [LifecycleNode(package=PACKAGE, executable=LIFECYCLE_EXECUTABLE, name="dsa_perception", namespace="",
                              output="screen", parameters=parameters)]
    return [Node(package=PACKAGE, executable=EXECUTABLE, name="dsa_perception", output="screen",
                 parameters=parameters)]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [
            OpaqueFunction(function=_dds),  # before every process, so all of them inherit it
            OpaqueFunction(function=_node),
            OpaqueFunction(function=_rviz, condition=IfCondition(LaunchConfiguration("rviz"))),
        ]
    )
