"""`ros2 launch dsa_perception dsa.launch.py [params_file:=...] [model_dir:=...] [backend:=onnxruntime,torch]
[camera_topics:=front=/cam/front/image_raw,rear=/cam/rear/image_raw] [use_sim_time:=true] [build_only:=true]
[rviz:=true]`

Starts the dsa_perception node with a parameter file (config/dsa.yaml by default; config/vehicle_two_cameras.yaml
shows two cameras). Launch arguments left empty keep the file's values. test/test_launch_contract.py checks, by
parsing this file, that every argument maps onto a parameter the node declares.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "dsa_perception"
EXECUTABLE = "dsa_perception_node"

# launch argument -> node parameter it overrides when non-empty
ARG_TO_PARAM = {
    "model_dir": "model_dir",
    "backend": "backends",  # comma-separated preference list
    "use_sim_time": "use_sim_time",
    "build_only": "build_only",
}
# camera_topics "name=topic,..." overrides camera.<name>.image_topic
CAMERA_TOPIC_PARAM = "image_topic"

ARGUMENTS = [
    ("params_file", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "dsa.yaml"]),
     "node parameter file (/**: ros__parameters:)"),
    ("model_dir", "", "exported model directory (empty: the params file's model_dir)"),
    ("backend", "", "backend preference list, comma-separated, e.g. tensorrt,onnxruntime (empty: params file)"),
    ("camera_topics", "", "image topic per camera, e.g. front=/cam/front/image_raw,rear=/cam/rear/image_raw"),
    ("use_sim_time", "false", "use /clock (bag replay with ros2 bag play --clock)"),
    ("build_only", "false", "create the backend (build / cache the TensorRT engine), then exit"),
    ("rviz", "false", "also start rviz2 with config/dsa.rviz"),
]


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
    for item in filter(None, LaunchConfiguration("camera_topics").perform(context).split(",")):
        camera, _, topic = item.partition("=")
        if not topic:
            raise ValueError(f"camera_topics entries must be name=topic, got {item!r}")
        params[f"camera.{camera.strip()}.{CAMERA_TOPIC_PARAM}"] = topic.strip()
    return params


def _node(context):
    return [Node(package=PACKAGE, executable=EXECUTABLE, name="dsa_perception", output="screen",
                 parameters=[LaunchConfiguration("params_file"), _overrides(context)])]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [
            OpaqueFunction(function=_node),
            Node(package="rviz2", executable="rviz2", name="dsa_rviz", output="screen",
                 arguments=["-d", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "dsa.rviz"])],
                 parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
                 condition=IfCondition(LaunchConfiguration("rviz"))),
        ]
    )
