"""The pictures of the docs, taken anew: optuna-dashboard's study page and report.html, from a real study, in a real
headless Chromium (Debian's package: .ci/chromium installs it).

    python docs/screenshots.py                                  # a small real study first (SST-2, MiniLM), minutes
    python docs/screenshots.py --storage sqlite:///outputs/sweeper.db --study mrpc-minilm --out-dir outputs

Writes docs/img/dashboard.png, docs/img/report.png and docs/img/report-curves.png (`make screenshots`)."""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
# A study small enough for a 2-core CPU, large enough for MiniLM to learn and the pruner to stop some trials.
STUDY = ["task=sst2", "model=minilm", "task.max_train_samples=600", "task.max_eval_samples=200",
         "study.budget_epochs=12", "train.progress=false", "study.progress=log"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--virtual-time-budget=20000"]


def run_study(out_dir: Path) -> tuple[str, str]:
    """The CLI itself, as a user runs it; returns the storage URL and the study's name."""
    storage = f"sqlite:///{out_dir}/sweeper.db"
    subprocess.run([sys.executable, "-m", "sweeper", *STUDY, f"out_dir={out_dir}", f"study.storage={storage}"],
                   cwd=ROOT, check=True)
    return storage, "sst2-minilm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot(url: str, out: Path, size: str) -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("error: chromium not found; allowed: Debian's package (bash .ci/chromium installs it)")
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: nothing of an earlier run shows
        subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                        f"--screenshot={out}", url], check=True, capture_output=True, timeout=180)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}", flush=True)
    return out


def dashboard(storage: str, study: str, artifacts: Path | None, out: Path) -> Path:
    """optuna-dashboard's page of the study, served as `optuna-dashboard STORAGE --artifact-dir ...` serves it."""
    import optuna

    study_id = optuna.load_study(study_name=study, storage=storage)._study_id
    exe = shutil.which("optuna-dashboard") or str(Path(sys.executable).parent / "optuna-dashboard")
    port = free_port()
    store = ["--artifact-dir", str(artifacts)] if artifacts and artifacts.is_dir() else []
    server = subprocess.Popen([exe, storage, "--host", "127.0.0.1", "--port", str(port), *store],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        return screenshot(f"http://127.0.0.1:{port}/dashboard/studies/{study_id}", out, "1400,1000")
    finally:
        server.terminate()
        server.wait(10)


def learning_curves_page(storage: str, study: str, out: Path) -> Path:
    """report.html's learning-curves section alone, drawn by the report's own code: a screenshot of the whole page
    scrolled to it comes out blank (plotly lays the plots out after the scroll)."""
    import optuna
    from plotly.offline import get_plotlyjs

    from sweeper.results.plots import figures

    title, fig = next((t, f) for t, f in figures(optuna.load_study(study_name=study, storage=storage))
                      if t.startswith("Learning curves"))
    body = fig if isinstance(fig, str) else fig.to_html(full_html=False, include_plotlyjs=False)
    out.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><script>{get_plotlyjs()}</script></head>"
                   f"<body style='font-family:sans-serif;margin:1em 2em'><h2>{title}</h2>{body}</body></html>")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", help="a storage to take them from (default: a new small study)")
    p.add_argument("--study", help="its study's name")
    p.add_argument("--out-dir", type=Path, help="the study's out_dir (report.html, artifacts)")
    p.add_argument("--img", type=Path, default=IMG)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        if args.storage:
            if not (args.study and args.out_dir):
                sys.exit("error: --storage needs --study and --out-dir")
            storage, study, out_dir = args.storage, args.study, args.out_dir.resolve()
        else:
            out_dir = Path(tmp)
            storage, study = run_study(out_dir)
        args.img.mkdir(parents=True, exist_ok=True)
        dashboard(storage, study, out_dir / "artifacts", args.img / "dashboard.png")
        report = (out_dir / study / "report.html").resolve()
        screenshot(report.as_uri(), args.img / "report.png", "1400,1000")
        curves = Path(tmp) / "curves.html"
        learning_curves_page(storage, study, curves)
        screenshot(curves.as_uri(), args.img / "report-curves.png", "1400,620")


if __name__ == "__main__":
    main()
