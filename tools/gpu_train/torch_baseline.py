"""Time training steps of a Llama-architecture model in PyTorch (HF transformers, sdpa attention),
with the batch, sequence length, accumulation and precision of a swiattn GPU run, for the ratio
reported in docs/LOG.md. Random init and random tokens: throughput does not depend on either.

    python3 tools/gpu_train/torch_baseline.py --config configs/smollm2-135m.json \
        --batch 8 --seq 1024 --accum 2 --steps 12 --warmup 3

Mirrors swiattn's step (and `swiattn bench train`): fp32 master weights with bf16 autocast,
cross-entropy in fp32, global-norm clipping at 1.0, AdamW (fused). Each step is timed up to a device
sync. Prints one JSON line: tokens/s of the median step with the fastest and slowest, the model FLOPs
rate with the same count as swiattn's MFU (6·P per token for the matmul weights + 3× the causal
attention), and the peak memory allocated and reserved by PyTorch's caching allocator.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--accum", type=int, default=2)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()

    cfg = LlamaConfig.from_json_file(a.config)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).cuda()
    if a.compile:
        model = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, fused=True)
    g = torch.Generator(device="cuda").manual_seed(0)

    def step():
        for _ in range(a.accum):
            tokens = torch.randint(0, cfg.vocab_size, (a.batch, a.seq + 1), device="cuda", generator=g)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(tokens[:, :-1]).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten()) / a.accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        torch.cuda.synchronize()
        started = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    times.sort()
    seconds = times[len(times) // 2]

    h, d = cfg.hidden_size, cfg.hidden_size // cfg.num_attention_heads
    d = getattr(cfg, "head_dim", None) or d
    per_layer = h * cfg.num_attention_heads * d * 2 + h * cfg.num_key_value_heads * d * 2 + 3 * h * cfg.intermediate_size
    matmul_params = cfg.num_hidden_layers * per_layer + h * cfg.vocab_size
    keys = a.seq * (a.seq + 1) / 2
    attention = cfg.num_hidden_layers * cfg.num_attention_heads * 4 * d * keys
    sequences = a.batch * a.accum
    flops = 3 * sequences * (2 * matmul_params * a.seq + attention)
    print(json.dumps({
        "framework": f"torch {torch.__version__}, sdpa, bf16 autocast" + (", compiled" if a.compile else ""),
        "device": torch.cuda.get_device_name(),
        "batch": a.batch, "seq": a.seq, "accum": a.accum,
        "seconds_per_step": seconds,
        "steps": a.steps,
        "tokens_per_s": sequences * a.seq / seconds,
        "tokens_per_s_min": sequences * a.seq / times[-1],
        "tokens_per_s_max": sequences * a.seq / times[0],
        "model_tflops_per_s": flops / seconds / 1e12,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
    }))


if __name__ == "__main__":
    main()
