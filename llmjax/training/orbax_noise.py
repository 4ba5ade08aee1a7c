"""Orbax's own noise about a failure kept from the user, who gets one CheckpointError line
instead: the tracebacks its save threads log (absl) and those asyncio logs for its read tasks
left unawaited once one read failed; what the garbage collector reports about its coroutines
and about tensorstore writes that outlive a failed save; and those writes themselves, which go
on after the first one fails and must end before the save's partial directory is removed."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Any, Callable, Iterator

import orbax.checkpoint as ocp

_ORBAX_DIR = os.path.dirname(ocp.__file__)
_reads = 0  # checkpoint reads in progress (see reading)


def _from_orbax(e: BaseException | None) -> bool:
    """Whether e (or an exception it was raised from) went through Orbax's code."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.startswith(_ORBAX_DIR):
                return True
            tb = tb.tb_next
        e = e.__cause__ or e.__context__
    return False


class _OrbaxErrors(logging.Filter):
    """Drops the error records of Orbax's failures (tracebacks logged by its save threads, and
    by asyncio for its read tasks left unawaited once one read failed): each such failure
    reaches the user as one CheckpointError line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < (logging.WARNING if _reads else logging.ERROR):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return not (record.pathname.startswith(_ORBAX_DIR) or _from_orbax(exc))


class _OrbaxUnraisables:
    """Drops what a failed save or read leaves to the garbage collector, a traceback each: the
    errors of Orbax's coroutines never awaited once one read failed (a corrupt checkpoint), and
    the 'Event loop is closed' of tensorstore writes that outlive a failed save. Anything else is
    passed on."""

    def __init__(self, previous: Callable[[Any], None]):
        self._previous = previous

    def __call__(self, unraisable: Any) -> None:
        e, code = unraisable.exc_value, getattr(unraisable.object, "cr_code", None)
        if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
            return
        if _from_orbax(e) or (code is not None and code.co_filename.startswith(_ORBAX_DIR)):
            return
        self._previous(unraisable)


def quiet() -> None:
    """Install both filters (once): Orbax's failures then reach the user only as our one line."""
    for name in ("absl", "asyncio"):  # Orbax logs through absl.logging, its read tasks through asyncio
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OrbaxErrors) for f in logger.filters):
            logger.addFilter(_OrbaxErrors())
    if not isinstance(sys.unraisablehook, _OrbaxUnraisables):
        sys.unraisablehook = _OrbaxUnraisables(sys.unraisablehook)


@contextlib.contextmanager
def reading() -> Iterator[None]:
    """Orbax's warnings too are dropped while a checkpoint is read: they are about the step the
    read fails on (a file that vanished, a corrupt one), which the reader says in its own line."""
    global _reads
    _reads += 1
    try:
        yield
    finally:
        _reads -= 1


def join_writers(timeout_s: float = 60.0) -> None:
    """Wait for Orbax's writer threads: after one write of a save fails, the others go on."""
    for thread in threading.enumerate():
        if type(thread).__module__.startswith("orbax.") and thread is not threading.current_thread():
            thread.join(timeout_s)
