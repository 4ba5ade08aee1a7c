"""The benchmark script in CI-sized form: it runs, and its table is consistent with itself."""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # 11-13 s on 2 cores: a benchmark's table, like bench_data's below; the default suite keeps its 10 minutes
def test_bench_step_prints_a_consistent_table(tmp_path):
    args = [sys.executable, "experiments/bench_step.py", "--config=configs/gpt_small.py",
            "--batch_sizes=4,8", "--steps=2", "--warmup=1", "--real_data",
            "--config.model.num_layers=1", "--config.model.d_model=32", "--config.model.num_heads=2",
            "--config.model.mlp_dim=64", "--config.data.tokenizer=byte", "--config.data.seq_len=32",
            "--config.data.max_train_chars=200000"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "TMPDIR": str(tmp_path)}
    p = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)\s+.*?([+-][\d.]+)%", p.stdout, re.M)
    assert [int(r[0]) for r in rows] == [4, 8], p.stdout
    for batch, ms, tok_s, _, _ in rows:
        # tokens/s is batch * seq_len / step time, to the printed precision
        expected = int(batch) * 32 / (float(ms) / 1e3)
        assert abs(float(tok_s.replace(",", "")) - expected) / expected < 0.05
    assert "FLOPs/token" in p.stdout and "reference" in p.stdout


