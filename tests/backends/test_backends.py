"""Backends: the mock's scripted correctness, and the OpenAI-compatible client against a fake
loopback server (retries on 5xx, usage-based token counts)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import pytest

from harness.backends import make_backend
from harness.backends.mock import MockBackend
from harness.config.compose import compose
from harness.core.errors import UserError
from harness.core.types import GenerationRequest, SamplingParams

MSG = ({"role": "user", "content": "What is 2 + 2?"},)


def test_mock_is_deterministic_and_boosts_raise_accuracy():
    plain = MockBackend(base_accuracy=0.2, boosts={"check each step": 0.7})
    p = SamplingParams(n=200, temperature=0.7, seed=3)
    a = plain.generate([GenerationRequest(MSG, p, oracle_answer="4")])[0]
    b = plain.generate([GenerationRequest(MSG, p, oracle_answer="4")])[0]
    assert [g.text for g in a] == [g.text for g in b]
    rate = sum(g.text == "Answer: 4" for g in a) / 200
    boosted_msg = ({"role": "system", "content": "Please check each step."},) + MSG
    boosted = plain.generate([GenerationRequest(boosted_msg, p, oracle_answer="4")])[0]
    rate_boosted = sum(g.text == "Answer: 4" for g in boosted) / 200
    assert 0.1 < rate < 0.3 and 0.8 < rate_boosted <= 1.0
    assert plain.p_correct(boosted_msg) == pytest.approx(0.9)


def test_mock_greedy_is_one_answer_and_aux_calls_get_the_aux_reply():
    m = MockBackend(base_accuracy=0.5, aux_reply="idea {i}")
    g = m.generate([GenerationRequest(MSG, SamplingParams(n=5, temperature=0.0), oracle_answer="4")])[0]
    assert len({x.text for x in g}) == 1
    aux = m.generate([GenerationRequest(MSG, SamplingParams(n=2))])[0]
    assert [x.text for x in aux] == ["idea 1", "idea 2"]


def test_unknown_model_option_is_rejected_with_valid_choices():
    with pytest.raises(UserError, match=r"unknown config key 'model.nope=1'; valid keys of model \(mock\): "
                                        r".*base_accuracy"):
        compose(["model=mock", "model.nope=1"])
    with pytest.raises(UserError, match="unknown backend 'tgi'; valid: hf, llamacpp, mock, openai, vllm"):
        compose(["model=mock", "model.backend=tgi"])


def _completion(handler: BaseHTTPRequestHandler, model: str, texts: list[str], prompt_tokens: int,
                completion_tokens: int) -> None:
    """Answer like an OpenAI chat-completions endpoint: one choice per text, with `usage`."""
    resp = {"id": "x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": t}}
                        for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
    data = json.dumps(resp).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class _FakeOpenAI(BaseHTTPRequestHandler):
    calls = 0
    fail_first = 2

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls += 1
        if type(self).calls <= type(self).fail_first:
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b'{"error": "busy"}')
            return
        n = body.get("n", 1)
        _completion(self, body["model"], [f"Answer: {i}" for i in range(n)], 17, 3 * n)

    def log_message(self, *args):
        pass


def test_openai_backend_retries_and_counts_usage_tokens():
    server = HTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        backend = make_backend({"backend": "openai", "model": "fake", "label": "x",
                                "base_url": f"http://127.0.0.1:{server.server_port}/v1",
                                "max_retries": 4})
        out = backend.generate([GenerationRequest(MSG, SamplingParams(n=2, temperature=0.5))])[0]
    finally:
        server.shutdown()
    assert _FakeOpenAI.calls == 3  # two 503s, then success
    assert [g.text for g in out] == ["Answer: 0", "Answer: 1"]
    assert all(g.prompt_tokens == 17 and g.completion_tokens == 3 for g in out)


class _SlowEcho(BaseHTTPRequestHandler):
    """Replies after a short wait with the request's last message, and tracks requests in flight."""

    lock = threading.Lock()
    in_flight = 0
    most_in_flight = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
        time.sleep(0.2)
        with cls.lock:
            cls.in_flight -= 1
        _completion(self, body["model"], [body["messages"][-1]["content"]], 5, 2)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("concurrency,most", [(1, 1), (8, 8)])
def test_openai_backend_keeps_max_concurrency_requests_in_flight_and_the_order(concurrency, most):
    _SlowEcho.most_in_flight = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowEcho)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = make_backend({"backend": "openai", "model": "fake", "label": "x", "max_concurrency": concurrency,
                                "base_url": f"http://127.0.0.1:{server.server_port}/v1"})
        requests = [GenerationRequest(({"role": "user", "content": f"q{i}"},), SamplingParams()) for i in range(8)]
        out = backend.generate(requests)
    finally:
        server.shutdown()
    assert [g[0].text for g in out] == [f"q{i}" for i in range(8)]  # results in request order
    assert _SlowEcho.most_in_flight == most


