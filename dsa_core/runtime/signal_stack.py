"""Keep a thread's alternate signal stack across calls into a library that replaces it.

Why: OpenVINO's CPU plugin installs an alternate signal stack (``sigaltstack``) of its own in the thread that
compiles a model and unmaps it when the plugin is destroyed. Destroyed from another thread (garbage collection picks
the thread), the compiling thread is left pointing at unmapped memory, and the next signal it handles on that stack
(CPython's own handlers ask for it) kills the process with SIGSEGV before any handler, faulthandler's included, can
run. Wrapping the plugin's compile in ``preserved_signal_stack`` leaves the thread with the signal stack it had; the
release then changes no thread's stack (test/test_openvino_backend.py releases in the loading thread and another).

Linux only (``stack_t``'s layout differs elsewhere); a no-op on other systems.
"""
from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _StackT(ctypes.Structure):  # glibc / musl stack_t on Linux (x86_64, aarch64)
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_SS_ONSTACK = 1  # what sigaltstack reports while the thread runs on that stack; never passed back in


def current_signal_stack() -> tuple[int, int, int] | None:
    """This thread's (ss_sp, ss_flags, ss_size), or None where it cannot be read."""
    if _libc is None:
        return None
    stack = _StackT()
    if _libc.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return int(stack.ss_sp or 0), int(stack.ss_flags), int(stack.ss_size)


@contextmanager
def preserved_signal_stack() -> Iterator[None]:
    """Restore this thread's alternate signal stack (or its absence) when the block ends, even on an exception."""
    saved = _StackT()
    if _libc is None or _libc.sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        restore = _StackT(saved.ss_sp, saved.ss_flags & ~_SS_ONSTACK, saved.ss_size)
        _libc.sigaltstack(ctypes.byref(restore), None)
