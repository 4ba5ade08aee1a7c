"""`python -m llmjax.sample` in-process on a real tiny run: each method, seeds, a prompts file,
the interactive loop (streaming, Ctrl-C), and every bad input as one line with exit code 1."""
import builtins
import json
import re
import shutil

import jax
import numpy as np
import pytest

import llmjax.generation
import llmjax.main
from llmjax import sample
from llmjax import saved_run
from llmjax.config import ConfigError
from llmjax.experiment import resolve, train_and_evaluate
from llmjax.data.packed_pairs import example_ids
from llmjax.data.pairs import split_identifiers
from llmjax.generation import generate
from llmjax.tasks.seq2seq import decode_texts
from tests.helpers import tiny_config, truncate_checkpoint, write_corpus


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A 4-step byte-tokenizer GPT run (max_len 32) with checkpoints at steps 2 and 4."""
    tmp = tmp_path_factory.mktemp("sample")
    cfg = tiny_config(write_corpus(tmp / "corpus", num_files=4), train__num_steps=4, train__eval_every=4,
                      checkpoint__every_steps=2, optim__lr=1e-2)
    train_and_evaluate(resolve(cfg, num_devices=8), str(tmp / "run"), log=lambda _: None)
    return tmp / "run"


def _cli(capsys, workdir, *args):
    """(exit code, stdout, stderr) of the command line."""
    capsys.readouterr()
    try:
        sample.cli(["llmjax.sample", f"--workdir={workdir}", *args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _continuations(out, prompt):
    """The text printed under the prompt's '--- prompt' header (texts may span lines)."""
    block = out.split(f"--- {prompt!r}\n", 1)[1].split("\n--- '")[0]
    return [block[:-1] if block.endswith("\n") else block]


def _n_best(out, prompt):
    """(rank, score, text) of each '[rank] score S: text' under the prompt's header."""
    parts = re.split(r"(?m)^\[(\d+)\] score (\S+): ", _continuations(out, prompt)[0])[1:]
    return [(int(r), float(sc), t.rstrip("\n")) for r, sc, t in zip(parts[::3], parts[1::3], parts[2::3])]


def test_greedy_prints_the_models_greedy_continuation(capsys, workdir):
    code, out, err = _cli(capsys, workdir, "--prompt=def ", "--prompt=import", "--method=greedy",
                          "--max_new_tokens=12")
    assert code == 0, err
    assert out.startswith("model: gpt, ") and "checkpoints/4" in out.splitlines()[0]
    # The same model and checkpoint through the library give the same text.
    run = _library_run(workdir)
    tok = run.tokenizer
    new = generate(run.model, run.params, [tok.encode("def "), tok.encode("import")], max_new_tokens=12,
                   rng=jax.random.key(0), temperature=0.0, eos_id=tok.eos_id)
    for prompt, row in zip(("def ", "import"), new.tolist()):
        assert _continuations(out, prompt) == [prompt + sample._text(tok, row)]


def _library_run(workdir, step="4"):
    tok = saved_run.load_tokenizer(str(workdir))
    return sample.load_run(sample.model_config(str(workdir)), tok, str(workdir / "checkpoints" / step))


def test_sampling_is_reproducible_by_seed(capsys, workdir):
    args = ["--prompt=def ", "--prompt=class ", "--temperature=1.0", "--top_k=40", "--top_p=0.95",
            "--max_new_tokens=20"]
    first = _cli(capsys, workdir, *args, "--seed=3")
    assert first[0] == 0, first[2]
    assert _cli(capsys, workdir, *args, "--seed=3") == first
    assert _cli(capsys, workdir, *args, "--seed=4")[1] != first[1]
    # It is the library's draw with that seed, from the run's model and tokenizer.
    run = _library_run(workdir)
    tok = run.tokenizer
    new = generate(run.model, run.params, [tok.encode("def "), tok.encode("class ")], max_new_tokens=20,
                   rng=jax.random.key(3), temperature=1.0, top_k=40, top_p=0.95, eos_id=tok.eos_id)
    for prompt, row in zip(("def ", "class "), new.tolist()):
        assert _continuations(first[1], prompt) == [prompt + sample._text(tok, row)]
        assert len(set(row)) > 5
    # The uncached reference draws the same tokens.
    assert _cli(capsys, workdir, *args, "--seed=3", "--use_cache=false") == first


