#!/usr/bin/env python3
"""Tiny random Hugging Face models and their reference logits, for swiattn's checkpoint parity tests.

Builds one small model per family with `transformers` (Llama, Qwen2, Qwen3, Gemma 3 with a
sliding/full layer mix), perturbs every parameter so that no weight is an identity
initialization, saves it with `save_pretrained` (safetensors), and records the logits of a fixed
batch of token ids. Also writes a sharded copy of the Llama model, a bf16 copy (its logits are
those of the bf16-rounded weights computed in fp32), and a GGUF conversion of the Llama and
Gemma 3 models written the way llama.cpp's `convert_hf_to_gguf.py` does (q/k rows permuted for
Llama, `1 + w` norms for Gemma), with the vocabulary-free metadata swiattn needs.

Run once; the outputs are committed under crates/swiattn-core/tests/fixtures/hf/:

    pip install torch transformers gguf numpy
    python3 tools/make_parity_fixtures.py crates/swiattn-core/tests/fixtures/hf
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

VOCAB = 97
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2)


def ids():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, VOCAB, (2, 13), generator=g)


def perturb(model, seed):
    """Every parameter ~ N(0, 0.3); norm weights 1 + N(0, 0.1) (Gemma stores w of 1 + w: N(0, 0.1))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name:
                base = 0.0 if isinstance(model, Gemma3ForCausalLM) else 1.0
                p.copy_(base + 0.1 * noise)
            else:
                p.copy_(0.3 * noise)
    return model


def models():
    yield "llama", LlamaForCausalLM(LlamaConfig(**COMMON, rope_theta=10000.0, tie_word_embeddings=False))
    yield "qwen2", Qwen2ForCausalLM(Qwen2Config(**COMMON, tie_word_embeddings=True))
    yield "qwen3", Qwen3ForCausalLM(Qwen3Config(**COMMON, head_dim=16, tie_word_embeddings=False))
    yield "gemma3", Gemma3ForCausalLM(Gemma3TextConfig(
        **COMMON, head_dim=16, sliding_window=4, query_pre_attn_scalar=24,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"]))


def record(model, out: Path, extra=None, name="logits.json"):
    model.eval()
    x = ids()
    with torch.no_grad():
        logits = model(input_ids=x).logits.float()
    meta = {"input_ids": x.tolist(), "logits": logits.tolist(), "transformers": transformers.__version__,
            "torch": torch.__version__}
    meta.update(extra or {})
    (out / name).write_text(json.dumps(meta))


def llama_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "input_layernorm": "attn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
}


def write_gguf(model, arch: str, path: Path):
    import gguf
    cfg = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(256)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    if arch == "llama":
        w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    else:
        w.add_rope_freq_base(cfg.rope_parameters["full_attention"]["rope_theta"])
        w.add_key_length(cfg.head_dim)
        w.add_value_length(cfg.head_dim)
        w.add_sliding_window(cfg.sliding_window)
        w.add_uint32("gemma3.attention.sliding_window_pattern", 2)
    for name, t in model.state_dict().items():
        t = t.float().numpy()
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        elif name == "lm_head.weight":
            if cfg.tie_word_embeddings:
                continue
            gname = "output.weight"
        else:
            _, _, layer, rest = name.split(".", 3)
            module, param = rest.rsplit(".", 1)
            if module == "post_attention_layernorm":
                mapped = "post_attention_norm" if arch == "gemma3" else "ffn_norm"
            else:
                mapped = GGUF_NAMES[module]
            gname = f"blk.{layer}.{mapped}.{param}"
            if arch == "llama" and mapped == "attn_q":
                t = llama_permute(t, cfg.num_attention_heads)
            if arch == "llama" and mapped == "attn_k":
                t = llama_permute(t, cfg.num_key_value_heads)
        if arch == "gemma3" and name.endswith("norm.weight"):
            t = t + 1.0
        # Matrices as F16 would change the logits; keep F32 so the test isolates the conversion.
        w.add_tensor(gname, np.ascontiguousarray(t.astype(np.float32)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(out_root: Path):
    torch.manual_seed(0)
    out_root.mkdir(parents=True, exist_ok=True)
    for i, (name, model) in enumerate(models()):
        model = perturb(model.float(), 100 + i)
        model.config._attn_implementation = "eager"
        out = out_root / name
        shutil.rmtree(out, ignore_errors=True)
        model.save_pretrained(out, safe_serialization=True)
        record(model, out)
        if name == "llama":
            write_gguf(model, name, out_root / "llama.gguf")
            record(model, out_root, name="llama.gguf.json")
        if name == "gemma3":
            # GGUF has no query_pre_attn_scalar; llama.cpp uses head_dim (Gemma 3 below 27B), so the
            # GGUF fixture is a Gemma with that scale.
            gemma = perturb(Gemma3ForCausalLM(Gemma3TextConfig(
                **COMMON, head_dim=16, sliding_window=4, query_pre_attn_scalar=16,
                layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"])), 200)
            gemma.config._attn_implementation = "eager"
            write_gguf(gemma, "gemma3", out_root / "gemma3.gguf")
            record(gemma, out_root, name="gemma3.gguf.json")
        if name == "llama":
            sharded = out_root / "llama_sharded"
            shutil.rmtree(sharded, ignore_errors=True)
            model.save_pretrained(sharded, safe_serialization=True, max_shard_size="20KB")
            record(model, sharded)
            bf16 = out_root / "llama_bf16"
            shutil.rmtree(bf16, ignore_errors=True)
            model.to(torch.bfloat16).save_pretrained(bf16, safe_serialization=True)
            # A fresh fp32 load: bf16-rounded weights, RoPE tables recomputed in fp32.
            reloaded = LlamaForCausalLM.from_pretrained(bf16, dtype=torch.float32, attn_implementation="eager")
            record(reloaded, bf16, {"note": "logits of the bf16-rounded weights computed in fp32"})
    print("wrote", sorted(p.name for p in out_root.iterdir()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
