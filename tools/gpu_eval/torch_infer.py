#!/usr/bin/env python3
"""The PyTorch side of `swiattn bench infer`: the same two loops on the same model shape with random
weights and tokens, in transformers (LlamaForCausalLM, sdpa, bf16 weights).

  score:    batched forwards over `batch` sequences of `seq` tokens, fp32 log-softmax, the target
            tokens' log-probabilities and greedy flags read back to the host (what lm-eval's
            loglikelihood_rolling does per window).
  generate: greedy `generate` of exactly `new_tokens` tokens after ragged prompts (`seq - 7i mod 16`
            tokens, left-padded with an attention mask), `batch` prompts at a time; prefill time from
            a run of one new token.

One JSON line per mode, like swiattn's. Usage:
  python3 tools/gpu_eval/torch_infer.py --config configs/smollm2-135m.json --modes score,generate \
      --batch 8 --seq 4096 --new-tokens 32 --repeats 4 [--json out.jsonl]
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="configs/smollm2-135m.json")
    p.add_argument("--modes", default="score,generate")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--json")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    config = LlamaConfig.from_json_file(a.config)
    config.max_position_embeddings = max(config.max_position_embeddings, a.seq + a.new_tokens)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
    vocab = config.vocab_size
    sync = torch.cuda.synchronize

    for mode in a.modes.split(","):
        if mode == "score":
            seconds = []
            for i in range(a.repeats + 1):
                ids = torch.randint(0, vocab, (a.batch, a.seq + 1), device="cuda")
                sync()
                t = time.perf_counter()
                with torch.no_grad():
                    logits = model(ids[:, :-1]).logits
                    logp = torch.log_softmax(logits.float(), -1)
                    target = ids[:, 1:].unsqueeze(-1)
                    picked = logp.gather(-1, target).cpu()
                    greedy = (logp.argmax(-1, keepdim=True) == target).cpu()
                del logits, logp, picked, greedy
                sync()
                if i > 0:
                    seconds.append(time.perf_counter() - t)
            median = statistics.median(seconds)
            out = {"mode": "score", "tokens_per_s": a.batch * a.seq / median, "seconds_per_batch": median}
        elif mode == "generate":
            n = a.batch * (a.repeats + 1)
            prompts = [torch.randint(0, vocab, (a.seq - (i * 7) % 16,)) for i in range(n)]

            def run(group_prompts, new):
                sync()
                t = time.perf_counter()
                for g in range(0, len(group_prompts), a.batch):
                    group = group_prompts[g:g + a.batch]
                    width = max(len(x) for x in group)
                    ids = torch.zeros((len(group), width), dtype=torch.long)
                    mask = torch.zeros((len(group), width), dtype=torch.long)
                    for r, x in enumerate(group):
                        ids[r, width - len(x):] = x
                        mask[r, width - len(x):] = 1
                    with torch.no_grad():
                        model.generate(ids.cuda(), attention_mask=mask.cuda(), max_new_tokens=new,
                                       min_new_tokens=new, do_sample=False, pad_token_id=0, eos_token_id=None)
                sync()
                return time.perf_counter() - t

            warm, timed = prompts[:a.batch], prompts[a.batch:]
            run(warm, a.new_tokens)
            prefill = run(timed, 1)
            total = run(timed, a.new_tokens)
            out = {"mode": "generate", "samples_per_s": len(timed) / total,
                   "prefill_s_per_sample": prefill / len(timed),
                   "decode_tokens_per_s": len(timed) * (a.new_tokens - 1) / (total - prefill),
                   "new_tokens": a.new_tokens, "prompts": len(timed)}
        else:
            raise SystemExit(f"unknown mode {mode}")
        line = {"framework": f"torch {torch.__version__}, transformers {transformers.__version__}, sdpa",
                "pattern": "F", "dtype": "bf16", "batch": a.batch, "seq": a.seq, **out}
        print(json.dumps(line), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
