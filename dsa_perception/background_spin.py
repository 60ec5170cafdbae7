"""Spin an rclpy executor in a background thread that can always be stopped.

``threading.Thread(target=executor.spin)`` + ``executor.shutdown()`` can hang forever: ``Executor.shutdown`` sets its
flag, then clears the executor's nodes and destroys its wake-up guard condition without waiting for the spinning
thread. A spin thread that passed its ``not _is_shutdown`` check just before then builds a wait set with nothing in
it and waits with no timeout (seen in CI: "spin thread did not stop", after which every later node test failed).
Here the thread spins in short ``spin_once`` slices and checks a stop event between them; ``stop`` joins the thread
*before* shutting the executor down, so the two never race. A callback that raises ends the thread (as it would
end ``executor.spin``); the error is logged at once and raised again by ``stop``, so it cannot pass unnoticed.
``make_executor`` is the executor our tools and tests spin.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor

log = logging.getLogger(__name__)


def make_executor(context: Any = None) -> SingleThreadedExecutor:
    """Single-threaded: with rclpy 9.1's ``MultiThreadedExecutor`` a 10 Hz topic with a trivial subscriber arrived in
    bursts up to 3-6 s late on an idle machine (0 s single-threaded, same script; under load the delay did not
    appear; ``scripts/executor_delivery_delay.py``). Upstream fixed a MultiThreadedExecutor performance bug in rclpy
    pull request 1547; we did not pin down the mechanism (the handler does trigger the executor's guard condition
    when it ends). Our tools' callbacks only store or count messages, so one thread loses nothing."""
    return SingleThreadedExecutor(context=context)


#: longest a stop waits for the thread's current wait (not for a running callback) to end
SPIN_SLICE_S = 0.1


class BackgroundSpin:
    """``start()`` spins ``executor`` in a daemon thread; ``stop()`` ends the thread, then shuts the executor down.
    Also a context manager. A thread still inside rclpy at interpreter exit aborts the process, hence the join."""

    def __init__(self, executor: Any, name: str = "rclpy-spin") -> None:
        self.executor = executor
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        context = self.executor.context  # the executor's context: the loop also ends when it is shut down
        try:
            while not self._stop.is_set() and context.ok():
                self.executor.spin_once(timeout_sec=SPIN_SLICE_S)
        except (ExternalShutdownException, ShutdownException):
            pass  # the context or the executor was shut down: the end of spinning, not an error
        except BaseException as exc:  # noqa: BLE001 - kept for stop(), which raises it again
            self.error = exc
            log.error("%s: a callback raised %s: %s; spinning stopped", self._thread.name, type(exc).__name__, exc)

    def start(self) -> "BackgroundSpin":
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop spinning, then shut the executor down (waits up to ``timeout_s`` for callbacks in progress).
        Raises RuntimeError if the thread is still running a callback after ``timeout_s``, or if a callback raised
        (chained to that error)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"the spin thread is still in a callback after {timeout_s:.0f} s")
        self.executor.shutdown(timeout_sec=timeout_s)
        if self.error is not None:
            raise RuntimeError(f"a callback raised while spinning: {type(self.error).__name__}: {self.error}") \
                from self.error

    def __enter__(self) -> "BackgroundSpin":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
