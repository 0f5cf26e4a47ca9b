#!/usr/bin/env python3
"""Independent reference for `swiattn ppl`: the same GGUF model through Hugging Face
`transformers` (its own GGUF loader: gguf-py dequantization, its own q/k un-permutation and norm
handling, its own modeling code), in fp32 on the CPU.

Scores the token ids that `swiattn ppl --dump-ids` wrote (so both sides score identical tokens),
and separately reports whether transformers' own tokenization of the text gives the same ids.

    pip install torch transformers gguf sentencepiece
    python3 tools/reference_ppl.py --gguf model.gguf --ids ids.txt --text essay.txt --past 512 [--all-full]

`--all-full` sets the sliding window beyond the sequence length, which makes every layer attend to
all earlier tokens while each keeps its own RoPE base (what `--attention-pattern F` does in swiattn).
"""
import argparse
import json
import math
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gguf", required=True, type=Path)
    p.add_argument("--ids", required=True, type=Path)
    p.add_argument("--text", type=Path)
    p.add_argument("--past", type=int, default=None)
    p.add_argument("--all-full", action="store_true")
    args = p.parse_args()

    ids = [int(x) for x in args.ids.read_text().split()]
    model = AutoModelForCausalLM.from_pretrained(str(args.gguf.parent), gguf_file=args.gguf.name,
                                                 dtype=torch.float32, attn_implementation="eager")
    model.eval()
    if args.all_full:
        model.config.sliding_window = 10 ** 9
        for layer in model.model.layers:
            attn = layer.self_attn
            if getattr(attn, "sliding_window", None) is not None:
                attn.sliding_window = 10 ** 9
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp[:-1].gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1).double()
    out = {"gguf": str(args.gguf), "tokens": len(ids), "scored": len(nll), "mean_nll": nll.mean().item(),
           "perplexity": math.exp(nll.mean().item()), "all_full": args.all_full}
    if args.past is not None:
        tail = nll[args.past - 1:]
        out["past"] = {"position": args.past, "scored": len(tail), "mean_nll": tail.mean().item()}
    if args.text is not None:
        try:
            tok = AutoTokenizer.from_pretrained(str(args.gguf.parent), gguf_file=args.gguf.name)
            theirs = tok(args.text.read_text())["input_ids"][:len(ids)]
            out["tokenizer_ids_equal"] = theirs == ids
            if theirs != ids:
                first = next((i for i, (a, b) in enumerate(zip(theirs, ids)) if a != b), min(len(theirs), len(ids)))
                out["tokenizer_first_difference"] = first
        except Exception as e:  # the GGUF tokenizer conversion is optional for the NLL comparison
            out["tokenizer_error"] = str(e)[:200]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
