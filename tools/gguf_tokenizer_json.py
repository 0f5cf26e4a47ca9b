#!/usr/bin/env python3
"""Rebuild a GGUF file's tokenizer with transformers' own GGUF converter and save it as a
`tokenizer.json`: an independent rebuild to hold swiattn's (`tokenizer_from_gguf`) against. Needs
transformers, gguf and tokenizers (pip), not torch: only the metadata is read, so transformers'
check for torch (which it needs for tensors) is set aside.

    python3 tools/gguf_tokenizer_json.py MODEL.gguf OUT.json

Then `swiattn data prepare` the same text once with `--tokenizer MODEL.gguf` and once with
`--tokenizer OUT.json`: equal shards and vocabulary fingerprints in `meta.json` (docs/LOG.md,
2026-12-06, second session).
"""
import argparse

import transformers.modeling_gguf_pytorch_utils as gguf_utils
from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("gguf")
    p.add_argument("out")
    a = p.parse_args()
    gguf_utils.is_torch_available = lambda: True
    parsed = gguf_utils.load_gguf_checkpoint(a.gguf, return_tensors=False)
    tokenizer, _ = convert_gguf_tokenizer(parsed["config"]["model_type"], parsed["tokenizer"])
    tokenizer.save(a.out)
    print(f"{a.out}: {tokenizer.get_vocab_size()} tokens")


if __name__ == "__main__":
    main()
