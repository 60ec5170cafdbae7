"""Shared fixtures: keep torch deterministic and small on the 2-core CI machine; one exported dsa_nano and one ROS
harness per run."""
from __future__ import annotations

import os

import pytest
import torch

from exported_nano import ExportedNano, export_nano

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (many times faster than two contending ones on the shared 2-core machine);
    a test module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def exported_nano(tmp_path_factory) -> ExportedNano:
    """The session's one exported random-init dsa_nano model dir (test/exported_nano.py); read-only for tests."""
    return export_nano(tmp_path_factory.mktemp("dsa_nano_export"))


#: ROS domain of the session's shared harness; tests that keep a harness or context of their own use other ids.
ROS_SESSION_DOMAIN_ID = 55


@pytest.fixture(scope="session")
def ros_session():
    """The run's one ROS harness (test/node_harness.py: rclpy context, executor, spin thread, probe node), created
    on first use, so runs without ``ros`` tests never start rclpy. Use it through ``ros_harness`` (one test) or a
    module fixture that calls ``reset()`` when done."""
    from node_harness import RosHarness

    harness = RosHarness(ROS_SESSION_DOMAIN_ID)
    yield harness
    harness.close()


@pytest.fixture
def ros_harness(ros_session):
    """The session's ROS harness for one test; afterwards the nodes the test started on it are destroyed and the
    probe is replaced (``RosHarness.reset``)."""
    yield ros_session
    ros_session.reset()
