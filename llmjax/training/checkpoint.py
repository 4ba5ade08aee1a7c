"""Orbax checkpoints of the train state together with the data-iterator state.

Orbax writes each step into a temporary directory and renames it when complete, so a kill
mid-save never leaves a half checkpoint under a step name. What a failed restore means decides
what happens to it:

- a checkpoint whose saved tree (Orbax's own metadata) differs from the run's abstract state was
  written under another config (optimizer, shapes): a one-line CheckpointError, nothing moved;
- an unreadable one (truncated or garbage files) or one holding NaN/Inf is corrupt: the previous
  one is tried, and only once an older one restores are the corrupt newer ones moved aside (never
  deleted) to `checkpoints_corrupt/`, so their steps can be rewritten;
- if none restores, a one-line CheckpointError and nothing moved: never a silent fresh start.

A save refuses a non-finite state, so a diverged run never pushes a good checkpoint out of the
`keep` rotation. A failed save (a full disk, in Orbax's background thread too) stops the run
with one line at its next step (`check`), and the failed step's partial directory is removed.

Checkpoints read outside resume (init_from, fork_from, llmjax.sample, convert --to_hf) go
through `read_newest`, resume's own search: corrupt steps are skipped with one line each (and
never moved: the directory is another run's), a step that a run training there rotates out
while it is read is looked for again, and Orbax's own error logs never reach the user.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import time
from typing import Any, Callable, Generic, Iterator, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from llmjax.config import UserError
from llmjax.training import orbax_noise
from llmjax.training.tree_paths import flat_paths

_FIX_CONFIG = "pass the config the run was started with, or use a new --workdir"


class CheckpointError(UserError):
    """A checkpoint problem the user has to act on, said in one line."""


def _reason(e: BaseException) -> str:
    """The root cause's type and first line: Orbax wraps tensorstore's errors in vaguer ones."""
    while e.__cause__ is not None:
        e = e.__cause__
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


# Parameter paths llmjax has renamed (old -> new, as path endings): a checkpoint that holds an
# old one was written by an earlier llmjax, which the mismatch line says instead of blaming the config.
RENAMED = {"embeddings/token_type_embedding": "embeddings/token_type/embedding"}  # BERT, 2026-12-06


def first_difference(saved: Any, target: Any) -> str | None:
    """The first key path (in target's order) where two trees of shaped leaves differ in
    presence, shape or dtype."""
    a, b = flat_paths(saved), flat_paths(target)
    for key in a:
        old = next((o for o in RENAMED if key.endswith(o)), None)
        if old is not None and key not in b:
            return f"{key} was renamed {RENAMED[old]} after this checkpoint was written (by an earlier llmjax)"
    for key in [*b, *(k for k in a if k not in b)]:
        if key not in b:
            return f"{key} is in the checkpoint but not in this run's state"
        if key not in a:
            return f"{key} is in this run's state but not in the checkpoint"
        sa, sb = (tuple(a[key].shape), np.dtype(a[key].dtype)), (tuple(b[key].shape), np.dtype(b[key].dtype))
        if sa != sb:
            return f"{key} is {sa[1]}{sa[0]} in the checkpoint but {sb[1]}{sb[0]} in this run"
    return None


@jax.jit
def _finite_leaves(flat: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """One device reduction per leaf; jitted once per tree structure (not once per save)."""
    return {k: jnp.isfinite(v).all() for k, v in flat.items()}


def first_nonfinite(tree: Any) -> str | None:
    """Key path of the first floating leaf holding NaN or Inf."""
    flat = {k: v for k, v in flat_paths(tree).items() if jnp.issubdtype(v.dtype, jnp.inexact)}
    finite = jax.device_get(_finite_leaves(flat))
    return next((k for k in sorted(finite) if not finite[k]), None)


def saved_steps(directory: str) -> list[int]:
    """The steps saved in a checkpoints directory, read from disk now (Orbax's list is cached)."""
    try:
        return sorted(int(n) for n in os.listdir(directory) if n.isdigit())
    except OSError:
        return []


class Corrupt(Exception):
    """Raised by a `read_newest` reader to say why a step is unusable (NaN/Inf, no saved tree)."""


T = TypeVar("T")


class Found(NamedTuple, Generic[T]):
    """What read_newest read, at which step, past which corrupt newer ones."""
    step: int
    value: T
    corrupt: list[tuple[int, str]]  # (step, why) of the newer steps skipped as corrupt


_RELISTS = 20  # a step rotated out while read: the listing is read again, this many times at most


def read_newest(directory: str, read: Callable[[int], T], *, fix: str, step: int | None = None,
                log: Callable[[str], None] = print) -> Found[T] | None:
    """read(s) of the newest step s in directory it succeeds on (or of `step` only), None if
    there is no checkpoint. A failure of read is a corrupt step, skipped with one logged line,
    except a UserError (the checkpoint is sound but does not fit: raised as it is) and a failure
    of a step a run training in directory rotated out meanwhile (looked for again). A one-line
    CheckpointError, ending with `fix`, when no step reads or `step` does not."""
    orbax_noise.quiet()
    corrupt: dict[int, str] = {}
    for _ in range(_RELISTS):
        steps = saved_steps(directory)
        if not steps and step is None:
            return None
        if step is not None and step not in steps:
            raise CheckpointError(f"no checkpoint step {step} in {directory} (saved steps: "
                                  f"{', '.join(map(str, steps)) or 'none'}): {fix}")
        todo = [step] if step is not None else [s for s in reversed(steps) if s not in corrupt]
        if not todo:
            newest = max(corrupt)
            raise CheckpointError(f"none of the {len(steps)} checkpoints in {directory} restores (the "
                                  f"newest, step {newest}: {corrupt[newest]}); {fix}")
        try:
            with orbax_noise.reading():
                return Found(todo[0], read(todo[0]), sorted(corrupt.items(), reverse=True))
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - Orbax and tensorstore raise many kinds
            why = str(e) if isinstance(e, Corrupt) else _reason(e)
        now = saved_steps(directory)
        if todo[0] not in now or (step is None and now[-1] > steps[-1]):
            continue  # rotated out by the run training there: read the new listing
        if step is not None:
            raise CheckpointError(f"checkpoint step {step} in {directory} is corrupt ({why}; saved steps: "
                                  f"{', '.join(map(str, now))}): {fix}")
        corrupt[todo[0]] = why
        log(f"checkpoint step {todo[0]} in {directory} is corrupt ({why}); trying the one before")
    raise CheckpointError(f"the checkpoints in {directory} kept rotating out while being read: "
                          "read them once the run training there has stopped")


class Checkpointer:
    """Saves (state, meta) at a step; restores the newest good one into given shardings."""

    def __init__(self, directory: str, keep: int, async_save: bool = True,
                 log: Callable[[str], None] = print):
        self.directory = os.path.abspath(directory)  # Orbax needs absolute paths (flax PR#4745)
        self._keep, self._async, self._log = keep, async_save, log
        self._pending: int | None = None  # the step of the save not yet checked for failure
        orbax_noise.quiet()
        # Opened (which makes the directory) here only for a directory that exists, else by the
        # first save: a run that stops before saving leaves no empty checkpoints/ to read as a run.
        self._manager: ocp.CheckpointManager | None = (
            self._open() if os.path.isdir(self.directory) else None)

    def _opened(self) -> ocp.CheckpointManager:
        """The manager, opened now if it was not (it reads steps on disk, or saves one)."""
        if self._manager is None:
            self._manager = self._open()
        return self._manager

    def _open(self) -> ocp.CheckpointManager:
        # Directories are created in the calling thread: created in the background, a failure
        # leaves Orbax's writer threads waiting 300 s for a signal that never comes.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self._keep, create=True, enable_async_checkpointing=self._async,
            async_options=ocp.AsyncOptions(create_directories_asynchronously=False))
        # Handlers registered up front, so the saved tree can be read before any restore.
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        return ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps()) if self._manager is not None else []

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Queue a save; with async_save the write overlaps the next train steps."""
        if step in self.all_steps():
            return
        bad = first_nonfinite(state)
        if bad is not None:
            raise CheckpointError(
                f"refusing to save step {step}: {bad} holds NaN/Inf (the run diverged); the "
                f"checkpoints {self.all_steps()} are kept: lower config.optim.lr and resume")
        with self._failed_save(step):
            self._opened()
        self.wait()  # an earlier save's failure, if any (Orbax's save waits for it anyway)
        self._pending = step
        with self._failed_save(step):
            self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    def newest_meta(self) -> dict | None:
        """The meta of the newest checkpoint whose meta reads (None if none does): cheap, the
        state is not read, so a resume can be checked against it before any data work."""
        for step in reversed(self.all_steps()):
            try:
                out = self._opened().restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            except Exception:  # noqa: BLE001 - unreadable: restore() says why or falls back
                continue
            return dict(out["meta"])
        return None

    def restore(self, abstract_state: Any) -> tuple[Any, dict] | None:
        """The newest checkpoint that restores cleanly, or None if the directory has none."""
        found = read_newest(self.directory, lambda step: self._read(step, abstract_state),
                            log=lambda _: None,  # _set_aside says where each corrupt one went
                            fix="nothing was moved: restore them from a backup or use a new --workdir")
        if found is None:
            return None
        self._set_aside(found.corrupt)
        return found.value["state"], dict(found.value["meta"])

    def _read(self, step: int, abstract_state: Any) -> dict:
        reason = self._unreadable(step, abstract_state)
        if reason is not None:
            raise Corrupt(reason)
        out = self._opened().restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        bad = first_nonfinite(out["state"])
        if bad is not None:
            raise Corrupt(f"{bad} holds NaN/Inf")
        return out

    def _unreadable(self, step: int, abstract_state: Any) -> str | None:
        """Why step's saved tree cannot be read, or None; a readable tree that does not fit
        abstract_state raises: that is another config, not corruption."""
        try:
            saved = self._opened().item_metadata(step)["state"]
        except Exception as e:  # noqa: BLE001 - any failure to read metadata: unreadable
            return f"metadata: {_reason(e)}"
        if saved is None:
            return "metadata: unreadable"
        diff = first_difference(saved, abstract_state)
        if diff is not None:
            raise CheckpointError(f"checkpoint step {step} in {self.directory} does not fit this "
                                  f"run: {diff}: {_FIX_CONFIG}")
        return None

    def _set_aside(self, corrupt: list[tuple[int, str]]) -> None:
        """Move corrupt steps out of Orbax's sight (so they can be rewritten), never deleting."""
        if not corrupt:
            return
        self._manager.close()
        dst_root = os.path.join(os.path.dirname(self.directory), "checkpoints_corrupt")
        for step, reason in corrupt:
            self._log(f"checkpoint at step {step} is corrupt ({reason}); moved to {dst_root}")
            src = os.path.join(self.directory, str(step))
            if jax.process_index() == 0 and os.path.exists(src):
                os.makedirs(dst_root, exist_ok=True)
                shutil.move(src, os.path.join(dst_root, f"{step}-{int(time.time())}"))
        multihost_utils.sync_global_devices("llmjax:checkpoints_set_aside")  # then all hosts reopen
        self._manager = self._open()

    @contextlib.contextmanager
    def _failed_save(self, step: int) -> Iterator[None]:
        """A failure inside becomes a one-line CheckpointError, once the step's partial
        directory (Orbax's *.orbax-checkpoint-tmp*) is removed."""
        try:
            yield
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - Orbax and tensorstore raise many kinds
            orbax_noise.join_writers()  # the save's other writes, or they write its directory again
            partial = os.path.join(glob.escape(self.directory), f"{step}.orbax-checkpoint-tmp*")
            for path in glob.glob(partial) if jax.process_index() == 0 else []:
                shutil.rmtree(path, ignore_errors=True)
            kept = saved_steps(self.directory)
            raise CheckpointError(
                f"saving step {step} in {self.directory} failed ({_reason(e)}); "
                f"{f'the checkpoints {kept} are kept' if kept else 'no checkpoint is kept there'}: check "
                "that it is a local, writable directory with free space, then run again to resume") from e

    def check(self) -> None:
        """Raise a failed background save's one line as soon as it has failed, without waiting
        for one in progress: the loop calls this every step, so a full disk stops the run at
        once instead of at its next save. With several processes it waits for that save (where
        all hosts meet): hosts that saw the failure at different steps would hang the others."""
        if (self._pending is not None and jax.process_count() == 1
                and not self._manager.is_saving_in_progress()):
            self.wait()

    def wait(self) -> None:
        """Block until background saves are on disk; errors from them are raised here."""
        step, self._pending = self._pending, None
        if step is not None:
            with self._failed_save(step):
                self._manager.wait_until_finished()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._manager is not None:
                self._manager.close()

