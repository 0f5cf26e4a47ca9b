#!/usr/bin/env python3
"""Two study rows compared question by question: the paired difference B − A of every task in
both rows' decision files (`swiattn eval --decisions`; the study's cells keep theirs as
`decisions.jsonl`), with its standard error over the shared questions or samples.

    python3 tools/study/paired.py study/cells/full-w512-s0/decisions.jsonl \
        study/cells/swiattn-b0.25-w512-s0/decisions.jsonl [--metric pick|pick_norm]

Multiple-choice lines (`doc_id`, `label`, `pick`, `pick_norm`) count 1 for a right pick; RULER lines
(`index`, `score`) count their score (0–1, printed ×100). Questions are matched by (task, doc_id) or
(task, index). A paired difference's standard error is sd(B_i − A_i)/√n: where the rows mostly
agree it is far below the two accuracies' own errors, so differences that two unpaired ± cannot
resolve can be. `A→B` counts the questions only B gets right and only A gets right.
"""
import argparse
import gzip
import json
import math
from collections import defaultdict


def load(path, metric):
    """{task: {question: value}} of one decision file."""
    out = defaultdict(dict)
    for line in (gzip.open(path, "rt") if path.endswith(".gz") else open(path)):
        if not line.strip():
            continue
        d = json.loads(line)
        if "doc_id" in d:
            out[d["task"]][("doc", d["doc_id"])] = float(d[metric] == d["label"])
        elif "index" in d and "score" in d:
            out[d["task"]][("sample", d["index"])] = float(d["score"])
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a", help="row A's decisions.jsonl (or .jsonl.gz; the reference, e.g. full)")
    p.add_argument("b", help="row B's decisions.jsonl")
    p.add_argument("--metric", default="pick", choices=["pick", "pick_norm"],
                   help="multiple-choice pick scored (acc or acc_norm)")
    args = p.parse_args()
    a, b = load(args.a, args.metric), load(args.b, args.metric)
    tasks = [t for t in a if t in b]
    if not tasks:
        raise SystemExit(f"{args.a} and {args.b} share no task")
    print("| task | n | A | B | B − A | ± (paired) | only B right / only A right |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for task in tasks:
        shared = sorted(a[task].keys() & b[task].keys())
        if not shared:
            continue
        n = len(shared)
        d = [b[task][q] - a[task][q] for q in shared]
        mean = sum(d) / n
        se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n) if n > 1 else float("nan")
        scale = 100.0 if shared[0][0] == "sample" else 1.0
        mean_a = sum(a[task][q] for q in shared) / n
        mean_b = sum(b[task][q] for q in shared) / n
        only_b = sum(1 for x in d if x > 0)
        only_a = sum(1 for x in d if x < 0)
        print(f"| {task} | {n} | {scale * mean_a:.4g} | {scale * mean_b:.4g} | {scale * mean:+.4g} "
              f"| {scale * se:.2g} | {only_b} / {only_a} |")
        missing = len(a[task]) + len(b[task]) - 2 * n
        if missing:
            print(f"|  | ({missing} in one file only, left out) | | | | | |")


if __name__ == "__main__":
    main()
