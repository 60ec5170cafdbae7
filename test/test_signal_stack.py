"""preserved_signal_stack: a library that swaps the thread's alternate signal stack inside the block (what
OpenVINO's CPU plugin does when it compiles) leaves the thread with its own stack afterwards, in any thread."""
from __future__ import annotations

import ctypes
import sys
import threading

import pytest

from dsa_core.runtime.signal_stack import _StackT, current_signal_stack, preserved_signal_stack

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack handling is Linux-only")


def _swap_in_a_stack_of_our_own() -> ctypes.Array:
    buffer = ctypes.create_string_buffer(64 * 1024)  # bigger than MINSIGSTKSZ everywhere
    stack = _StackT(ctypes.cast(buffer, ctypes.c_void_p), 0, len(buffer))
    assert ctypes.CDLL(None).sigaltstack(ctypes.byref(stack), None) == 0
    return buffer


def test_the_thread_gets_its_signal_stack_back() -> None:
    results = {}

    def check(tag: str) -> None:
        before = current_signal_stack()
        with preserved_signal_stack():
            buffer = _swap_in_a_stack_of_our_own()
            inside = current_signal_stack()
        results[tag] = (before, inside, current_signal_stack(), ctypes.addressof(buffer))

    check("main")
    worker = threading.Thread(target=check, args=("worker",))
    worker.start()
    worker.join()
    for tag, (before, inside, after, address) in results.items():
        assert before is not None and inside[0] == address, tag  # the swap happened
        assert after == before, tag  # and was undone


def test_restores_on_an_exception() -> None:
    before = current_signal_stack()
    with pytest.raises(RuntimeError):
        with preserved_signal_stack():
            buffer = _swap_in_a_stack_of_our_own()
            raise RuntimeError("boom")
    assert current_signal_stack() == before and buffer is not None
