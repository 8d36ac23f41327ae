"""A backend in a process of its own that sees only its own GPUs (issue 32, will-break 2).

`CUDA_VISIBLE_DEVICES` counts only before a process's first CUDA start, and vLLM caches its
environment after its first engine: a second model that must run on other GPUs than the policy's
engine (an aux model with `aux_model.resources.num_gpus` of its own) cannot be placed from inside
the cell's process. An hf aux model's `.to("cuda:1")` fails there, and a vLLM aux model lands on
GPU 0 beside the policy and fails vLLM's start-up memory check. So the harness builds such a model
in a spawned child (spawn, not fork: a forked child inherits an initialised CUDA context) whose
`CUDA_VISIBLE_DEVICES` lists exactly its GPUs, renumbered from 0 there, and talks to it over a
pipe. The proxy is a `Backend` (generate, count_tokens, name, engine); model output crosses the
pipe as pickled `Generation`s built by the harness's own code in the child, never evaluated.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from harness.core.devices import VISIBLE, visible_set
from harness.core.types import Generation, GenerationRequest, Message

START_TIMEOUT_S = 1800.0  # building a large model (download, dequantize, engine start) may take this long


def _serve(conn: Any, model_cfg: dict[str, Any], build: Callable[[dict[str, Any]], Any]) -> None:
    """The child: build the backend on the GPUs it sees, then answer calls until told to close."""
    try:
        backend = build(model_cfg)
        conn.send(("ok", (backend.name, backend.engine, os.environ.get(VISIBLE))))
    except BaseException:  # the parent raises it with the child's traceback
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            op, args = conn.recv()
        except EOFError:  # the parent is gone
            return
        if op == "close":
            conn.send(("ok", None))
            return
        if op == "reset" and not hasattr(backend, "reset"):
            conn.send(("ok", None))
            continue
        try:
            conn.send(("ok", getattr(backend, op)(*args)))
        except BaseException:  # sent back: the parent raises it
            conn.send(("error", traceback.format_exc()))


class OwnProcessBackend:
    """`model_cfg`'s backend, built and run in a spawned child that sees only `devices` (physical
    GPU ids, as CUDA_VISIBLE_DEVICES writes them)."""

    def __init__(self, model_cfg: dict[str, Any], devices: list[str],
                 build: Callable[[dict[str, Any]], Any]) -> None:
        """`build` makes the backend in the child (harness.backends.make_backend, passed in rather
        than imported: it is what dispatches here)."""
        renumbered = {**model_cfg, "gpus": list(range(len(devices)))} if "gpus" in model_cfg else model_cfg
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        with visible_set(",".join(devices)):  # spawn copies the environment at start
            # not a daemon: a daemonic process may not start children, and a tensor-parallel vLLM
            # engine starts its workers as such; the finalizer below closes it instead
            self._process = ctx.Process(target=_serve, args=(child, renumbered, build),
                                        name=f"sibench-{model_cfg.get('label', 'model')}")
            self._process.start()
        child.close()
        self._closer = weakref.finalize(self, _shut, self._process, self._conn)  # also at interpreter exit
        try:
            self.name, self._engine, self.visible_devices = self._answer(START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    @property
    def engine(self) -> str:
        return self._engine

    def _answer(self, timeout: float | None = None) -> Any:
        if timeout is not None and not self._conn.poll(timeout):
            raise RuntimeError(f"the model process {self._process.name} did not start within {timeout:g} s")
        try:
            status, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the model process {self._process.name} died "
                               f"(exit code {self._process.exitcode})") from None
        if status == "error":
            raise RuntimeError(f"in the model process {self._process.name}:\n{value}")
        return value

    def _call(self, op: str, *args: Any) -> Any:
        self._conn.send((op, args))
        return self._answer()

    def generate(self, requests: list[GenerationRequest]) -> list[list[Generation]]:
        return self._call("generate", requests)

    def count_tokens(self, messages: list[Message]) -> int:
        return self._call("count_tokens", messages)

    def reset(self) -> None:
        """A cached backend starts every cell fresh (harness/engine/cell.py): the child's, too."""
        self._call("reset")

    def close(self) -> None:
        self._closer()


def _shut(process: Any, conn: Any) -> None:
    """Ask the child to stop, then make sure it did; close the pipe."""
    if process.is_alive():
        try:
            conn.send(("close", ()))
            conn.poll(30)
        except (BrokenPipeError, OSError):
            pass
        process.join(30)
        if process.is_alive():
            process.terminate()
            process.join(5)
    conn.close()