def test_beam_prints_a_sorted_n_best_list(capsys, workdir):
    code, out, err = _cli(capsys, workdir, "--prompt=def ", "--method=beam", "--beam_size=4",
                          "--num_return=3", "--max_new_tokens=8", "--step=2")
    assert code == 0, err
    assert "checkpoints/2" in out.splitlines()[0]
    best = _n_best(out, "def ")
    assert [r for r, _, _ in best] == [1, 2, 3]
    scores = [sc for _, sc, _ in best]
    assert scores == sorted(scores, reverse=True) and all(sc < 0 for sc in scores)
    assert all(t.startswith("def ") for _, _, t in best)


def test_prompts_file_equals_repeated_prompt_flags(capsys, workdir, tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("def \nimport os\n")
    args = ["--method=greedy", "--max_new_tokens=6"]
    from_file = _cli(capsys, workdir, f"--prompts_file={path}", *args)
    assert from_file[0] == 0, from_file[2]
    assert from_file == _cli(capsys, workdir, "--prompt=def ", "--prompt=import os", *args)


def test_a_prompts_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes("caf\u00e9\n".encode("latin-1"))
    sample.parse(["llmjax.sample", "--workdir=x", f"--prompts_file={path}"])
    with pytest.raises(ConfigError, match=f"--prompts_file='{path}' is not UTF-8 text .*line 1.*: save it "
                                          "as UTF-8") as e:
        sample.read_prompts()
    assert "\n" not in str(e.value)


def _script(monkeypatch, *lines):
    """input() answers lines in turn, then raises EOFError (or an exception given as a line)."""
    answers = iter(lines)

    def fake_input(prompt):
        print(prompt, end="")
        line = next(answers, EOFError)
        if isinstance(line, type) and issubclass(line, BaseException):
            raise line()
        return line

    monkeypatch.setattr(builtins, "input", fake_input)


@pytest.mark.parametrize("method", ["greedy", "sample"])
def test_interactive_streams_what_the_batch_command_prints(capsys, workdir, monkeypatch, method):
    args = [f"--method={method}", "--max_new_tokens=16", "--seed=7"]
    code, batch_out, err = _cli(capsys, workdir, "--prompt=def ", *args)
    assert code == 0, err
    want = _continuations(batch_out, "def ")[0]
    _script(monkeypatch, "def ", "")  # an empty line quits
    code, out, err = _cli(capsys, workdir, "--interactive", *args)
    assert code == 0, err
    assert out.split("\n", 1)[1] == f"> {want}\n> "


def test_interactive_ctrl_c_stops_one_generation_then_at_the_prompt_quits(capsys, workdir, monkeypatch):
    real = llmjax.generation.stream_tokens
    calls = []

    def interrupted_after_3(*args, **kwargs):
        calls.append(1)
        for i, token in enumerate(real(*args, **kwargs)):
            if i == 3 and len(calls) == 1:  # only the first generation is interrupted
                raise KeyboardInterrupt
            yield token

    monkeypatch.setattr(llmjax.generation, "stream_tokens", interrupted_after_3)
    args = ["--method=sample", "--max_new_tokens=10", "--seed=1"]
    full = _continuations(_cli(capsys, workdir, "--prompt=def ", *args)[1], "def ")[0]
    run = _library_run(workdir)
    ids = generate(run.model, run.params, [run.tokenizer.encode("def ")], max_new_tokens=10,
                   rng=jax.random.key(1), temperature=0.8, eos_id=run.tokenizer.eos_id)[0]
    assert run.tokenizer.eos_id not in ids[:4]  # the interrupt comes mid-generation
    partial = "def " + run.tokenizer.decode(ids[:3]).rstrip("\ufffd")  # what 3 streamed tokens print
    assert len(partial) < len(full)
    _script(monkeypatch, "def ", "def ", KeyboardInterrupt)
    code, out, err = _cli(capsys, workdir, "--interactive", *args)
    assert code == 0 and err == ""
    assert out.split("\n", 1)[1] == f"> {partial}\n> {full}\n> \n"


def test_interactive_beam_prints_the_n_best(capsys, workdir, monkeypatch):
    _script(monkeypatch, "def ")
    code, out, err = _cli(capsys, workdir, "--interactive", "--method=beam", "--num_return=2",
                          "--max_new_tokens=6")
    assert code == 0, err
    assert [r for r, _, _ in _n_best(out, "def ")] == [1, 2]


@pytest.fixture()
def no_heavy_loading(monkeypatch):
    """Bad input must be found before any parameter is read."""
    def refuse(*args, **kwargs):
        raise AssertionError("parameters were loaded before the bad input was found")
    monkeypatch.setattr(sample, "load_params", refuse)


def _copy(workdir, tmp_path, without):
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns(without))
    return copy


