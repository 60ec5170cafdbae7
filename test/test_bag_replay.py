"""The replay tool's wait for the node: a timeout says what the ROS graph showed (real rclpy, own domain)."""
from __future__ import annotations

import time

import pytest
import rclpy
from rclpy.node import Node
from std_msgs.msg import String

import node_harness  # noqa: F401 - keeps discovery on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE)
from dsa_perception.bag_replay import _topic_types

pytestmark = pytest.mark.ros

DOMAIN_ID = 93


def test_a_replay_that_finds_no_publisher_says_whether_discovery_failed() -> None:
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        replay = Node("dsa_bag_replay", context=context)
        with pytest.raises(TimeoutError) as alone:
            _topic_types(replay, ["/dsa_perception/front/semantic"], 0.3)
        assert "/dsa_perception/front/semantic" in str(alone.value)
        assert f"No other node was discovered on ROS domain {DOMAIN_ID}" in str(alone.value)
        other = Node("dsa_perception", namespace="/", context=context)
        other.create_publisher(String, "/dsa_perception/front/overlay", 1)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and "/dsa_perception/front/overlay" not in dict(
                replay.get_topic_names_and_types()):
            time.sleep(0.05)
        with pytest.raises(TimeoutError) as seen:
            _topic_types(replay, ["/dsa_perception/front/semantic"], 0.3)
        message = str(seen.value)
        assert "nodes ['/dsa_perception']" in message and "/dsa_perception/front/overlay" in message
        assert _topic_types(replay, ["/dsa_perception/front/overlay"], 1.0) == {
            "/dsa_perception/front/overlay": "std_msgs/msg/String"}
    finally:
        rclpy.shutdown(context=context)
