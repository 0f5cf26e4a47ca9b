#!/usr/bin/env python3
"""Compare two per-question decision files (`swiattn eval --decisions`, `tools/reference_mc.py --out`)
question by question: picks for acc and acc_norm, and the largest log-likelihood difference. A
disagreement counts as a tie when the two choices involved are within TOL of each other on either side.

    python3 tools/compare_decisions.py ours.jsonl ref.jsonl [--tol 1e-3] [--task piqa]

Questions are matched by (task, doc_id) when both files name tasks (`swiattn eval --tasks …`), else
by doc_id (`--task` picks one task's lines from a file that names them); questions in only one file
(a smaller --limit on one side) are counted and left out.
"""
import argparse
import json


def load(path, task):
    rows = [d for d in map(json.loads, open(path)) if d and "doc_id" in d]
    return [d for d in rows if task is None or d.get("task", task) == task]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ours")
    p.add_argument("ref")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--task")
    a = p.parse_args()
    ours, ref = load(a.ours, a.task), load(a.ref, a.task)
    named = all("task" in d for d in ours + ref)
    key = lambda d: f'{d["task"]}/{d["doc_id"]}' if named else d["doc_id"]
    ours, ref = {key(d): d for d in ours}, {key(d): d for d in ref}
    common = ours.keys() & ref.keys()
    assert common, "the files share no questions"
    only = len(ours) + len(ref) - 2 * len(common)
    ours, ref = {k: ours[k] for k in common}, {k: ref[k] for k in common}
    max_diff = 0.0
    report = {}
    for key in ("pick", "pick_norm"):
        same = ties = 0
        differ = []
        for doc, o in ours.items():
            r = ref[doc]
            max_diff = max(max_diff, max(abs(x - y) for x, y in zip(o["logprobs"], r["logprobs"])))
            if o[key] == r[key]:
                same += 1
                continue
            i, j = o[key], r[key]
            value = lambda d, c: d["logprobs"][c] / (max(1, d["chars"][c]) if key == "pick_norm" else 1)
            gap = min(abs(value(o, i) - value(o, j)), abs(value(r, i) - value(r, j)))
            if gap < a.tol:
                ties += 1
            else:
                differ.append(doc)
        report[key] = {"same": same, "ties": ties, "different": differ}
    acc = lambda d, k: sum(x[k] == x["label"] for x in d.values()) / len(d)
    print(json.dumps({"questions": len(ours), "in_one_file_only": only, "max_abs_logprob_diff": max_diff,
                      "acc": [acc(ours, "pick"), acc(ref, "pick")], "acc_norm": [acc(ours, "pick_norm"), acc(ref, "pick_norm")],
                      **report}, indent=1))


if __name__ == "__main__":
    main()
