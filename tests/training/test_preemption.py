"""Save-and-stop requests from real signals: SIGTERM, a first and a second Ctrl-C, and two
processes (jax.distributed on this CPU) agreeing on the step to stop at."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from llmjax.training.preemption import Preemption

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _deliver(signum):
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs in the main thread at the next bytecode boundary


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_requests_a_save_and_stop(signum):
    before = signal.getsignal(signum)
    preemption = Preemption()
    try:
        assert not preemption.requested(1)
        _deliver(signum)
        assert preemption.requested(2) and preemption.requested(3)
    finally:
        preemption.close()
    assert signal.getsignal(signum) == before


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
rank, port, signum, sender = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=rank, initialization_timeout=60)
from llmjax.training.preemption import Preemption
preemption = Preemption()
for step in range(1, 1000):
    if rank == sender and step == 5:
        os.kill(os.getpid(), signum)
    time.sleep(0.02 * (rank + 1))  # the hosts run at different speeds
    if preemption.requested(step):
        print("stopped at", step, flush=True)
        break
preemption.close()
jax.distributed.shutdown()
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("signum, sender", [(signal.SIGTERM, 0), (signal.SIGINT, 1)])
def test_two_processes_stop_at_the_same_step(signum, sender):
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": ROOT}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(rank), str(port), str(int(signum)),
                               str(sender)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    stops = [[l for l in out.splitlines() if l.startswith("stopped at")] for out, _ in outs]
    assert stops[0] == stops[1] and len(stops[0]) == 1, outs
    assert int(stops[0][0].split()[-1]) > 5
