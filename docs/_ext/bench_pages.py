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

import compute  # noqa: E402  (bench/compute.py: its arms, the course settings, the test against them)
import curve  # noqa: E402
import knobs  # noqa: E402
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
    """An arm's configuration, shortest first: the course settings by name, else each key it sets."""
    values = compute.pick_values(r)
    if r["arm"] != "course" and compute.effective_equal(values, compute.COURSE):
        return "the course settings"
    return ", ".join(f"{k.split('.')[-1]} {v:.2g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
                     for k, v in values.items())


def compute_table(rows: list[dict]) -> str:
    """One row per (task, precision, arm): the pick, the search's compute, the re-validated mean +- std over the
    seeds, and the test against the course settings (bench/compute.py's: paired over the validation examples)."""
    lines = ["| task | arm | pick | search compute (epochs), trials | re-validated mean +- std (seeds) | "
             "against the course settings (one-sided p) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for (task, precision), by_arm in arms(rows).items():
        course = by_arm.get("course")
        for arm, rs in by_arm.items():
            m, s, n = spread(rs)
            r0 = rs[0]
            seeds = ", ".join(f"{float(r['value']):.3f}" for r in rs)
            test = compute.versus(rs, course, compute.PREDICTIONS) if course and arm != "course" else None
            vs = "" if arm == "course" else compute.shown(test, 3).replace(", better", ", **better**")
            search = (f"{float(r0['search_epochs']):.2f}, {r0['search_trials']}" if int(r0["search_trials"])
                      else "no search")
            metric = NAMES.get(r0["objective"], r0["objective"])
            lines.append(f"| {task_name(task)} ({precision}) | {arm} | {pick(r0)} | {search} | {metric} **{m:.3f} +- "
                         f"{s:.3f}** ({seeds}) | {vs} |")
    return "\n".join(lines)


def targets(rows: list[dict]) -> str:
    """The search benchmark's targets, judged on the rows as bench/compute.py --report-only judges them."""
    return "\n".join(f"- {line}" for line in compute.target_lines(rows, sorted({r["task"] for r in rows}),
                                                                  compute.PREDICTIONS))


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
             "portfolio-table.md": portfolio_table(), "selection-table.md": selection_table(),
             "knobs-table.md": "\n".join(knobs.table(knobs.with_course(read(BENCH / "knobs.csv"), rows),
                                                                compute.PREDICTIONS))}
    written = []
    for name, text in texts.items():
        written.append(replace(out_dir / name, text + "\n"))
    figure = out_dir / "compute.svg"
    tmp = out_dir / ".compute.svg"
    compute_figure(rows, tmp)
    written.append(replace(figure, tmp.read_text()))
    tmp.unlink()
    for task in ("rte", "cola", "mrpc"):  # the budget curves (bench/curve.py), as PNGs beside the tables
        if (png := curve.plot(task, rows, out_dir / ".curves")) is not None:
            written.append(replace_bytes(out_dir / png.name, png.read_bytes()))
            png.unlink()
    return written


def replace_bytes(path: Path, data: bytes) -> Path:
    """Write `data` only when it differs, so Sphinx does not rebuild pages whose inputs did not change."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    return path


def replace(path: Path, text: str) -> Path:
    return replace_bytes(path, text.encode())
