"""The translation memory's fallback threshold, chosen on a dev run's eval split (the dev band).

Train with task.eval_split='dev' (the band val_fraction <= h < 2 val_fraction of the normalised-
source hash, carved from train: the run never trains on it, nor sees eval), then

  python experiments/memory_fallback.py --workdir=runs/translate_dev

decodes the run's eval sources (here the dev band) once with its checkpoint and decoding
settings, and prints BLEU, chrF and the placeholder accuracy of the model alone, the memory
alone, and the model with the memory's target wherever the memory's similarity reaches each
--thresholds value (task.memory_fallback). The decodes are saved beside the checkpoint.
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "runs/translate_dev", "A seq2seq run trained with task.eval_split='dev'.")
_STEP = flags.DEFINE_integer("step", 0, "Checkpoint step (0 = the newest).")
_THRESHOLDS = flags.DEFINE_list("thresholds", ["0.3", "0.4", "0.45", "0.5", "0.55", "0.6", "0.7", "0.8", "0.9"],
                                "Similarities at or above which the memory's target is output.")


def main(argv: list[str]) -> None:
    del argv
    import ml_collections

    from llmjax import saved_run
    from llmjax.data.gettext_catalogs import placeholders
    from llmjax.evaluation.text_scores import text_scores
    from llmjax.experiment import resolve
    from llmjax.sample import load_run
    from llmjax.tasks import registry
    from llmjax.training.checkpoint import saved_steps
    from llmjax.training.workdir import CONFIG_JSON

    workdir = _WORKDIR.value
    with open(os.path.join(workdir, CONFIG_JSON)) as f:
        run_cfg = resolve(ml_collections.ConfigDict(json.load(f)))
    if run_cfg.task.name != "seq2seq" or run_cfg.task.eval_split != "dev":
        raise SystemExit(f"memory_fallback: {workdir} must be a seq2seq run with task.eval_split='dev' "
                         "(thresholds are chosen on dev, never on eval)")
    task = registry.build(run_cfg)
    task.prepare(workdir, lambda _: None, resuming=True)  # the run's own tokenizer and example cache
    step = _STEP.value or max(saved_steps(os.path.join(workdir, "checkpoints")), default=None)
    path = saved_run.checkpoint_path(workdir, step)
    run = load_run(saved_run.model_config(workdir), saved_run.load_tokenizer(workdir), path)
    t0 = time.time()
    decoded = task.decode(run.model, run.params, task._decode_sources)
    seconds = time.time() - t0
    out = os.path.join(workdir, f"dev_decodes_{os.path.basename(path)}.json")
    with open(out, "w") as f:
        json.dump(decoded, f, ensure_ascii=False)
    proposals, similarity = task.eval_memory
    refs = task._references
    rows = [("model alone", 0.0, text_scores(decoded, refs, placeholders)),
            ("memory alone", 1.0, text_scores(proposals, refs, placeholders))]
    for th in (float(t) for t in _THRESHOLDS.value):
        use = similarity >= th
        hyb = [p if u else d for d, p, u in zip(decoded, proposals, use.tolist())]
        rows.append((f"fallback at {th:g}", float(use.mean()), text_scores(hyb, refs, placeholders)))
    print(f"{len(refs):,} dev sources of {workdir} (checkpoint {os.path.basename(path)}), decoded in "
          f"{seconds:.0f} s (beam {run_cfg.task.beam_size}); decodes in {out}\n")
    print("| output | memory's share | BLEU | chrF | placeholders right |\n|---|---|---|---|---|")
    for name, share, s in rows:
        ph = f"{s['placeholder_accuracy']:.1f}%" if "placeholder_accuracy" in s else "-"
        print(f"| {name} | {share:.0%} | {s['bleu']:.2f} | {s['chrf']:.2f} | {ph} |")
    best = max(rows[2:], key=lambda r: r[2]["bleu"] + r[2]["chrf"])
    print(f"\nbest on dev by BLEU + chrF: {best[0]} (task.memory_fallback)")


if __name__ == "__main__":
    app.run(main)
