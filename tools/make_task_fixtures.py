#!/usr/bin/env python3
"""Write the task-template test fixtures: a few invented documents shaped like each regular
multiple-choice dataset (Arrow IPC streams, as `datasets` saves them) and the requests
lm-evaluation-harness builds from them (tools/reference_requests.py), which
crates/swiattn-eval/tests/tasks.rs holds our built-in task specs to.

    pip install lm-eval==0.4.13 datasets
    python3 tools/make_task_fixtures.py
"""
import os
import shutil
import subprocess
import sys
import tempfile

import datasets

ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "swiattn-eval", "tests", "fixtures", "tasks")

ARC = [
    {"id": "a1", "question": "Which tool measures the mass of a stone?",
     "choices": {"text": ["a balance", "a ruler", "a thermometer"], "label": ["A", "B", "C"]}, "answerKey": "A"},
    {"id": "a2", "question": "What do plants take in to make food?",
     "choices": {"text": ["salt", "carbon dioxide", "sand", "iron"], "label": ["1", "2", "3", "4"]}, "answerKey": "2"},
]
DOCS = {
    "piqa": [
        {"goal": "Keep a door from slamming shut", "sol1": "wedge a folded towel under it", "sol2": "paint it blue",
         "label": 0},
        {"goal": "How do you cool soup quickly?", "sol1": "put it in the oven.", "sol2": "stir it in a cold bath.",
         "label": 1},
    ],
    "hellaswag": [
        {"ind": 1, "activity_label": "Making tea", "ctx_a": "A woman fills a kettle.", "ctx_b": "she",
         "ctx": "A woman fills a kettle. she", "endings": ["puts it on the stove.", "throws it away [header] now.",
                                                            " pours the water on a plant.", "sings  a song [title]Loud"],
         "source_id": "x", "split": "val", "split_type": "indomain", "label": "0"},
        {"ind": 2, "activity_label": "Home and Garden", "ctx_a": "[header] How to water a fern [title] Check the soil.",
         "ctx_b": "IF it is dry", "ctx": "", "endings": ["water it.", "move it.", "sell it.", "paint it."],
         "source_id": "y", "split": "val", "split_type": "zeroshot", "label": "3"},
    ],
    "winogrande": [
        {"sentence": "The cup fell off the shelf because _ was too narrow.", "option1": "the cup",
         "option2": "the shelf", "answer": "2"},
        {"sentence": "Ana lent Bea her bike since _ had two.", "option1": "Ana", "option2": "Bea", "answer": "1"},
    ],
    "arc_easy": ARC,
    "arc_challenge": ARC[::-1],
    "siqa": [
        {"context": "Kim baked bread for the neighbors.", "question": "How would the neighbors feel?",
         "answerA": "grateful", "answerB": "angry", "answerC": "bored", "label": "1"},
        {"context": "Lee missed the bus.", "question": "What will Lee want to do next?", "answerA": "sleep",
         "answerB": "eat", "answerC": "walk to work", "label": "3"},
    ],
    "boolq": [
        {"question": "is a tomato a fruit", "answer": True, "passage": "Botanically, a tomato is a fruit."},
        {"question": "can penguins fly", "answer": False, "passage": "Penguins are flightless birds."},
    ],
    "openbookqa": [
        {"id": "o1", "question_stem": "A magnet will stick to",
         "choices": {"text": ["wood", "an iron nail", "glass", "paper"], "label": ["A", "B", "C", "D"]},
         "answerKey": "B"},
        {"id": "o2", "question_stem": "Water freezes at",
         "choices": {"text": ["0 degrees Celsius", "50 degrees", "90 degrees", "100 degrees Celsius"],
                     "label": ["A", "B", "C", "D"]}, "answerKey": " A"},
    ],
}


def main():
    for task, docs in DOCS.items():
        out = os.path.join(ROOT, task)
        shutil.rmtree(out, ignore_errors=True)
        with tempfile.TemporaryDirectory() as tmp:
            datasets.Dataset.from_list(docs).save_to_disk(tmp)
            os.makedirs(out)
            shutil.copy(os.path.join(tmp, "data-00000-of-00001.arrow"), out)
    here = os.path.dirname(__file__)
    subprocess.run([sys.executable, os.path.join(here, "reference_requests.py"), "--root", ROOT,
                    "--out", os.path.join(ROOT, "lm_eval_requests.jsonl")], check=True)


if __name__ == "__main__":
    main()
