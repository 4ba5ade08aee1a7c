"""Spawned worker processes for the CPU-bound passes over a corpus (preparation, sentence pairs).

Spawned, not forked: the parent may hold JAX's threads. With one worker nothing is spawned and
the jobs run in this process, so small corpora pay no start-up cost.
"""
from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator

_IN_WORKER = False  # set in spawned workers: they are the parallelism, one thread each


def default_workers() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_worker() -> bool:
    """Whether this process is a spawned worker (libraries should then use one thread)."""
    return _IN_WORKER


def _mark_worker() -> None:
    global _IN_WORKER
    _IN_WORKER = True


class Workers:
    """n spawned worker processes (none: this process when n is 1)."""

    def __init__(self, n: int):
        self.n = n
        ctx = multiprocessing.get_context("spawn")
        self.pool = concurrent.futures.ProcessPoolExecutor(
            n, mp_context=ctx, initializer=_mark_worker) if n > 1 else None

    def imap(self, fn: Callable, jobs: Iterable[tuple]) -> Iterator:
        """fn(*job) of each job in order; jobs are drawn lazily, 2n in flight at most."""
        if self.pool is None:
            for job in jobs:
                yield fn(*job)
            return
        pending: collections.deque = collections.deque()
        for job in jobs:
            pending.append(self.pool.submit(fn, *job))
            if len(pending) >= 2 * self.n:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self, cancel: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=cancel)

