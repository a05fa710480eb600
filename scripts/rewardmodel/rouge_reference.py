"""Record ROUGE-1/ROUGE-L F-measures from the reference `rouge-score` package
(what HF `evaluate`'s rouge wraps, default settings: no stemmer) for the Go
tests in rewardmodel/. Run: pip install rouge-score==0.1.2; python3 this.py"""
import json, os
from rouge_score import rouge_scorer

CASES = [
    ("The cat sat on the mat!", "the cat is on a mat"),
    ("", "a b"),
    ("a b", ""),
    ("Breaking: Markets rally as rates fall", "markets rally after rate cut"),
    ("New deep-learning method for graph classification", "A deep learning approach to graph classification"),
    ("the the the the", "the"),
    ("Café au lait, s'il vous plaît — 2024 edition", "cafe au lait 2024"),
    ("Ünïcödé wörds and ÉMOJI 🎉 mixed in", "unicode words and emoji mixed in"),
    ("one two three four five six", "six five four three two one"),
    ("police arrest suspect in downtown robbery", "suspect arrested by police after robbery downtown"),
    ("x1 y2 z3", "X1 Y2 Z3"),
    ("Tabs\tand\nnewlines\r\nhere", "tabs and newlines here"),
]

def main():
    s = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    out = []
    for target, pred in CASES:
        r = s.score(target, pred)
        out.append({"target": target, "prediction": pred,
                    "rouge1": r["rouge1"].fmeasure, "rouge2": r["rouge2"].fmeasure, "rougeL": r["rougeL"].fmeasure})
    path = os.path.join(os.path.dirname(__file__), "..", "..", "rewardmodel", "testdata", "rouge_reference.json")
    with open(path, "w") as f:
        json.dump({"generator": "rouge-score 0.1.2, RougeScorer(['rouge1','rouge2','rougeL']) defaults", "cases": out}, f, indent=1, ensure_ascii=False)

if __name__ == "__main__":
    main()
