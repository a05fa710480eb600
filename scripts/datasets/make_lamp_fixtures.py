#!/usr/bin/env python3
"""Writes the small LaMP-format fixtures under datasets/testdata/lamp/ (committed).

Hand-made questions in LaMP's exact shapes for tasks 1, 2M, 2N, 3-7, with the
quirks real files have: unicode, quotes, HTML-ish text, dates (time-based
split), a numeric score, a numeric id and an unknown profile field.
Run from the repository root: python3 scripts/datasets/make_lamp_fixtures.py
"""
import json, os

ROOT = "datasets/testdata/lamp"

INPUTS = {
    "LaMP_1": lambda i: f'For an author who has written the paper with the title "Paper {i} on graphs", which reference is related? Just answer with [1] or [2] without explanation. [1]: "Spectral methods {i}" [2]: "Caf\u00e9 <b>queues</b> {i}"',
    "LaMP_2M": lambda i: f"Which tag does this movie relate to among the following tags? Just answer with the tag name without further explanation. tags: [sci-fi, comedy, classic] description: A robot {i} learns to \"laugh\" & cry.",
    "LaMP_2N": lambda i: f"Which category does this article relate to among the following categories? Just answer with the category name without further explanation. categories: [travel, politics] article: Voters {i} head to the polls in M\u00fcnchen.",
    "LaMP_3": lambda i: f"What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 without further explanation. review: Battery {i} lasts \u2014 mostly. <3",
    "LaMP_4": lambda i: f"Generate a headline for the following article: City {i} opens a new park\nwith two lines.",
    "LaMP_5": lambda i: f"Generate a title for the following abstract of a paper: We study {i} graphs: tabs\there.",
    "LaMP_6": lambda i: f"Generate a subject for the following email: Hi team, meeting {i} moved to 3pm \U0001F600",
    "LaMP_7": lambda i: f"Paraphrase the following tweet without any explanation before or after it: loving day {i} #sun",
}
FIELDS = {
    "LaMP_1": ["title", "abstract"], "LaMP_2M": ["description", "tag"], "LaMP_2N": ["category", "text", "title"],
    "LaMP_3": ["text", "score"], "LaMP_4": ["title", "text"], "LaMP_5": ["title", "abstract"],
    "LaMP_6": ["text", "title"], "LaMP_7": ["text"],
}
OUTPUTS = {
    "LaMP_1": lambda i: ["[1]", "[2]"][i % 2], "LaMP_2M": lambda i: ["sci-fi", "comedy"][i % 2],
    "LaMP_2N": lambda i: ["politics", "travel"][i % 2], "LaMP_3": lambda i: str(1 + i % 5),
    "LaMP_4": lambda i: f"Park {i} opens", "LaMP_5": lambda i: f"On graphs {i}",
    "LaMP_6": lambda i: f"Meeting {i} moved", "LaMP_7": lambda i: f"day {i} is lovely \u2600",
}
OUTNAME = {"LaMP_2M": "LaMP_2", "LaMP_2N": "LaMP_2"}


def value(task, field, i, j):
    if field == "score":
        return str(1 + (i + j) % 5)
    if field == "tag":
        return ["sci-fi", "comedy", "classic"][(i + j) % 3]
    if field == "category":
        return ["travel", "politics"][(i + j) % 2]
    return f"{field} {i}.{j} \u00e9t\u00e9 \"q\" <x>"


def write(task, scheme):
    qs, golds = [], []
    for i in range(3):
        prof = []
        for j in range(2 + i):
            item = {"id": f"{i}{j}0"}
            for f in FIELDS[task]:
                item[f] = value(task, f, i, j)
            if scheme == "time":
                item["date"] = f"20{10 + j}-{1 + i}-{5 + j}"
            prof.append(item)
        q = {"id": f"{100 + i}", "input": INPUTS[task](i), "profile": prof}
        qs.append(q)
        golds.append({"id": q["id"], "output": OUTPUTS[task](i)})
    if task == "LaMP_3":
        qs[1]["profile"][0]["score"] = 4          # numeric score, as some dumps have
        qs[2]["id"] = 102                          # numeric id stays numeric
        golds[2]["id"] = 102
        qs[0]["profile"][1]["helpful"] = [1, 2]    # a field LaMP-3 does not name
    if task == "LaMP_1":
        qs[0]["profile"] = []                      # an empty profile
    d = os.path.join(ROOT, scheme, task)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "dev_questions.json"), "w", encoding="utf-8") as f:
        json.dump(qs, f, ensure_ascii=False, indent=1)
    with open(os.path.join(d, "dev_outputs.json"), "w", encoding="utf-8") as f:
        json.dump({"task": OUTNAME.get(task, task), "golds": golds}, f, ensure_ascii=False, indent=1)


for t in INPUTS:
    write(t, "user")
for t in ["LaMP_1", "LaMP_2M", "LaMP_3", "LaMP_4"]:
    write(t, "time")
