"""Orbax checkpoints of the train state together with the data-iterator state.

Orbax writes each step into a temporary directory and renames it when complete, so a kill
mid-save never leaves a half checkpoint under a step name. If the newest checkpoint still
fails to restore (truncated or corrupted files), it is reported, moved aside (never deleted)
to `checkpoints_corrupt/`, and the previous one is tried.
"""
from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves (state, meta) at a step; restores the newest good one into given shardings."""

    def __init__(self, directory: str, keep: int, async_save: bool = True,
                 log: Callable[[str], None] = print):
        self.directory = os.path.abspath(directory)  # Orbax needs absolute paths (flax PR#4745)
        self._keep, self._async, self._log = keep, async_save, log
        self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self._keep, create=True, enable_async_checkpointing=self._async)
        return ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Queue a save; with async_save the write overlaps the next train steps."""
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    def restore(self, abstract_state: Any) -> tuple[Any, dict] | None:
        """The newest checkpoint that restores cleanly, or None if there is none."""
        for step in reversed(self.all_steps()):
            try:
                out = self._manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
                return out["state"], dict(out["meta"])
            except Exception as e:  # noqa: BLE001 - any failure means this step is unusable
                reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                self._log(f"checkpoint at step {step} failed to restore ({type(e).__name__}: {reason}); "
                          "moving it aside and trying the previous one")
                self._quarantine(step)
        return None

    def _quarantine(self, step: int) -> None:
        """Move a bad step out of Orbax's sight (so it can be rewritten) without deleting it."""
        self._manager.close()
        if jax.process_index() == 0:
            src = os.path.join(self.directory, str(step))
            dst_root = os.path.join(os.path.dirname(self.directory), "checkpoints_corrupt")
            os.makedirs(dst_root, exist_ok=True)
            if os.path.exists(src):
                shutil.move(src, os.path.join(dst_root, f"{step}-{int(time.time())}"))
        self._manager = self._open()

    def wait(self) -> None:
        """Block until background saves are on disk; errors from them are raised here."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
