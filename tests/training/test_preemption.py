"""Save-and-stop requests from real signals: SIGTERM, a first and a second Ctrl-C, one during an
eval (checked between its batches), and two processes (jax.distributed on this CPU) agreeing on
the step to stop at."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from llmjax.training.loop import _eval_totals
from llmjax.training.preemption import Preemption
from tests.helpers import one_device_xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _deliver(signum):
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs in the main thread at the next bytecode boundary


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_requests_a_save_and_stop(signum):
    before = signal.getsignal(signum)
    preemption = Preemption()
    try:
        assert not preemption.requested()
        _deliver(signum)
        assert preemption.requested() and preemption.requested()
    finally:
        preemption.close()
    assert signal.getsignal(signum) == before


class _Task:
    num_eval_batches = 10


def test_a_request_during_eval_stops_it_after_the_current_batch():
    """A SIGTERM during batch 3 of 10: the eval stops after that batch and says so (None)."""
    seen = []

    def eval_step(params, batch):
        seen.append(batch)
        if batch == 3:
            _deliver(signal.SIGTERM)
        return {"loss": 2.0, "tokens": 1.0}
    preemption = Preemption()
    try:
        assert _eval_totals(_Task(), eval_step, None, lambda i: i, preemption.requested) is None
    finally:
        preemption.close()
    assert seen == [0, 1, 2, 3]
    seen.clear()
    assert _eval_totals(_Task(), eval_step, None, lambda i: 10 + i, lambda: False) == {"loss": 20.0, "tokens": 10.0}
    assert len(seen) == 10


def test_second_ctrl_c_interrupts_at_once():
    preemption = Preemption()
    try:
        _deliver(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            _deliver(signal.SIGINT)
    finally:
        preemption.close()


WORKER = """
import os, signal, sys, time
import jax
rank, port, signum, sender, evals = int(sys.argv[1]), sys.argv[2], *map(int, sys.argv[3:])
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=rank, initialization_timeout=60)
from llmjax.training.preemption import Preemption
preemption = Preemption()

def stopped(step, batch=None):
    time.sleep(0.02 * (rank + 1))  # the hosts run at different speeds
    if preemption.requested():
        print("stopped at", step, "" if batch is None else f"eval batch {batch}", flush=True)
        return True
    return False

for step in range(1, 1000):
    if rank == sender and step == 5 and not evals:
        os.kill(os.getpid(), signum)
    if stopped(step):
        break
    if evals and step == 8:  # an eval of 50 batches, asked between batches; the signal during batch 3
        for b in range(50):
            if rank == sender and b == 3:
                os.kill(os.getpid(), signum)
            if stopped(step, b):
                break
        else:
            continue
        break
preemption.close()
jax.distributed.shutdown()
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("signum, sender, evals", [(signal.SIGTERM, 0, 0), (signal.SIGINT, 1, 0),
                                                  (signal.SIGTERM, 0, 1)])
def test_two_processes_stop_at_the_same_step(signum, sender, evals):
    """evals: the signal arrives during an eval, and both hosts stop at the same batch of it."""
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": one_device_xla_flags(), "PYTHONPATH": ROOT}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(rank), str(port), str(int(signum)),
                               str(sender), str(evals)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    stops = [[l for l in out.splitlines() if l.startswith("stopped at")] for out, _ in outs]
    assert stops[0] == stops[1] and len(stops[0]) == 1, outs
    if evals:
        assert stops[0][0].startswith("stopped at 8 eval batch ") and int(stops[0][0].split()[-1]) > 3, stops
    else:
        assert int(stops[0][0].split()[-1]) > 5
