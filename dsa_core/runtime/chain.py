"""The backend chain: an ordered preference list of inference backends for one model dir.

The node and every offline tool (bag-eval, calibrate, the demo) pick and replace their backend through this class,
so each of these decisions is made here and nowhere else:

* **Start.** The first kind of the list that initialises runs; why each one before it did not is kept
  (``failures``, ``summary()``).
* **Integrity.** A model dir that does not match its manifest (ModelIntegrityError) is refused and never fallen back
  from: every backend would read the same altered files. At start the error propagates; after a run-time failure it
  ends the walk (state ``failed``), and the retry keeps checking the files.
* **Run-time failure.** An exception from the running backend's ``infer`` (the caller reports it with ``fail``) hands
  over to the next kind of the list.
* **Retry.** Every ``retry_period_s`` a helper thread tries to bring back the most preferred kind that failed at run
  time (all of them when none works); a slow engine build never stalls inference because the caller's own thread
  only swaps in a backend that is ready (``poll``).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dsa_core.export.manifest import ModelIntegrityError
from dsa_core.runtime.base import BackendUnavailable, InferenceBackend

BackendFactory = Callable[[str], InferenceBackend]
EVENTS_KEPT = 50  # backend events remembered for diagnostics (a long-running node must not grow without bound)


def runtime_factory(model_dir: str | Path, options: dict[str, dict[str, Any]] | None = None,
                    **common: Any) -> BackendFactory:
    """kind -> dsa_core.runtime.create_backend(kind, model_dir, ...): ``common`` (device, precision, ...) go to every
    kind, ``options[kind]`` override them for one kind (e.g. ``{"tensorrt": {"device": "cuda"}}``)."""
    from dsa_core.runtime import create_backend

    return lambda kind: create_backend(kind, model_dir, **{**common, **(options or {}).get(kind, {})})


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class BackendChain:
    """One model dir's ordered backends: ``start()``, then ``fail(exc)`` / ``answered()`` after each ``infer`` and
    ``poll()`` in the inference thread. ``retry_period_s`` may be a callable (a run-time parameter); <= 0: no retry.
    ``logger`` has info/warning/error (a logging.Logger or an rclpy logger); ``on_ready`` is called from the retry
    thread when a retried backend waits to be swapped in (to wake a sleeping worker)."""

    def __init__(self, kinds: Sequence[str], factory: BackendFactory, *,
                 retry_period_s: float | Callable[[], float] = 0.0, logger: Any = None,
                 on_ready: Callable[[], None] | None = None) -> None:
        from dsa_core.runtime import BACKEND_KINDS

        self.kinds = tuple(kinds)
        if not self.kinds:
            raise ValueError("the backend list must name at least one backend kind")
        unknown = [k for k in self.kinds if k not in BACKEND_KINDS]
        if unknown:
            raise ValueError(f"unknown backend kinds {unknown}; expected some of {list(BACKEND_KINDS)}")
        self._factory = factory
        self._period = retry_period_s if callable(retry_period_s) else (lambda: float(retry_period_s))
        self._log = logger or logging.getLogger(__name__)
        self._on_ready = on_ready
        self.backend: InferenceBackend | None = None
        self.index: int | None = None
        self.state = "starting"  # ok (first kind) | fallback (a later kind) | failed (none works now)
        self.events: collections.deque[str] = collections.deque(maxlen=EVENTS_KEPT)
        self.failures: dict[str, str] = {}  # kind -> why it did not start (the last walk)
        self.retry_attempts = 0
        self.last_retry = ""
        self.next_retry: float | None = None  # time.monotonic() of the next retry
        self._failed_at_run_time: set[int] = set()
        self._lock = threading.Lock()
        self._candidate: tuple[int, InferenceBackend] | None = None
        self._thread: threading.Thread | None = None

    # --- start and fall back ---------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The running kind (the last one that ran when none runs now)."""
        return self.kinds[self.index] if self.index is not None else "none"

    def _note(self, text: str) -> str:
        """Keep an event for diagnostics; the caller logs it (rclpy loggers bind one severity to each call site)."""
        self.events.append(text)
        return text

    def _walk(self, start: int) -> tuple[int, InferenceBackend]:
        """The first kind from ``start`` that initialises; ModelIntegrityError propagates (refused, not skipped)."""
        self.failures = {}
        for i in range(start, len(self.kinds)):
            kind = self.kinds[i]
            try:
                return i, self._factory(kind)
            except ModelIntegrityError:
                raise
            except Exception as exc:  # noqa: BLE001 - every init failure moves on to the next kind, loudly
                self.failures[kind] = _why(exc)
                self._log.warning(f"backend {kind} unavailable: {self.failures[kind]}")
        rest = self.kinds[start:]
        if not rest:
            raise BackendUnavailable(f"no backend after {self.kinds[start - 1]} in the backends list {list(self.kinds)}")
        raise BackendUnavailable("no inference backend could be created from " + ", ".join(rest) + ":\n  "
                                 + "\n  ".join(f"{k}: {v}" for k, v in self.failures.items()))

    def _run(self, index: int, backend: InferenceBackend) -> None:
        self.index, self.backend = index, backend
        self.state = "ok" if index == 0 else "fallback"

    def start(self) -> InferenceBackend:
        """The first kind that initialises. Raises ModelIntegrityError (refused model dir) or BackendUnavailable."""
        index, backend = self._walk(0)
        self._run(index, backend)
        not_used = "; ".join(f"{k}: {v}" for k, v in self.failures.items())
        self._log.info(self._note(f"running backend {self.name}" + (f" (not used: {not_used})" if not_used else "")))
        return backend

    def summary(self) -> str:
        """The running backend and why each more preferred one is not running (for reports and logs)."""
        return "\n".join([f"running backend: {self.name}"]
                         + [f"  {kind} not used: {why}" for kind, why in self.failures.items()])

    def fail(self, exc: BaseException) -> InferenceBackend | None:
        """The running backend failed at run time: the next kind that starts (None when none does; state failed)."""
        current = self.name
        self._log.error(f"backend {current} failed at run time: {_why(exc)}")
        self.events.append(f"{current} failed: {_why(exc)}")
        self._failed_at_run_time.add(self.index)
        period = self._period()
        if period > 0 and self.next_retry is None:
            self.next_retry = time.monotonic() + period
        try:
            index, backend = self._walk(self.index + 1)
        except (BackendUnavailable, ModelIntegrityError) as none_left:
            self.state = "failed"
            self._log.error(self._note(f"no working backend now: {_why(none_left)}"
                                       + (f"; retrying {current} every {period:g} s" if period > 0 else "")))
            return None
        self._run(index, backend)
        self._log.warning(self._note(f"running backend {self.name} (fell back from {current})"))
        return backend

    def answered(self) -> None:
        """The running backend answered: after a ``failed`` state it is in use again."""
        if self.state == "failed":
            self._failed_at_run_time.discard(self.index)
            self.state = "ok" if self.index == 0 else "fallback"
            self._log.warning(self._note(f"{self.name} answers again"))

    # --- retry ----------------------------------------------------------------------------------------------------

    def _retry_indices(self) -> list[int]:
        limit = len(self.kinds) if self.state == "failed" else self.index
        return sorted(i for i in self._failed_at_run_time if i < limit)

    def retry_targets(self) -> list[str]:
        """Kinds that failed at run time and rank above the one running (all of them when none works)."""
        return [self.kinds[i] for i in self._retry_indices()]

    @property
    def retry_ready(self) -> bool:
        """A retried backend waits to be swapped in by ``poll``."""
        return self._candidate is not None

    def poll(self) -> InferenceBackend | None:
        """Inference thread: the backend a retry brought back (the caller runs it from now on), else None; starts the
        next retry when it is due."""
        with self._lock:
            candidate, self._candidate = self._candidate, None
        swapped = None
        if candidate is not None:
            previous = self.name
            index, swapped = candidate
            self._failed_at_run_time.discard(index)
            self._run(index, swapped)
            self._log.warning(self._note(f"retry: back to {self.name} (was {previous})"))
        targets = self._retry_indices()
        period = self._period()
        if not targets or period <= 0:
            self.next_retry = None
            return swapped
        now = time.monotonic()
        if self.next_retry is None:
            self.next_retry = now + period
        if now >= self.next_retry and (self._thread is None or not self._thread.is_alive()):
            self.retry_attempts += 1
            self.next_retry = now + period
            self._thread = threading.Thread(target=self._retry, args=(targets,), name="dsa_backend_retry", daemon=True)
            self._thread.start()
        return swapped

    def _retry(self, targets: list[int]) -> None:
        """Retry thread: create the most preferred target that starts; ``poll`` swaps it in."""
        for index in targets:
            kind = self.kinds[index]
            try:
                backend = self._factory(kind)
            except Exception as exc:  # noqa: BLE001 - a failed retry (a refused model dir included) is retried later
                self.last_retry = f"{kind}: {_why(exc)}"
                self._log.warning(f"retry of backend {kind} failed: {_why(exc)}")
                continue
            self.last_retry = f"{kind}: started"
            with self._lock:
                self._candidate = (index, backend)
            if self._on_ready is not None:
                self._on_ready()
            return

    def status(self, now: float | None = None) -> dict[str, str]:
        """Diagnostics key/values: backend, state, the last events, and the retry schedule."""
        now = time.monotonic() if now is None else now
        targets = self.retry_targets()
        due = f"{max(0.0, self.next_retry - now):.1f}" if targets and self.next_retry else ""
        return {"backend": self.name, "state": self.state, "events": " | ".join(list(self.events)[-5:]),
                "retry.targets": ",".join(targets), "retry.attempts": str(self.retry_attempts),
                "retry.next_in_s": due, "retry.last": self.last_retry}

    def close(self, timeout: float = 10.0) -> None:
        """Wait for a running retry (it may be building an engine) so nothing outlives its owner."""
        if self._thread is not None:
            self._thread.join(timeout=timeout)
