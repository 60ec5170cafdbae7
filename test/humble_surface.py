"""pytest plugin (``-p humble_surface``): remove from the real rclpy the Node methods that Humble (rclpy 3.3) lacks,
before any test module imports the node, so node tests run against the Humble API surface.

Used by test/test_distro_compat.py, which runs test_node.py under it in a subprocess. The list holds the APIs
added in Iron or later that a node could reach for; the node must run without every one of them.
"""
from __future__ import annotations

from rclpy.node import Node

POST_HUMBLE_NODE_METHODS = (
    "add_pre_set_parameters_callback",  # Iron
    "add_post_set_parameters_callback",  # Iron
    "remove_pre_set_parameters_callback",  # Iron
    "remove_post_set_parameters_callback",  # Iron
    "count_clients",  # Jazzy
    "count_services",  # Jazzy
    "get_fully_qualified_node_names",  # Jazzy
    "wait_for_node",  # Jazzy
)

REMOVED = [name for name in POST_HUMBLE_NODE_METHODS if hasattr(Node, name)]
for _name in REMOVED:
    delattr(Node, _name)


def pytest_report_header(config) -> str:
    return "humble surface: removed rclpy Node." + ", Node.".join(REMOVED)
