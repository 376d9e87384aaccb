"""Stopping a command on SIGTERM or SIGINT: the signal becomes an exception in the main thread, so every ``with``
and ``finally`` on the way out runs (the cluster is closed, a half-written output removed, an earlier one left in
place, the lock released).

>>> with stopped_by_signals():
...     run_the_command(emit=StoppingConsole("text"))  # raises Stopped("SIGTERM") on a SIGTERM
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from pipeline.console import Console


class Stopped(BaseException):
    """A SIGTERM or SIGINT (the signal's name is the message), raised in the main thread.

    A ``BaseException``, as ``KeyboardInterrupt`` is: handlers of ``Exception``
    on the way out do not swallow it.
    """


_RECEIVED: list[str] = []  # the signal that came, if one did, while stopped_by_signals is active


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Within this block, SIGTERM and SIGINT raise :class:`Stopped` in the main thread; a second signal while the
    first one's clean-up runs is ignored.  Outside the main thread (which alone may set handlers), it does nothing.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        for each in previous:  # another signal while cleaning up does not interrupt the clean-up
            signal.signal(each, signal.SIG_IGN)
        _RECEIVED.append(signal.Signals(signum).name)
        raise Stopped(_RECEIVED[0])

    def unraisable(hook_args: Any) -> None:
        # Raised in a destructor, Stopped is dropped by Python (raise_if_stopped raises it again at the next
        # event) and would print a traceback.
        if not isinstance(hook_args.exc_value, Stopped):
            previous_hook(hook_args)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = previous_hook
        _RECEIVED.clear()


def raise_if_stopped() -> None:
    """Raise :class:`Stopped` again if a stop signal came: where it was first raised, it may have been swallowed
    (Python ignores an exception raised in a destructor, for one)."""
    if _RECEIVED:
        raise Stopped(_RECEIVED[0])


class StoppingConsole(Console):
    """The console, which also stops the command at its next event (an iteration, at least) if a stop signal's
    exception was swallowed where it was raised."""

    def __call__(self, event: dict[str, Any]) -> None:
        super().__call__(event)
        raise_if_stopped()
