#!/usr/bin/env python3
"""PyTorch baselines for `swiattn bench attention`, timed in the same call on the same GPU.

For every (N, head dim) of the swiattn run: PyTorch SDPA with full causal attention — as PyTorch
dispatches it, and pinned to each of its fused backends (cuDNN, FlashAttention-2, memory-efficient)
— and FlexAttention with the block masks of the same attention: causal (r = 1), sliding window
(q - w < k <= q, r = 0) and routed (a random r·N of the queries full, the rest sliding), forward
and forward+backward, bf16, median of CUDA-event timings. Then two tables that put swiattn's rows
(`--ours`, the JSON of `swiattn bench attention --json`) next to them as ratios: routed against
FlexAttention, and full causal against each SDPA backend. FlashAttention-2 is the baseline of
swiattn's instruction class (`mma.sync` from registers, no TMA or `wgmma`); cuDNN's Hopper kernels
use both.

Before timing, each configuration checks FlexAttention against SDPA with an explicit boolean mask,
and every SDPA backend against an fp32 causal reference (N = 1024): a baseline that computes
something else would make the ratios meaningless.

usage: torch_attention.py --ours ours.json [--out torch.json] [--reps 10]
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

# One compiled kernel per (shape, dtype, requires_grad): more than dynamo's default limit of 8.
torch._dynamo.config.recompile_limit = 256
torch._dynamo.config.accumulated_recompile_limit = 4096
flex = torch.compile(flex_attention, dynamic=False)

# SDPA's fused backends, each pinned with `sdpa_kernel`; "sdpa-causal" is PyTorch's own choice.
SDPA_BACKENDS = {
    "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION,
    "sdpa-flash2": SDPBackend.FLASH_ATTENTION,
    "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
}


def causal(q, k, v, backend=None):
    if backend is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with sdpa_kernel([backend]):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def available(backend, q, k, v):
    try:
        causal(q, k, v, backend)
        return True
    except RuntimeError:
        return False


def default_backend(q, k, v):
    try:
        return SDPBackend(torch._fused_sdp_choice(q, k, v, is_causal=True)).name
    except Exception as e:  # a private API: report, don't fail the run
        return f"unknown ({type(e).__name__})"


def route_mask(n, ratio, seed):
    g = torch.Generator().manual_seed(seed)
    n_fa = round(n * ratio)
    fa = torch.zeros(n, dtype=torch.bool)
    fa[torch.randperm(n, generator=g)[:n_fa]] = True
    return fa.cuda()


def mask_mod_for(fa, window):
    # The window predicate of swiattn: query q sees key k iff q - w < k <= q (FA queries: k <= q).
    def mask_mod(b, h, q, k):
        return (k <= q) & (fa[q] | (q - k < window))

    return mask_mod


def bench(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def inputs(b, h, n, d, grad):
    return [torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16, requires_grad=grad) for _ in range(3)]


def check(d, window):
    n, b, h = 1024, 1, 4
    q, k, v = inputs(b, h, n, d, False)
    for ratio in (0.0, 0.25, 1.0):
        fa = route_mask(n, ratio, 1)
        mask_mod = mask_mod_for(fa, window)
        block = create_block_mask(mask_mod, None, None, n, n)
        qi, ki = torch.arange(n, device="cuda")[:, None], torch.arange(n, device="cuda")[None, :]
        dense = (ki <= qi) & (fa[:, None] | (qi - ki < window))
        want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=dense)
        got = flex(q, k, v, block_mask=block).float()
        err = (got - want).abs().max().item()
        assert err < 3e-2, f"FlexAttention disagrees with masked SDPA (d={d}, r={ratio}): {err}"
    want = causal(q.float(), k.float(), v.float())
    for name, backend in SDPA_BACKENDS.items():
        if available(backend, q, k, v):
            err = (causal(q, k, v, backend).float() - want).abs().max().item()
            assert err < 3e-2, f"SDPA {name} disagrees with the fp32 causal reference (d={d}): {err}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--out")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    ours = json.load(open(args.ours))
    configs = sorted({(r["len"], r["head_dim"]) for r in ours})
    ratios = sorted({r["fa_ratio"] for r in ours if r["kind"] == "routed"})
    passes = sorted({r["pass"] for r in ours})
    b, h, w = args.batch, args.heads, args.window
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, batch {b}, heads {h}, window {w}, bf16")
    for d in sorted({d for _, d in configs}):
        check(d, w)
    print("FlexAttention matches masked SDPA on every checked mask; every available SDPA backend matches fp32")

    rows = []
    for n, d in configs:
        for pass_ in passes:
            grad = pass_ == "fwd+bwd"
            q, k, v = inputs(b, h, n, d, grad)
            do = torch.randn_like(q)

            def run(f):
                def go():
                    out = f()
                    if grad:
                        out.backward(do)
                try:
                    return bench(go, args.reps)
                except torch.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    return None

            rows.append(dict(len=n, head_dim=d, kind="sdpa-causal", fa_ratio=1.0, pass_=pass_,
                             backend=default_backend(q, k, v), ms=run(lambda: causal(q, k, v))))
            for name, backend in SDPA_BACKENDS.items():
                ok = available(backend, q, k, v)
                rows.append(dict(len=n, head_dim=d, kind=name, fa_ratio=1.0, pass_=pass_,
                                 ms=run(lambda: causal(q, k, v, backend)) if ok else None))
            for ratio in ratios:
                fa = route_mask(n, ratio, 2)
                block = create_block_mask(mask_mod_for(fa, w), None, None, n, n)
                rows.append(dict(len=n, head_dim=d, kind="flex", fa_ratio=ratio, pass_=pass_,
                                 ms=run(lambda: flex(q, k, v, block_mask=block))))
            del q, k, v, do
            torch.cuda.empty_cache()
    if args.out:
        json.dump(rows, open(args.out, "w"), indent=1)

    # The joined table: ours (routed at each r, and our full kernel vs SDPA) as ratios.
    def theirs(n, d, kind, r, p):
        return next(x["ms"] for x in rows if (x["len"], x["head_dim"], x["kind"], x["pass_"]) == (n, d, kind, p)
                    and abs(x["fa_ratio"] - r) < 1e-9)

    # None: out of memory, or (SDPA backends) not available for this shape.
    ms = lambda t: "n/a" if t is None else f"{t:.3f}"
    rel = lambda a, b: "-" if a is None else f"{a / b:.3f}"
    print("\n| N | d | pass | r | swiattn ms | vs ideal | FlexAttention ms | Flex / swiattn | SDPA causal ms | SDPA / swiattn full |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for x in ours:
        if x["kind"] != "routed":
            continue
        n, d, p, r = x["len"], x["head_dim"], x["pass"], x["fa_ratio"]
        flex_ms = theirs(n, d, "flex", r, p)
        sdpa_ms = theirs(n, d, "sdpa-causal", 1.0, p)
        full = next(y["ms"] for y in ours if (y["len"], y["head_dim"], y["kind"], y["pass"]) == (n, d, "full", p))
        print(f"| {n} | {d} | {p} | {r:g} | {x['ms']:.3f} | {x['vs_ideal']:.3f} | {ms(flex_ms)} | "
              f"{rel(flex_ms, x['ms'])} | {ms(sdpa_ms)} | {rel(sdpa_ms, full)} |")

    print("\nFull causal: swiattn's full kernel against each SDPA backend (ratio = theirs / ours, > 1: ours faster)")
    names = ["sdpa-causal", *SDPA_BACKENDS]
    print("| N | d | pass | swiattn ms | SDPA picks | " + " | ".join(f"{k} ms | ratio" for k in names) + " |")
    print("|---|---|---|---|---|" + "---|---|" * len(names))
    for y in ours:
        if y["kind"] != "full":
            continue
        n, d, p = y["len"], y["head_dim"], y["pass"]
        picked = next(x["backend"] for x in rows if (x["len"], x["head_dim"], x["kind"], x["pass_"]) == (n, d, "sdpa-causal", p))
        cells = [f"{ms(t)} | {rel(t, y['ms'])}" for t in (theirs(n, d, k, 1.0, p) for k in names)]
        print(f"| {n} | {d} | {p} | {y['ms']:.3f} | {picked} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
