"""Save and stop on request: SIGTERM (preemption notice, scancel) or a first Ctrl-C ask the loop
to save a checkpoint and stop; a second Ctrl-C raises KeyboardInterrupt at once.

The loop asks once per training step and once between eval batches (a whole-split eval can
outlast a preemption's grace period), so a request during an eval stops it after the current
batch. With several processes no host decides alone: hosts that stopped at different points would
deadlock in the collective save. JAX's preemption sync manager (started by
jax.distributed.initialize) catches SIGTERM on any host, and every host calling
multihost_utils.reached_preemption_sync_point(n) at its n-th question gets True at one question
all agree on (the largest any host had reached, plus one): every host asks the same questions in
the same order, since the steps and the eval batches are collective. A first Ctrl-C on a host becomes a SIGTERM to
that host, so it takes the same path. Both paths are tested with real signals, the multi-host
one with two CPU processes under jax.distributed on one machine.
"""
from __future__ import annotations

import os
import signal
from typing import Any

import jax
from jax.experimental import multihost_utils


class Preemption:
    """Installs the signal handlers (main thread only) until close(); the loop calls requested()
    once per step and between eval batches, on every host the same calls."""

    def __init__(self):
        self._multi = jax.process_count() > 1
        self._local = False  # single process: a request arrived
        self._interrupted = False  # a first Ctrl-C arrived
        self._asked = 0  # calls of requested(): the sync point's counter with several processes
        self._previous: dict[int, Any] = {}
        self._install(signal.SIGINT, self._on_sigint)
        if not self._multi:  # several processes: JAX's preemption notifier owns SIGTERM
            self._install(signal.SIGTERM, self._on_sigterm)

    def _install(self, signum: int, handler) -> None:
        try:
            self._previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread (e.g. a notebook helper): signals stay as they are
            pass

    def _on_sigterm(self, signum, frame) -> None:
        self._local = True

    def _on_sigint(self, signum, frame) -> None:
        if self._interrupted:
            raise KeyboardInterrupt
        self._interrupted = True
        if self._multi:
            os.kill(os.getpid(), signal.SIGTERM)  # into JAX's notifier: all hosts agree on a step
        else:
            self._local = True

    def requested(self) -> bool:
        """True when the run should save and stop (with several processes: at the same call on
        every host)."""
        if self._multi:
            self._asked += 1
            return multihost_utils.reached_preemption_sync_point(self._asked)
        return self._local

    def close(self) -> None:
        """Give the signals back to the handlers they had before."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