@pytest.mark.parametrize("args, needle", [
    (["--prompt=x", "--workdir=/nonexistent/run"], "does not exist"),
    (["--prompt="], "--prompt #1 is an empty prompt"),
    (["--prompt=x", f"--prompt={'y' * 30}", "--max_new_tokens=8"], "prompt 2 (30 tokens), --max_new_tokens=8: prompt length 30 + max_new_tokens 8 = 38 exceeds the model's max_len 32"),
    (["--prompt=x", "--method=beam", "--beam_size=4", "--num_return=5"], "--num_return=5 > --beam_size=4"),
    (["--prompt=x", "--num_return=2"], "add --method=beam"),
    (["--prompt=x", "--no_repeat_ngram=3"], "--no_repeat_ngram is a beam search option"),
    (["--prompt=x", "--length_reward=0.5"], "--length_reward is a beam search option"),
    (["--prompt=x", "--method=beam", "--use_cache=false"], "--use_cache=false"),
    ([], "no prompt"),
    (["--prompt=x", "--interactive"], "drop --prompt"),
    (["--prompt=x", "--step=3"], "holds steps 2, 4"),
    (["--prompt=x", "--top_p=0"], "--top_p=0.0"),
    (["--prompt=x", "--method=nucleus"], "--method"),
    (["--prompt=x", "--no_such_flag=1"], "no_such_flag"),
    (["--prompt=x", "--prompts_file=/nonexistent.txt"], "cannot be read"),
    (["--prompt=x", "extra"], "unexpected arguments"),
])
def test_bad_input_is_one_line_with_exit_code_1(capsys, workdir, no_heavy_loading, args, needle):
    code, out, err = _cli(capsys, workdir, *args)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("llmjax.sample: error: "), err
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("without, needle", [("model.json", "older llmjax"), ("checkpoints", "no checkpoint"),
                                              ("tokenizer", "no tokenizer")])
