"""Two processes under jax.distributed read a prepared corpus: disjoint rows whose union is the
one-process batch, so the global batch of a step is the same on 1 or 2 hosts (and a resume on
another number of hosts sees the same sequence)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

from llmjax.config import DataConfig
from llmjax.data.pipeline import PackedBatches, prepare
from tests.data.test_preparation import _jsonl_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH, SEQ, STEPS = 8, 16, 3

WORKER = """
import json, sys
import jax
import numpy as np
rank, port, directory = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.distributed.initialize(coordinator_address=f"localhost:{{port}}", num_processes=2,
                           process_id=rank, initialization_timeout=60)
from jax.experimental import multihost_utils
from llmjax import sharding
from llmjax.data import token_cache
from llmjax.data.pipeline import PackedBatches
from llmjax.data.tokenizers import load_tokenizer

manifest = token_cache.read_manifest(directory)
vocab = load_tokenizer(directory + "/tokenizer").vocab_size
streams, _ = token_cache.open_streams(directory, manifest, vocab)
batches = PackedBatches(streams["train"], {seq}, {batch}, seed=3)
mesh = sharding.make_mesh((4, 1, 1))
rows = sharding.process_rows(mesh, {batch})
for step in range({steps}):
    local = batches.batch(step, rows)
    whole = sharding.global_batch(local, mesh, {batch})
    gathered = multihost_utils.process_allgather(whole["inputs"], tiled=True)
    print(json.dumps({{"step": step, "rows": [rows.start, rows.stop], "local": local["inputs"].tolist(),
                      "global": np.asarray(gathered).tolist()}}), flush=True)
jax.distributed.shutdown()
""".format(seq=SEQ, batch=BATCH, steps=STEPS)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_hosts_read_disjoint_rows_whose_union_is_the_one_host_batch(tmp_path):
    cfg = DataConfig(dataset=_jsonl_corpus(tmp_path / "corpus", files=3, docs=60), tokenizer="byte",
                     prepared_dir=str(tmp_path / "prep"), num_workers=1)
    one = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    assert len(one.train_tokens.paths) == 3  # rows come from several shards
    alone = PackedBatches(one.train_tokens, SEQ, BATCH, seed=3)
    port = _free_port()
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                     if not f.startswith("--xla_force_host_platform_device_count"))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT,
           "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count=2"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(rank), str(port), str(tmp_path / "prep")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    per_host = [[json.loads(l) for l in out.splitlines() if l.startswith("{")] for out, _ in outs]
    for step in range(STEPS):
        want = alone.batch(step)["inputs"]
        a, b = per_host[0][step], per_host[1][step]
        assert a["rows"] == [0, BATCH // 2] and b["rows"] == [BATCH // 2, BATCH]  # disjoint, all rows
        np.testing.assert_array_equal(np.concatenate([a["local"], b["local"]]), want)
        np.testing.assert_array_equal(a["global"], want)
        np.testing.assert_array_equal(b["global"], want)
