"""A stdlib_docstrings seq2seq run's decodes scored apart on the eval functions whose files a
language-model pretraining read and on those it held out, beside the run's baselines.

Why: gpt_small's pretraining corpus is the same standard library, split by each file's path
(sha1 mod 1000 < 1000 * data.val_fraction is validation), while the docstring task's eval split
is by file group. A fine-tuned GPT may have read an eval function, docstring included, in
pretraining; this script says how many such functions the eval decodes and what each side scores.

  python experiments/seq2seq_heldout.py --workdir=runs/gpt_small_summarize --pretrain_val_fraction=0.1
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "runs/gpt_small_summarize", "A finished stdlib_docstrings seq2seq run.")
_PRETRAIN = flags.DEFINE_float("pretrain_val_fraction", 0.1, "The pretraining run's data.val_fraction.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Sources per beam-search call.")


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # rouge_scorer narrates every call at INFO
    from llmjax import saved_run
    from llmjax.data import sources
    from llmjax.data.pairs import docstring_examples, example_order
    from llmjax.evaluation.text_scores import text_scores
    from llmjax.sample import load_run
    from llmjax.tasks.seq2seq import BASELINES, baseline_scores, decode_texts

    workdir = _WORKDIR.value
    task_cls, task, data, _ = saved_run.task(workdir)
    if task.dataset != "stdlib_docstrings" or task.eval_split not in ("", "validation"):
        raise SystemExit(f"seq2seq_heldout: {workdir} must be a stdlib_docstrings run on its eval split")
    examples = sorted((e for e in docstring_examples(val_fraction=data.val_fraction) if not e.dropped),
                      key=example_order)
    train = [e for e in examples if e.split == "train"]
    evals = [e for e in examples if e.split == "eval"]
    evals = evals[:task.decode_examples] if task.decode_examples >= 0 else evals
    cfg, tok = saved_run.model_config(workdir), saved_run.load_tokenizer(workdir)
    run = load_run(cfg, tok, saved_run.checkpoint_path(workdir, None))
    ids = task_cls.prompt_ids(task, data, tok, [e.source for e in evals], workdir)  # as the eval reads them
    decoded = decode_texts(run.model, run.params, ids, tok, task, _BATCH.value)
    print(f"{workdir}, step {run.path.rstrip('/').split('/')[-1]}: {len(evals)} eval functions decoded")
    print("\n| eval functions | n | | BLEU | chrF | ROUGE-1 | ROUGE-2 | ROUGE-L |\n|---|---|---|---|---|---|---|---|")
    read = [not sources.is_validation(e.path, _PRETRAIN.value) for e in evals]
    for name, keep in (("all", [True] * len(evals)), ("files the pretraining read", read),
                       ("files it held out", [not r for r in read])):
        chosen = [i for i, k in enumerate(keep) if k]
        if not chosen:
            continue
        srcs, refs = [evals[i].source for i in chosen], [evals[i].target for i in chosen]
        rows = {"model": text_scores([decoded[i] for i in chosen], refs)}
        b = baseline_scores(srcs, refs, [e.source for e in train], [e.target for e in train])
        rows.update({k: {m: b[f"{k}_{m}"] for m in ("bleu", "chrf", "rouge1", "rouge2", "rougeL")} for k in BASELINES})
        for who, s in rows.items():
            print(f"| {name} | {len(chosen)} | {who} | {s['bleu']:.2f} | {s['chrf']:.2f} | {s['rouge1']:.2f} | "
                  f"{s['rouge2']:.2f} | {s['rougeL']:.2f} |")


if __name__ == "__main__":
    app.run(main)
