"""`dsa_perception_lifecycle_node`: the same node as a managed (lifecycle) node, for supervisors such as Autoware's
or Nav2's lifecycle managers.

Transitions (the standard ~/change_state, ~/get_state services):
  configure  = check the model dir and load the backend (the slow part: engine build, session start);
  activate   = subscribe to the cameras, create the publishers, start the worker;
  deactivate = stop the worker, remove subscriptions and publishers; the backend stays loaded, so activating again
               is immediate;
  cleanup    = unload the backend; shutdown = stop everything.
A configure that fails (no model, no backend starts, a threshold outside the score's range) returns FAILURE with the
reason in the log, and the node stays unconfigured. Parameters are declared at construction, as in the plain node.
"""
from __future__ import annotations

from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn

from dsa_perception.node import DsaPerceptionNode, main as _main


class DsaPerceptionLifecycleNode(DsaPerceptionNode, LifecycleNode):
    """MRO: DsaPerceptionNode's __init__ runs LifecycleNode.__init__ (its super()), which adds the lifecycle
    services; MANAGED keeps __init__ from loading and starting."""

    MANAGED = True

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._load()
        except (ValueError, RuntimeError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self._unload()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._start()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._halt()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._unload()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._halt()
        self._unload()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._halt()
        self._unload()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    def _unload(self) -> None:
        backends = getattr(self, "backends", None)
        if backends is not None:
            backends.close()
            del self.backends
        self.pipeline = None

    @property
    def loaded(self) -> bool:
        """Whether a backend is loaded (configured)."""
        return self.pipeline is not None


def main(args: list[str] | None = None) -> int:
    """Console script / `ros2 run dsa_perception dsa_perception_lifecycle_node`."""
    return _main(args, node_class=DsaPerceptionLifecycleNode)
