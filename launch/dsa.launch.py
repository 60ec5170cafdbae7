"""`ros2 launch dsa_perception dsa.launch.py [params_file:=...] [use_sim_time:=true]`: start the DSA node."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    params_file = LaunchConfiguration("params_file")
    use_sim_time = LaunchConfiguration("use_sim_time")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([FindPackageShare("dsa_perception"), "config", "dsa.yaml"]),
                description="node parameter file (/**: ros__parameters:)",
            ),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
            Node(
                package="dsa_perception",
                executable="dsa_perception_node",
                name="dsa_perception",
                parameters=[params_file, {"use_sim_time": use_sim_time}],
                output="screen",
            ),
        ]
    )
