#!/usr/bin/env python3
"""Independent reference for `swiattn eval`: multiple-choice accuracy of a GGUF model on an OLMES
request file through Hugging Face `transformers` (its own GGUF loader, tokenizer conversion and
modeling code), fp32 on the CPU, with lm-evaluation-harness's request encoding written out here:
trailing context whitespace moves to the continuation, the pair is encoded whole and the
continuation is what follows the context's own encoding; acc = argmax of the log-likelihoods,
acc_norm = argmax of log-likelihood per continuation character. A file of single continuations
(LAMBADA, whose labels are answer strings) reports lm-eval's greedy accuracy (every continuation
token is the argmax) and perplexity exp(-mean log-likelihood) instead.

    pip install torch transformers gguf
    python3 tools/reference_mc.py --gguf model.gguf --olmes requests.jsonl.gz --limit 200 --out ref.jsonl

Writes one JSON line per question (doc_id, label, pick, pick_norm, logprobs), the format of
`swiattn eval --decisions`, and prints acc and acc_norm.
"""
import argparse
import gzip
import json
import math
from collections import defaultdict
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def questions(path, limit):
    opener = gzip.open if str(path).endswith(".gz") else open
    docs = defaultdict(dict)
    labels = {}
    with opener(path, "rt") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                docs[r["doc_id"]][r["idx"]] = r["request"]
                label = r["label"]
                labels[r["doc_id"]] = int(label) if str(label).isdigit() else 0
    ids = sorted(docs)[:limit]
    return [(d, [docs[d][i] for i in range(len(docs[d]))], labels[d]) for d in ids]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gguf", required=True, type=Path)
    p.add_argument("--olmes", required=True, type=Path)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    tok = AutoTokenizer.from_pretrained(str(args.gguf.parent), gguf_file=args.gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(args.gguf.parent), gguf_file=args.gguf.name,
                                                 dtype=torch.float32, attn_implementation="eager")
    model.eval()
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    hits = hits_norm = 0
    single = []  # (log-likelihood, greedy) of single-continuation questions
    qs = questions(args.olmes, args.limit)
    with open(args.out, "w") as out, torch.no_grad():
        for doc_id, choices, label in qs:
            logprobs = []
            for c in choices:
                context, continuation = c["context"], c["continuation"]
                n = len(context) - len(context.rstrip())
                if n:
                    continuation, context = context[-n:] + continuation, context[:-n]
                whole = enc(context + continuation)
                ctx = enc(context) if context else []
                cont = whole[len(ctx):] if context else enc(continuation)
                ids = (ctx if context else [tok.eos_token_id]) + cont
                logits = model(input_ids=torch.tensor([ids[:-1]])).logits[0].float()
                logp = torch.log_softmax(logits, dim=-1)
                target = torch.tensor(ids[1:])
                picked = logp.gather(1, target.unsqueeze(1)).squeeze(1).double()
                logprobs.append(picked[-len(cont):].sum().item())
                greedy = bool((logp.argmax(-1)[-len(cont):] == target[-len(cont):]).all())
            norm = [lp / max(1, len(c["continuation"])) for lp, c in zip(logprobs, choices)]
            pick, pick_norm = max(range(len(logprobs)), key=lambda i: (logprobs[i], -i)), max(range(len(norm)), key=lambda i: (norm[i], -i))
            if len(choices) == 1:
                single.append((logprobs[0], greedy))
            hits += pick == label
            hits_norm += pick_norm == label
            out.write(json.dumps({"doc_id": doc_id, "label": label, "pick": pick, "pick_norm": pick_norm,
                                  "logprobs": logprobs, "chars": [len(c["continuation"]) for c in choices]}) + "\n")
    if len(single) == len(qs):
        ll = sum(s[0] for s in single) / len(single)
        print(json.dumps({"questions": len(qs), "acc": sum(s[1] for s in single) / len(qs), "perplexity": math.exp(-ll)}))
    else:
        print(json.dumps({"questions": len(qs), "acc": hits / len(qs), "acc_norm": hits_norm / len(qs)}))


if __name__ == "__main__":
    main()
