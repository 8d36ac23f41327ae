"""Shared fixtures: in-process cell runs on the mock backend, and the gpu/slow skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    try:  # NVML-based: torch's default probe here would kill every vLLM engine forked later
        from harness.core.devices import cuda_available

        has_cuda = cuda_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def cell_config():
    """Compose a resolved cell config on the mock backend with small sizes; extra overrides win."""
    from harness.config.compose import compose, to_dict

    def make(*overrides: str) -> dict:
        base = ["model=mock", "logger=none", "task.test_size=20", "task.train_size=5",
                "eval.n_samples=4", "checkpoints=[]"]
        return to_dict(compose(base + list(overrides)))
    return make


@pytest.fixture
def run_one(tmp_path, cell_config):
    """Run one cell in-process; returns (outcome, attempts DataFrame, summary DataFrame)."""
    import pandas as pd

    from harness.backends import make_backend
    from harness.engine.cell import CellSpec, run_cell

    def run(*overrides: str, backend=None):
        cfg = cell_config(*overrides)
        spec = CellSpec(cfg, tmp_path / "sweep")
        outcome = run_cell(spec, lambda m: backend or make_backend(m))
        attempts = pd.read_parquet(spec.out_dir / "attempts.parquet") if outcome.status == "ok" else None
        summary = pd.read_parquet(spec.out_dir / "summary.parquet") if outcome.status == "ok" else None
        return outcome, attempts, summary
    return run


@pytest.fixture
def tiny_hf():
    """Factory for an `hf` backend around a tiny random Llama and a character-level tokenizer,
    both built in memory (no download): GRPO-family tests train it in seconds."""
    import string

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from harness.backends.hf import HFBackend

    special = ["<pad>", "<|im_start|>", "<|im_end|>"]

    def make(seed: int = 0, batch_size: int = 16, init_range: float = 0.02) -> HFBackend:
        vocab = {t: i for i, t in enumerate(special + list(dict.fromkeys(string.printable)))}
        core = Tokenizer(models.WordLevel(vocab, unk_token="?"))
        core.pre_tokenizer = pre_tokenizers.Split("", "isolated")
        core.decoder = decoders.Fuse()
        tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<|im_end|>")
        tok.add_special_tokens({"additional_special_tokens": special[1:]})
        tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                             "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
        tok.padding_side = "left"
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=2048, pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=True,
            initializer_range=init_range))  # larger init = sharper, more context-dependent distributions
        model.eval()
        return HFBackend.from_model(model, tok, batch_size=batch_size)
    return make