def test_incomplete_workdir_is_one_line(capsys, workdir, tmp_path, no_heavy_loading, without, needle):
    code, _, err = _cli(capsys, _copy(workdir, tmp_path, without), "--prompt=x")
    assert code == 1 and len(err.strip().splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize("change, needle", [({"num_layers": 3}, "lacks"), ({"d_model": 48}, "does not fit")])
def test_checkpoint_of_another_model_is_one_line(capsys, workdir, tmp_path, change, needle):
    copy = _copy(workdir, tmp_path, "nothing")
    model = json.loads((copy / "model.json").read_text())
    (copy / "model.json").write_text(json.dumps({**model, **change}))
    code, _, err = _cli(capsys, copy, "--prompt=x", "--max_new_tokens=8")
    assert code == 1 and len(err.strip().splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize("text", ["{", '{"task": {"name": "lm", "no_such_key": 1}, "data": {}}'])
def test_unreadable_config_json_is_one_line(capsys, workdir, tmp_path, no_heavy_loading, text):
    copy = _copy(workdir, tmp_path, "nothing")
    (copy / "config.json").write_text(text)
    code, _, err = _cli(capsys, copy, "--prompt=x")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "config.json cannot be read" in err, err


def test_a_corrupt_checkpoint_is_skipped_with_one_line_unless_asked_for(capsys, workdir, tmp_path):
    copy = _copy(workdir, tmp_path, "nothing")
    truncate_checkpoint(copy / "checkpoints" / "4")
    code, out, err = _cli(capsys, copy, "--prompt=def ", "--method=greedy", "--max_new_tokens=4")
    assert code == 0, err
    assert "checkpoints/2" in out.splitlines()[0]  # the newest that restores
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "checkpoint step 4" in lines[0] and "corrupt" in lines[0], err
    code, _, err = _cli(capsys, copy, "--prompt=def ", "--max_new_tokens=4", "--step=4")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("llmjax.sample: error: "), err
    assert "checkpoint step 4" in lines[0] and "saved steps: 2, 4" in lines[0] and "--step" in lines[0]


def test_restores_every_parameter_of_the_checkpoint(workdir):
    """The loaded parameters are the trained ones (not a fresh init): they differ from step 2's."""
    tok, cfg = saved_run.load_tokenizer(str(workdir)), sample.model_config(str(workdir))
    p2, p4 = (sample.load_run(cfg, tok, str(workdir / "checkpoints" / s)).params for s in ("2", "4"))
    differ = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), p2, p4)
    assert all(jax.tree.leaves(differ))


# ---------------------------------------------------------------- the other generating families


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory):
    """family -> a 4-step run: an encoder-decoder on reversal pairs (identifiers split, beam
    settings of its own), an LSTM LM on stdlib text."""
    from tests.tasks.test_seq2seq import write_pairs

    tmp = tmp_path_factory.mktemp("families")
    common = dict(train__num_steps=4, train__eval_every=4, checkpoint__every_steps=4, optim__lr=1e-2)
    encdec = tiny_config("stdlib", model="encdec", task="seq2seq", task__dataset=write_pairs(tmp / "pairs"),
                         task__target_len=16, task__decode_examples=2, model__max_len=32,
                         task__split_identifiers=True, task__beam_size=3, task__no_repeat_ngram=2,
                         task__length_reward=0.2, **common)
    lstm = tiny_config(write_corpus(tmp / "corpus", num_files=4), model="lstm", **common)
    runs = {}
    for name, cfg in (("encdec", encdec), ("lstm", lstm)):
        train_and_evaluate(resolve(cfg, num_devices=8), str(tmp / name), log=lambda _: None)
        llmjax.main._write_config(cfg, str(tmp / name))  # config.json, as the command line records it
        runs[name] = tmp / name
    return runs


_SLOW = pytest.mark.slow  # the same code path as the default-run cases beside them