def test_chat_token_count_counts_tokens_not_encoding_fields(tiny_hf):
    """vLLM's and the endpoint backend's prompt counts (context_tokens_added) use this: it must
    grow with the prompt, as the hf backend's own count does."""
    from harness.core.types import chat_token_count

    backend = tiny_hf()
    short = [{"role": "user", "content": "hi"}]
    long = [{"role": "system", "content": "Insights: check each step."}, {"role": "user", "content": "hi"}]
    assert chat_token_count(backend.tokenizer, short) == backend.count_tokens(short) > 2
    assert chat_token_count(backend.tokenizer, long) - chat_token_count(backend.tokenizer, short) > 20


def test_local_server_command_follows_the_model_entry_and_its_overrides_compose(monkeypatch):
    """`harness.serve` starts vLLM's OpenAI server with the entry's weights, dtype, context cap and the
    CPU settings the offline backend uses, and the overrides it prints are a valid endpoint config."""
    from harness.backends import vllm_offline
    from harness.config.compose import compose, to_dict
    from harness.serve import server_command

    monkeypatch.setattr(vllm_offline, "cuda_available", lambda: False)  # the CPU command, on any machine
    for var in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_NUM_OF_RESERVED_CPU"):  # an engine earlier in the run sets them
        monkeypatch.delenv(var, raising=False)
    entry = {"backend": "vllm", "path": "/weights/m", "label": "m-135m", "enforce_eager": True, "max_model_len": 2048,
             "kv_cache_gib": 3}
    cmd, env, server = server_command(entry, port=8123)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert flags["--model"] == "/weights/m" and flags["--served-model-name"] == "m-135m"
    assert flags["--dtype"] == "float32" and flags["--max-model-len"] == "2048"  # CPU: fp32, as offline
    assert "--enforce-eager" in cmd and "--no-enable-chunked-prefill" in cmd  # seeded sampling on CPU
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    model = to_dict(compose(server.overrides()))["model"]
    assert (model["backend"], model["base_url"], model["model"], model["tokenizer"]) == (
        "openai", "http://127.0.0.1:8123/v1", "m-135m", "/weights/m")
    with pytest.raises(ValueError, match="model backend 'mock' cannot be served; valid: vllm entries"):
        server_command({"backend": "mock"}, port=8123)


def test_request_seeds_are_spread_so_neighbouring_seeds_share_no_sample_seed():
    """vLLM seeds a request's i-th sample with seed + i: eval.seed 0 and 1 shared 7 of 8 samples
    until the seed was spread (harness.types.spread_seed)."""
    from harness.core.types import spread_seed

    n = 64
    starts = sorted(spread_seed(s) for s in range(2000))
    assert len(set(starts)) == 2000 and starts[0] >= 0 and starts[-1] < 2**31
    assert min(b - a for a, b in itertools.pairwise(starts)) >= n  # no two ranges of n seeds overlap


@pytest.mark.parametrize("in_process", [True, False])
def test_weight_sync_goes_through_collective_rpc_on_every_executor(in_process):
    """Issue 32: tensor parallelism > 1 gets vLLM's multiprocess executor, which has no
    `driver_worker`, so the sync raised AttributeError; `collective_rpc("reload_weights")` works on
    both executors (and keeps the worker's set_current_vllm_config). Across processes the weights
    go as a list: a generator does not pickle."""
    from types import SimpleNamespace

    from harness.backends.vllm_offline import VLLMBackend

    calls = []
    executor = SimpleNamespace(driver_worker=object()) if in_process else SimpleNamespace()
    llm = SimpleNamespace(llm_engine=SimpleNamespace(model_executor=executor),
                          collective_rpc=lambda method, kwargs: calls.append((method, kwargs)),
                          reset_prefix_cache=lambda: calls.append(("reset", None)))
    backend = object.__new__(VLLMBackend)
    backend.llm = llm
    weights = ((name, i) for i, name in enumerate(["a.weight", "b.weight"]))
    backend.load_weights(weights)
    (method, kwargs), reset = calls
    assert method == "reload_weights" and reset == ("reset", None)
    sent = kwargs["weights_iterator"]
    assert (sent is weights) if in_process else (sent == [("a.weight", 0), ("b.weight", 1)])
    calls.clear()
    backend.load_weights(None)  # restore: the model's own weights from disk
    assert calls[0] == ("reload_weights", {"weights_iterator": None})
