#!/usr/bin/env python3
"""Writes datasets/testdata/lamp_download/ (committed): tiny hand-made LaMP files for tasks 2, 3 and 4
in LaMP's official download layout, LaMP_N/{train,dev,test}/{split}_questions.json and
{split}_outputs.json (test golds withheld, as LaMP does). Each question is a different user whose
profile shows a preference the gold follows. Used by the end-to-end `tagpr run` tests.
Run from the repository root: python3 scripts/datasets/make_lamp_download.py
"""
import json, os

ROOT = "datasets/testdata/lamp_download"
TAGS = ["sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy", "classic",
        "psychology", "fantasy", "romance", "thought-provoking", "social commentary", "violence", "true story"]
MOVIES = {"sci-fi": "a crew of robots flies to a distant star", "comedy": "two clumsy friends open a bakery",
          "romance": "a painter falls in love in Paris", "action": "a detective chases smugglers across rooftops",
          "fantasy": "a young wizard finds a hidden dragon", "classic": "a silent film about a tramp in the city"}
REVIEWS = [("The battery died after a day and support never answered.", "1"),
           ("It works, but the case scratches easily.", "3"),
           ("Great sound, fits well, would buy again.", "5"),
           ("Decent value for the price, nothing special.", "3"),
           ("Broke within a week. Do not buy.", "1"),
           ("Excellent build and fast shipping.", "5")]
ARTICLES = [("The city council approved a new park near the river on Monday.", "Council approves river park"),
            ("Local schools will start the year a week later because of repairs.", "Schools delay start for repairs"),
            ("A storm knocked out power to thousands of homes overnight.", "Storm cuts power to thousands"),
            ("The museum reopened its ancient history wing after two years.", "Museum reopens history wing"),
            ("Farmers report a record apple harvest this autumn.", "Record apple harvest for farmers"),
            ("The airport adds three new routes to southern Europe.", "Airport adds three Europe routes")]
SPLITS = {"train": 6, "dev": 3, "test": 2}


def write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def lamp2(u):
    fav = list(MOVIES)[u % len(MOVIES)]
    other = list(MOVIES)[(u + 2) % len(MOVIES)]
    profile = [{"id": f"{u}0{j}", "description": MOVIES[t] + f" (part {j + 1})", "tag": t}
               for j, t in enumerate([fav, fav, other, fav])]
    desc = MOVIES[fav].replace("a ", "another ", 1)
    q = ("Which tag does this movie relate to among the following tags? Just answer with the tag name without "
         "further explanation. tags: [" + ", ".join(TAGS) + "] description: " + desc)
    return q, profile, fav


def lamp3(u):
    base = [1, 3, 5][u % 3]
    profile = [{"id": f"{u}0{j}", "text": REVIEWS[(u + j) % len(REVIEWS)][0], "score": str(base)} for j in range(4)]
    text, _ = REVIEWS[(u + 4) % len(REVIEWS)]
    q = ("What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
         "without further explanation. review: " + text)
    return q, profile, str(base)


def lamp4(u):
    profile = [{"id": f"{u}0{j}", "title": ARTICLES[(u + j) % len(ARTICLES)][1], "text": ARTICLES[(u + j) % len(ARTICLES)][0]}
               for j in range(3)]
    text, title = ARTICLES[(u + 3) % len(ARTICLES)]
    return "Generate a headline for the following article: " + text, profile, title


def main():
    for task, make in [("LaMP_2", lamp2), ("LaMP_3", lamp3), ("LaMP_4", lamp4)]:
        u = 0
        for split, n in SPLITS.items():
            questions, golds = [], []
            for _ in range(n):
                q, profile, out = make(u)
                qid = f"{task[-1]}{u:03d}"
                questions.append({"id": qid, "input": q, "profile": profile})
                golds.append({"id": qid, "output": out})
                u += 1
            write(f"{ROOT}/{task}/{split}/{split}_questions.json", questions)
            if split != "test":
                write(f"{ROOT}/{task}/{split}/{split}_outputs.json", {"task": task, "golds": golds})


if __name__ == "__main__":
    main()
