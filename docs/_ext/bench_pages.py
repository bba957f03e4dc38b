"""The benchmark tables and figures of docs/benchmarks.md, generated at each docs build from the rows the benchmarks
append to bench/*.csv (bench/compute.py, bench/portfolio.py, bench/selection.py): a new row, arm or task shows up
in the docs without editing them."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import compute  # noqa: E402  (bench/compute.py: its arms, the course settings, the pooled std)
import portfolio  # noqa: E402
from rows import read  # noqa: E402

NAMES = {"f1": "F1", "accuracy": "accuracy", "matthews_correlation": "MCC"}
TASKS = {"mrpc": "MRPC", "rte": "RTE", "cola": "CoLA", "sst2": "SST-2", "stsb": "STS-B"}


def task_name(task: str) -> str:
    return TASKS.get(task, task.upper())


def arms(rows: list[dict]) -> dict[tuple[str, str], dict[str, list[dict]]]:
    """(task, precision) -> arm -> its re-validation rows, in the order the rows were written."""
    out: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for r in rows:
        out.setdefault((r["task"], r["precision"]), {}).setdefault(r["arm"], []).append(r)
    return out


def spread(rs: list[dict]) -> tuple[float, float, int]:
    values = [float(r["value"]) for r in rs]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def pick(r: dict) -> str:
    text = f"{float(r['lr']):.2g}, {r['epochs']}, {r['batch_size']}"
    same = (float(r["lr"]), int(r["epochs"]), int(r["batch_size"])) == tuple(compute.COURSE.values())
    return text + (" (the course settings)" if same and r["arm"] != "course" else "")


def compute_table(rows: list[dict]) -> str:
    """One row per (task, precision, arm): the pick, the search's compute, the re-validated mean +- std over the
    seeds, and the difference to sweeper's default arm against the two arms' pooled std."""
    lines = ["| task | arm | pick (lr, epochs, batch) | search compute (epochs), trials | "
             "re-validated mean +- std (seeds) | against sweeper's default (pooled std) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for (task, precision), by_arm in arms(rows).items():
        base = spread(by_arm["sweeper"]) if "sweeper" in by_arm else None
        for arm, rs in by_arm.items():
            m, s, n = spread(rs)
            r0 = rs[0]
            seeds = ", ".join(f"{float(r['value']):.3f}" for r in rs)
            vs = ("" if base is None or arm == "sweeper" else
                  f"{m - base[0]:+.3f} ({compute.pooled(base, (m, s, n)):.3f})")
            search = (f"{float(r0['search_epochs']):.2f}, {r0['search_trials']}" if int(r0["search_trials"])
                      else "no search")
            metric = NAMES.get(r0["objective"], r0["objective"])
            lines.append(f"| {task_name(task)} ({precision}) | {arm} | {pick(r0)} | {search} | {metric} **{m:.3f} +- "
                         f"{s:.3f}** ({seeds}) | {vs} |")
    return "\n".join(lines)


def targets(rows: list[dict]) -> str:
    """The search benchmark's targets, judged on the rows as bench/compute.py --report-only judges them."""
    lines, beyond = [], 0
    for (task, precision), by_arm in arms(rows).items():
        if "sweeper" not in by_arm:
            continue
        me = spread(by_arm["sweeper"])
        others = {a: spread(rs) for a, rs in by_arm.items() if a != "sweeper" and a not in compute.VARIANTS}
        course = others.get("course")
        best = all(me[0] >= v[0] for v in others.values())
        above = bool(course and me[0] - course[0] > compute.pooled(me, course))
        beyond += above
        lines.append(f"- {task_name(task)} ({precision}): sweeper's pick at least as good as every other arm's: "
                     f"**{'met' if best else 'not met'}**; more than one pooled std above the course settings: "
                     f"**{'yes' if above else 'no'}**")
    judged = len(lines)
    lines.append(f"- beyond the pooled std on at least 2 of {judged} tasks: **{'met' if beyond >= 2 else 'not met'}**"
                 f" ({beyond} of {judged})")
    return "\n".join(lines)


def portfolio_table() -> str:
    rows = portfolio.done(BENCH / "portfolio.csv")
    tasks = list(dict.fromkeys(k[0] for k in rows))
    return "\n".join(portfolio.table(rows, tasks))


def selection_table() -> str:
    """bench/selection.py's arms: the course settings trained on all the training set and on what a selection
    split leaves, each over its seeds."""
    by_size: dict[tuple[str, str], list[dict]] = {}
    for r in read(BENCH / "selection.csv"):
        by_size.setdefault((r["task"], r["selection_size"]), []).append(r)
    lines = ["| task | task.selection_size | training examples | mean +- std (seeds) |", "| --- | --- | --- | --- |"]
    for (task, size), rs in by_size.items():
        m, s, _ = spread(rs)
        seeds = ", ".join(f"{float(r['value']):.3f}" for r in rs)
        lines.append(f"| {task_name(task)} | {float(size):g} | {int(rs[0]['train_size']):,} | "
                     f"{NAMES.get(rs[0]['objective'], rs[0]['objective'])} {m:.3f} +- {s:.3f} ({seeds}) |")
    return "\n".join(lines)


def compute_figure(rows: list[dict], out: Path) -> None:
    """Per task (fp32 rows), each arm's re-validated seeds as dots and its mean +- std as a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "sweeper"  # the same SVG for the same rows
    groups = {k: v for k, v in arms(rows).items() if k[1] == "fp32"}
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.2), squeeze=False)
    for ax, ((task, _), by_arm) in zip(axes[0], groups.items(), strict=True):
        for i, (arm, rs) in enumerate(by_arm.items()):
            m, s, _ = spread(rs)
            ax.errorbar([i], [m], yerr=[s], fmt="o", color="C0" if arm == "sweeper" else "0.4", capsize=4)
            ax.scatter([i + 0.15] * len(rs), [float(r["value"]) for r in rs], s=10, color="0.6")
        ax.set_xticks(range(len(by_arm)), list(by_arm), rotation=30)
        ax.set_title(task_name(task))
        ax.set_ylabel(f"{NAMES.get(next(iter(by_arm.values()))[0]['objective'])} on validation (unseen)")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, metadata={"Date": None})
    plt.close(fig)


def write(out_dir: Path) -> list[Path]:
    """Every generated table and figure, into out_dir; a file whose content is unchanged is not rewritten."""
    rows = read(BENCH / "compute.csv")
    texts = {"compute-table.md": compute_table(rows), "compute-targets.md": targets(rows),
             "portfolio-table.md": portfolio_table(), "selection-table.md": selection_table()}
    written = []
    for name, text in texts.items():
        written.append(replace(out_dir / name, text + "\n"))
    figure = out_dir / "compute.svg"
    tmp = out_dir / ".compute.svg"
    compute_figure(rows, tmp)
    written.append(replace(figure, tmp.read_text()))
    tmp.unlink()
    return written


def replace(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
