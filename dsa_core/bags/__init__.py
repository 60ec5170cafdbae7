"""rosbag2 tools without ROS (rosbags only): synthetic drives, bag writing/reading, replay scoring and reports."""
