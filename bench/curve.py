"""What a search buys: per task, each search arm's re-validated mean +- std (seeds 42-44, the validation split no
search saw) against the compute it spent searching, the course settings and the fixed recipe as reference lines.

    python bench/curve.py [--out docs/img] [--rows bench/compute.csv]     # one PNG per task, from the rows

Arms of one space are joined across budgets (sweeper -> sweeper-27, wide-9 -> wide-27); a filled marker is a pick
that beats the course settings at 95% (bench/compute.py's test, paired over the validation examples)."""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import compute  # noqa: E402  (bench/compute.py)
from rows import read  # noqa: E402

LINES = {"default space": ("sweeper", "sweeper-27"), "wide space": ("wide-9", "wide-27"),
         "Trainer's search": ("trainer",), "probes": ("probes",)}
REFERENCES = {"course": ("the course settings", "0.35", "-"), "recipe": ("the recipe (warmup, 10 epochs, best kept)",
                                                                        "C3", "--")}
NAMES = {"f1": "F1", "accuracy": "accuracy", "matthews_correlation": "MCC"}
TASKS = {"mrpc": "MRPC", "rte": "RTE", "cola": "CoLA"}


def spread(rows: list[dict]) -> tuple[float, float]:
    values = [float(r["value"]) for r in rows]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot(task: str, rows: list[dict], out: Path, predictions: Path = compute.PREDICTIONS) -> Path | None:
    """The task's figure from its fp32 rows; None where no search arm has rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in rows if r["task"] == task and r["precision"] == "fp32"]
    by = {}
    for r in mine:
        by.setdefault(r["arm"], []).append(r)
    if not any(a in by for arms in LINES.values() for a in arms):
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    most = max([float(rs[0]["search_epochs"]) for rs in by.values()] + [27])
    for arm, (label, color, style) in REFERENCES.items():
        if arm in by:
            m, s = spread(by[arm])
            test = compute.versus(by[arm], by["course"], predictions) if arm != "course" and "course" in by else None
            mark = ", better at 95%" if test is not None and test.better else ""
            ax.axhline(m, color=color, linestyle=style,
                       label=f"{label}: {m:.3f} +- {s:.3f} ({len(by[arm])} seeds{mark})")
            ax.axhspan(m - s, m + s, color=color, alpha=0.12)
    course = by.get("course")
    for i, (label, arms) in enumerate(LINES.items()):
        points = [(float(by[a][0]["search_epochs"]), *spread(by[a]), a) for a in arms if a in by]
        if not points:
            continue
        color = f"C{i}"
        ax.plot([p[0] for p in points], [p[1] for p in points], color=color, label=label)
        for x, m, s, arm in points:
            test = compute.versus(by[arm], course, predictions) if course else None
            better = test is not None and test.better
            ax.errorbar([x], [m], yerr=[s], fmt="o", color=color, capsize=4,
                        markerfacecolor=color if better else "white")
    metric = mine[0]["objective"]
    ax.set_xlabel("search compute (epochs of the training set)")
    ax.set_ylabel(f"{NAMES.get(metric, metric)} on validation (mean +- std)")
    ax.set_xlim(0, most * 1.08)
    ax.set_title(f"{TASKS.get(task, task)}: what a search buys (filled: better at 95%)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # below: hides no point
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"budget-{task}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=Path, default=ROOT / "bench" / "compute.csv")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = p.parse_args()
    rows = read(args.rows)
    for task in args.tasks:
        if (path := plot(task, rows, args.out)) is not None:
            print(path)


if __name__ == "__main__":
    main()
