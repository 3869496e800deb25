"""A built-in set of arithmetic word problems for training on a CPU with the embedded 135M model.

The demo set (14 problems) is too small to train on. These problems are generated from templates by a fixed seed,
so the shipped file `workbench/data/train_problems.jsonl` can be rebuilt exactly:

    python -m workbench.training.problems            # rewrites workbench/data/train_problems.jsonl
    python -m workbench.training.problems --check    # exits 1 if the shipped file differs

Each problem has a question, a short reference solution ending in \\boxed{answer}, a short step-by-step reasoning
trace (the teacher's SFT target), and a split: "train" or "heldout" (never trained on; used to show learning).

A third split, "test" (`N_TEST` problems), is generated on demand from its own seed and never shipped: the same
templates, none of its questions in the shipped file. It is the larger student test set of the teaching loop, so a
student's gain can be told from noise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

SEED = 20250612
N_PROBLEMS = 480
N_HELDOUT = 64
FILE = "data/train_problems.jsonl"
TEST_SEED = SEED + 1
N_TEST = 256

NAMES = ["Mia", "Tom", "Ava", "Leo", "Sara", "Omar", "Lena", "Ben", "Nina", "Raj", "Emma", "Kai", "Zoe", "Ivan",
         "Maya", "Sam", "Lucy", "Hugo", "Ana", "Finn"]
ITEMS = ["apples", "stickers", "marbles", "pencils", "books", "cookies", "shells", "stamps", "cards", "balloons"]
PLACES = ["box", "bag", "basket", "jar", "crate", "shelf"]
GOODS = [("notebook", "notebooks"), ("pen", "pens"), ("ticket", "tickets"), ("sandwich", "sandwiches"),
         ("toy car", "toy cars"), ("plant", "plants")]


def _pick(rng: random.Random, seq):
    return seq[rng.randrange(len(seq))]


def _add(rng):
    n, it = _pick(rng, NAMES), _pick(rng, ITEMS)
    a, b = rng.randint(5, 60), rng.randint(3, 40)
    q = _pick(rng, [f"{n} has {a} {it} and gets {b} more. How many {it} does {n} have now?",
                    f"There are {a} {it} in a {_pick(rng, PLACES)}. {n} puts in {b} more. How many {it} are in it now?"])
    t = _pick(rng, [f"{n} starts with {a} {it}. Getting more means adding, so we add {b} to {a}: {a} + {b} = {a + b}. "
                    f"So the answer is {a + b}.",
                    f"We begin with {a} and {b} more are added. Adding gives {a} + {b} = {a + b}. "
                    f"That leaves {a + b} {it} in total."])
    return q, f"{a} + {b} = {a + b}. \\boxed{{{a + b}}}", t


def _sub(rng):
    n, it = _pick(rng, NAMES), _pick(rng, ITEMS)
    a = rng.randint(15, 90)
    b = rng.randint(2, a - 3)
    q = _pick(rng, [f"{n} has {a} {it} and gives away {b}. How many {it} does {n} have left?",
                    f"A {_pick(rng, PLACES)} holds {a} {it}. {n} takes out {b}. How many {it} remain?"])
    t = _pick(rng, [f"We start from {a} {it}. Taking {b} away means subtracting: {a} - {b} = {a - b}. "
                    f"So {a - b} {it} are left.",
                    f"{b} of the {a} {it} are removed, so we subtract {b} from {a}. {a} - {b} = {a - b}, "
                    f"which is the answer."])
    return q, f"{a} - {b} = {a - b}. \\boxed{{{a - b}}}", t


def _mul(rng):
    n, it, pl = _pick(rng, NAMES), _pick(rng, ITEMS), _pick(rng, PLACES)
    a, b = rng.randint(2, 12), rng.randint(3, 15)
    q = _pick(rng, [f"{n} has {a} {pl}s with {b} {it} in each. How many {it} does {n} have in total?",
                    f"Each {pl} holds {b} {it}. How many {it} are in {a} {pl}s?"])
    t = _pick(rng, [f"There are {a} equal groups of {b}, so we multiply: {a} × {b} = {a * b}. "
                    f"In total there are {a * b} {it}.",
                    f"Every {pl} has the same number, {b}. With {a} {pl}s the total is {a} × {b} = {a * b}."])
    return q, f"{a} × {b} = {a * b}. \\boxed{{{a * b}}}", t


def _div(rng):
    n, it = _pick(rng, NAMES), _pick(rng, ITEMS)
    b, k = rng.randint(2, 9), rng.randint(2, 12)
    a = b * k
    q = _pick(rng, [f"{n} shares {a} {it} equally among {b} friends. How many {it} does each friend get?",
                    f"{a} {it} are packed equally into {b} {_pick(rng, PLACES)}s. How many {it} go in each?"])
    t = _pick(rng, [f"Sharing equally means dividing. {a} ÷ {b} = {k}, because {b} × {k} = {a}. "
                    f"So each gets {k}.",
                    f"We split {a} into {b} equal parts: {a} ÷ {b} = {k}. Check: {k} × {b} = {a}."])
    return q, f"{a} ÷ {b} = {k}. \\boxed{{{k}}}", t


def _change(rng):
    n = _pick(rng, NAMES)
    one, many = _pick(rng, GOODS)
    k, p = rng.randint(2, 6), rng.randint(2, 9)
    bill = _pick(rng, [20, 50, 100])
    while k * p >= bill:
        k -= 1
    cost = k * p
    q = f"{n} buys {k} {many if k > 1 else one} at ${p} each and pays with a ${bill} bill. How much change does {n} get?"
    t = (f"First find the cost: {k} × {p} = {cost} dollars. Then the change is what is left of the bill: "
         f"{bill} - {cost} = {bill - cost}. So {n} gets ${bill - cost} back.")
    return q, f"{k} × {p} = {cost}, and {bill} - {cost} = {bill - cost}. \\boxed{{{bill - cost}}}", t


def _more(rng):
    n1, n2 = rng.sample(NAMES, 2)
    it = _pick(rng, ITEMS)
    a = rng.randint(20, 80)
    b = rng.randint(3, a - 5)
    q = f"{n1} has {a} {it} and {n2} has {b} {it}. How many more {it} does {n1} have than {n2}?"
    t = (f"'How many more' asks for the difference between the two amounts. {a} - {b} = {a - b}, "
         f"so {n1} has {a - b} more.")
    return q, f"{a} - {b} = {a - b}. \\boxed{{{a - b}}}", t


def _perimeter(rng):
    w, h = rng.randint(2, 20), rng.randint(2, 20)
    q = f"A rectangle is {w} cm wide and {h} cm long. What is its perimeter in cm?"
    t = (f"The perimeter is the distance all the way around: two widths and two lengths. "
         f"{w} + {h} = {w + h}, and 2 × {w + h} = {2 * (w + h)}. So the perimeter is {2 * (w + h)} cm.")
    return q, f"2 × ({w} + {h}) = {2 * (w + h)}. \\boxed{{{2 * (w + h)}}}", t


def _two_step(rng):
    n, it = _pick(rng, NAMES), _pick(rng, ITEMS)
    a, b = rng.randint(10, 40), rng.randint(5, 30)
    c = rng.randint(2, a + b - 2)
    q = f"{n} has {a} {it}, finds {b} more, then gives {c} to a friend. How many {it} does {n} have now?"
    t = (f"Do it in two steps. After finding more: {a} + {b} = {a + b}. After giving some away: "
         f"{a + b} - {c} = {a + b - c}. So {n} has {a + b - c} {it}.")
    return q, f"{a} + {b} = {a + b}, and {a + b} - {c} = {a + b - c}. \\boxed{{{a + b - c}}}", t


def _average(rng):
    n = _pick(rng, NAMES)
    m = rng.randint(4, 30)
    d1, d2 = rng.randint(0, m - 1), rng.randint(0, m - 1)
    xs = [m - d1, m + d1 + d2, m - d2]
    s = sum(xs)
    q = f"{n} scored {xs[0]}, {xs[1]} and {xs[2]} points in three games. What is the average score?"
    t = (f"The average is the total divided by the number of games. Total: {xs[0]} + {xs[1]} + {xs[2]} = {s}. "
         f"Then {s} ÷ 3 = {m}. So the average is {m}.")
    return q, f"({xs[0]} + {xs[1]} + {xs[2]}) ÷ 3 = {s} ÷ 3 = {m}. \\boxed{{{m}}}", t


def _minutes(rng):
    n = _pick(rng, NAMES)
    h, mnt = rng.randint(1, 4), rng.randint(5, 55)
    q = f"{n} reads for {h} hour{'s' if h > 1 else ''} and {mnt} minutes. How many minutes is that in total?"
    t = (f"One hour has 60 minutes, so {h} hour{'s' if h > 1 else ''} is {h} × 60 = {60 * h} minutes. "
         f"Adding the extra minutes: {60 * h} + {mnt} = {60 * h + mnt}.")
    return q, f"{h} × 60 + {mnt} = {60 * h + mnt}. \\boxed{{{60 * h + mnt}}}", t


KINDS: dict[str, Callable] = {"addition": _add, "subtraction": _sub, "multiplication": _mul, "division": _div,
                              "change": _change, "comparison": _more, "perimeter": _perimeter,
                              "two_step": _two_step, "average": _average, "time": _minutes}


def _draw(rng: random.Random, n: int, taken: set[str]) -> list[dict]:
    """`n` new problems, the templates in turn, skipping questions in `taken` (which grows)."""
    kinds = list(KINDS)
    rows: list[dict] = []
    while len(rows) < n:
        kind = kinds[len(rows) % len(kinds)]
        q, s, t = KINDS[kind](rng)
        if q in taken:
            continue
        taken.add(q)
        rows.append({"topic": kind, "question": q, "solution": s, "reasoning_trace": t})
    return rows


def make_problems(n: int = N_PROBLEMS, n_heldout: int = N_HELDOUT, seed: int = SEED) -> list[dict]:
    """Generate the problem set deterministically; the last `n_heldout` (after a seeded shuffle) are held out."""
    rng = random.Random(seed)
    rows = _draw(rng, n, set())
    rng.shuffle(rows)
    for i, r in enumerate(rows):
        r["id"] = f"arith-{i:04d}"
        r["split"] = "heldout" if i >= n - n_heldout else "train"
    return [{k: r[k] for k in ("id", "split", "topic", "question", "solution", "reasoning_trace")} for r in rows]


def _shipped() -> list[dict]:
    text = resources.files("workbench").joinpath(FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def make_test_problems(n: int = N_TEST, seed: int = TEST_SEED) -> list[dict]:
    """`n` problems from the same templates and a different seed, none of them in the shipped train/heldout file."""
    rows = _draw(random.Random(seed), n, {r["question"] for r in _shipped()})
    return [{"id": f"arith-test-{i:04d}", "split": "test", **r} for i, r in enumerate(rows)]


def load_train_problems(split: str | None = None) -> list[dict]:
    """The problems of a split: "train" or "heldout" (shipped), "test" (generated), None or "all" (the shipped ones)."""
    if split == "test":
        return make_test_problems()
    return [r for r in _shipped() if split in (None, "all") or r["split"] == split]


def _render(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the shipped file is not what the seed gives")
    args = ap.parse_args(argv)
    path = Path(__file__).resolve().parent.parent / FILE
    text = _render(make_problems())
    if args.check:
        same = path.is_file() and path.read_text(encoding="utf-8") == text
        print(f"{path}: {'up to date' if same else 'differs from the generator'}")
        return 0 if same else 1
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