def test_context_loss_prints_each_run_at_log_spaced_positions(tmp_path):
    runs = []
    for name, curve in (("gpt", [3.0, 2.5, 2.2, 2.0, 1.9]), ("lstm", [3.1, 2.6, 2.4, 2.35, None])):
        run = tmp_path / name
        (run / "eval").mkdir(parents=True)
        (run / "eval" / "per_position_loss.json").write_text(json.dumps({"step": 7, "per_position_loss": curve}))
        (run / "model.json").write_text(json.dumps({"name": name}))
        runs.append(str(run))
    p = subprocess.run([sys.executable, "experiments/context_loss.py", f"--runs={','.join(runs)}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {int(line.split()[0]): line.split()[1:] for line in p.stdout.splitlines() if line.strip()[:1].isdigit()}
    assert sorted(rows) == [1, 2, 4, 5]
    assert rows[4] == ["2.0000", "2.3500"] and rows[5] == ["1.9000", "-"]
    missing = subprocess.run([sys.executable, "experiments/context_loss.py", f"--runs={tmp_path}/none"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "per_position_loss.json is missing" in missing.stderr


@pytest.mark.slow  # 20-40 s on 2 cores: two preparations, a training run and bench_step, each a new process
def test_bench_data_prints_a_consistent_table(tmp_path):
    args = [sys.executable, "experiments/bench_data.py", "--sizes=0.002", "--workers=1,2", "--train_steps=2",
            "--eval_steps=1", "--loader_steps=2", "--sample_chars=300000", f"--json={tmp_path}/figures.json",
            "--config.model.num_layers=1", "--config.model.d_model=32", "--config.model.num_heads=2",
            "--config.model.mlp_dim=64", "--config.data.seq_len=32", "--config.data.vocab_size=512",
            "--config.train.batch_size=4"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "TMPDIR": str(tmp_path)}
    p = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    head = next(line for line in p.stdout.splitlines() if line.startswith("figure"))
    assert re.split(r"\s{2,}", head.strip()) == ["figure", "measured", "reference / goal"]
    figures = json.loads((tmp_path / "figures.json").read_text())
    rows = {figure: (measured, goal) for figure, measured, goal in figures["table"]}
    for figure, (measured, goal) in rows.items():  # every row printed, each with its reference
        assert re.search(rf"^{re.escape(figure)}\s+{re.escape(measured)}\s+{re.escape(goal)}$", p.stdout, re.M)
    rates = [float(m) for m in re.findall(r"([\d.]+)[KM] tokens/s", p.stdout)]
    assert len(rates) >= 6 and min(rates) > 0, p.stdout
    limit = figures["limit"]["tokens_per_s"] * figures["cores"]
    for prep in figures["prepare"]["0.002 GB"]:  # the printed share of the limit is tokens / wall / limit
        assert prep["tokens"] > 0 and prep["wall_s"] > prep["encode_s"] > 0
        share = f"{100 * prep['tokens'] / prep['wall_s'] / limit:.0f}% of limit"
        assert share in rows[f"prepare 0.002 GB, {prep['workers']} worker{'s' * (prep['workers'] > 1)}: end to end"][0]
    assert rows["prepare 0.002 GB: shards of 1, 2 workers"][0] == "identical"
    assert 0 < figures["train"]["0.002 GB"]["first_step_s"] < figures["train"]["0.002 GB"]["wall_s"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith("llmjax-bench-data-")]  # its work dir is gone


def test_representation_ladder_tables_finished_runs(tmp_path):
    """Finished runs are reused, not rerun: the table is their mean and spread, the majority rung
    is read off a baseline run, and pretraining tokens come from the pretraining run."""
    def finish(workdir, seconds=None, **results):
        os.makedirs(workdir)
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f)
        if seconds is not None:
            with open(os.path.join(workdir, "ladder.json"), "w") as f:
                json.dump({"seconds": seconds, "command": "test"}, f)

    out = tmp_path / "runs/ladder"
    finish(out / "pretrain/gpt", 600.0, params=4_260_000, tokens_seen=2_867_200)
    finish(out / "classify/tfidf/fit", 20.0, accuracy=0.7, f1_macro=0.65, majority_accuracy=0.168,
           majority_f1_macro=0.029, step=90, params=12_345)
    finish(out / "tag/tfidf/fit", 100.0, span_f1=0.95, accuracy=0.97, baseline_span_f1=0.39,
           baseline_accuracy=0.6, step=200, params=50_000)
    for seed, (acc, f1) in enumerate(((0.6, 0.5), (0.8, 0.7))):
        finish(out / f"classify/gpt_pretrained/seed{seed}", 100.0 + seed, accuracy=acc, f1_macro=f1,
               majority_accuracy=0.168, majority_f1_macro=0.029, step=150, params=4_270_000)
        finish(out / f"tag/gpt_pretrained/seed{seed}", 200.0, span_f1=0.9, accuracy=0.95, step=300,
               baseline_span_f1=0.39, baseline_accuracy=0.6, params=4_270_000)
    args = [sys.executable, os.path.join(ROOT, "experiments/representation_ladder.py"), "--seeds=0,1",
            "--rungs=majority,tfidf,gpt_pretrained", f"--out={out}", f"--plot={tmp_path}/ladder.png"]
    p = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in p.stdout.splitlines() if line.startswith("| ") and "rung" not in line}
    classify = p.stdout.split("\ntag,")[0]
    assert "| GPT pretrained, fine-tuned | 0.7000 ± 0.1414 | 0.6000 ± 0.1414 | 2 | 4.27M | 2.87M | 150 | 100 |" in classify
    assert "| majority (class / word's most frequent tag) | 0.1680 ± 0.0000 |" in classify
    assert "| TF-IDF + LR | 0.7000 ± 0.0000 | 0.6500 ± 0.0000 | 1 | 12.3k | 0 | 90 L-BFGS | 20 |" in classify
    assert rows["majority (class / word's most frequent tag)"][0] == "0.3900 ± 0.0000"  # the tag table's
    assert "pretraining gpt: 4.26M params, 2.87M tokens, 600 s" in p.stdout
    assert os.path.getsize(tmp_path / "ladder.png") > 0
    with open(out / "ladder.json") as f:
        assert json.load(f)["tables"]["classify"][2]["values"]["accuracy"] == [0.6, 0.8]
    bad = subprocess.run(args[:2] + ["--rungs=gpt,tfidf"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--rungs: unknown gpt; choose from majority, bow" in bad.stderr