@pytest.mark.parametrize("family, method", [
    ("encdec", ["--method=beam", "--beam_size=3", "--num_return=2"]),
    ("lstm", ["--method=greedy"]),
    pytest.param("encdec", ["--method=greedy"], marks=_SLOW),
    pytest.param("encdec", ["--method=sample", "--top_k=20", "--top_p=0.9"], marks=_SLOW),
    pytest.param("lstm", ["--method=sample", "--top_k=20", "--top_p=0.9"], marks=_SLOW),
    pytest.param("lstm", ["--method=beam", "--beam_size=3", "--num_return=2"], marks=_SLOW),
])
def test_each_method_generates_from_an_encoder_decoder_and_an_lstm(capsys, family_runs, family, method):
    workdir = family_runs[family]
    code, out, err = _cli(capsys, workdir, "--prompt=alpha beta gamma", "--max_new_tokens=8", *method)
    assert code == 0, err
    assert out.startswith(f"model: {family}, ")
    lead = "-> " if family == "encdec" else "alpha beta gamma"  # a source is not continued
    if method[0] == "--method=beam":
        ranked = _n_best(out, "alpha beta gamma")
        assert [r for r, _, _ in ranked] == [1, 2] and ranked[0][1] >= ranked[1][1]
        assert all(t.startswith(lead) for _, _, t in ranked)
    else:
        assert _continuations(out, "alpha beta gamma")[0].startswith(lead)
    if method[0] == "--method=greedy":  # the library's greedy decode of the same input
        run = _library_run(workdir)
        ids = run.tokenizer.encode("alpha beta gamma") + ([run.tokenizer.eos_id] if family == "encdec" else [])
        row = generate(run.model, run.params, [ids], max_new_tokens=8, rng=jax.random.key(0), temperature=0.0,
                       eos_id=run.tokenizer.eos_id)[0]
        assert _continuations(out, "alpha beta gamma") == [lead + sample._text(run.tokenizer, row.tolist())]


def test_an_encoder_decoder_run_decodes_as_its_eval_did(capsys, family_runs):
    """With no decoding flag, the run's own beam settings; the prompt is read as its sources were
    (identifiers split, ids + EOS cut to data.seq_len), so the output is the eval's decode."""
    workdir = family_runs["encdec"]
    prompt = "def get_running_loop(self): return self._running_loop"  # 52 bytes > seq_len 32
    code, out, err = _cli(capsys, workdir, f"--prompt={prompt}")
    assert code == 0, err
    assert out.splitlines()[1] == ("decoding: method beam, beam_size 3, alpha 0.6, no_repeat_ngram 2, "
                                   "length_reward 0.2, max_new_tokens 16 (the run's own settings; a flag "
                                   "overrides each)")
    _, task, data, _ = saved_run.task(str(workdir))
    run = _library_run(workdir)
    tok = run.tokenizer
    source = example_ids(tok.encode(split_identifiers(prompt)), tok.eos_id, data.seq_len)
    assert len(source) == 32 and source[-1] != tok.eos_id  # cut as training cuts it
    [(rank, _, text)] = _n_best(out, prompt)
    assert text.startswith("-> ")
    assert text[3:].strip() == decode_texts(run.model, run.params, [source], tok, task, 1)[0]
    # A beam option alone keeps the run's beam search; a flag overrides the run's setting, and
    # the beam-only ones are dropped for another method.
    code, out, err = _cli(capsys, workdir, f"--prompt={prompt}", "--no_repeat_ngram=1")
    assert code == 0, err
    assert out.splitlines()[1].startswith("decoding: method beam, beam_size 3, alpha 0.6, length_reward 0.2, ")
    code, out, err = _cli(capsys, workdir, f"--prompt={prompt}", "--method=greedy")
    assert code == 0, err
    assert out.splitlines()[1].startswith("decoding: max_new_tokens 16 (")
    greedy = generate(run.model, run.params, [source], max_new_tokens=16, rng=jax.random.key(0),
                      temperature=0.0, eos_id=tok.eos_id)[0]
    assert _continuations(out, prompt) == ["-> " + sample._text(tok, greedy.tolist())]


@pytest.mark.parametrize("family", ["encdec", "lstm"])
def test_interactive_streams_from_an_encoder_decoder_and_an_lstm(capsys, family_runs, monkeypatch, family):
    workdir = family_runs[family]
    args = ["--method=sample", "--seed=1", "--max_new_tokens=8"]
    batch = _cli(capsys, workdir, "--prompt=delta epsilon", *args)[1]
    lines = iter(["delta epsilon", ""])
    monkeypatch.setattr(builtins, "input", lambda _: next(lines))
    code, out, err = _cli(capsys, workdir, "--interactive", *args)
    assert code == 0, err
    assert _continuations(batch, "delta epsilon")[0] in out
