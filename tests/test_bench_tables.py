"""How the benchmarks' reports read their rows (bench/compute.py's test against the course settings, bench/knobs.py's
screen table): which comparisons need kept predictions and which are decided without them."""
import math
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import compute  # noqa: E402
import knobs  # noqa: E402

COURSE = {"task": "rte", "precision": "fp32", "objective": "accuracy", "arm": "course", "lr": "5e-05", "epochs": "3",
          "batch_size": "8", "config": ""}


def row(seed, value, run, **kw):
    return {**COURSE, "seed": str(seed), "value": str(value), "run": run, **kw}


def keep(root, seed, run, predictions):
    (root / f"rte-fp32-seed{seed}-{run}.txt").write_text("\n".join(map(str, predictions)) + "\n")


def test_the_same_configuration_on_the_same_seeds_is_the_same_runs(tmp_path):
    labels = np.random.default_rng(0).integers(0, 2, 200)
    (tmp_path / "rte-labels.txt").write_text("\n".join(map(str, labels)) + "\n")
    course = [row(s, v, "c0ffee") for s, v in [(42, 0.58), (43, 0.57), (44, 0.56)]]
    for s in (42, 43, 44):
        keep(tmp_path, s, "c0ffee", np.random.default_rng(s).integers(0, 2, 200))
    # a search that picked the course settings: rows from before run digests, no predictions of their own
    picked = [row(s, v, "", arm="sweeper") for s, v in [(42, 0.58), (43, 0.57), (44, 0.56)]]
    test = compute.versus(picked, course, tmp_path)
    assert test.difference == 0 and not test.better and test.p == 0.5


def test_a_mean_at_or_below_is_never_better_and_above_needs_predictions(tmp_path):
    course = [row(s, v, "c0ffee") for s, v in [(42, 0.58), (43, 0.57), (44, 0.56)]]
    below = [row(s, v, "", arm="trainer", lr="1e-06") for s, v in [(42, 0.51), (43, 0.52), (44, 0.50)]]
    test = compute.versus(below, course, tmp_path)
    assert not test.better and math.isnan(test.p) and test.difference < 0
    assert "not better" in compute.shown(test)
    above = [row(s, v, "", arm="trainer", lr="1e-06") for s, v in [(42, 0.61), (43, 0.62), (44, 0.60)]]
    assert compute.versus(above, course, tmp_path) is None
    assert "--backfill" in compute.shown(None)


def test_the_screen_borrows_the_course_settings_seeds_of_the_same_run_and_pairs_on_the_variants_seeds(tmp_path):
    screen = [{"task": "rte", "variant": "course", "precision": "fp32", "seed": "42", "run": "c0ffee",
               "objective": "accuracy", "value": "0.58"},
              {"task": "rte", "variant": "warmup", "precision": "fp32", "seed": "42", "run": "beef",
               "objective": "accuracy", "value": "0.60"}]
    bench = [row(42, 0.58, "c0ffee"), row(43, 0.50, "c0ffee"), row(44, 0.50, "c0ffee"),
             row(43, 0.99, "other")]  # another configuration's course row (say, bf16-era): not borrowed
    rows = knobs.with_course(screen, bench)
    assert sorted(r["seed"] for r in rows if r["variant"] == "course") == ["42", "43", "44"]
    lines = knobs.table(rows, tmp_path)
    warmup = next(line for line in lines if "| warmup |" in line)
    assert "+0.0200" in warmup and "(1 seed)" in warmup  # against seed 42's 0.58, not the three seeds' mean


def test_the_screen_tests_a_variant_with_seeds_against_the_course_settings_on_the_same_seeds(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    (tmp_path / "rte-labels.txt").write_text("\n".join(map(str, labels)) + "\n")
    screen = []
    for seed in (42, 43):
        for variant, run, right in [("course", "c0ffee", 0.55), ("warmup", "beef", 0.95)]:
            predictions = np.where(rng.random(300) < right, labels, 1 - labels)
            keep(tmp_path, seed, run, predictions)
            screen.append({"task": "rte", "variant": variant, "precision": "fp32", "seed": str(seed), "run": run,
                           "objective": "accuracy", "value": str((predictions == labels).mean())})
    warmup = next(line for line in knobs.table(screen, tmp_path) if "| warmup |" in line)
    assert "**yes**" in warmup  # 0.95 against 0.55 on 300 examples, two seeds each


def test_seeds_beyond_the_protocols_three_are_a_second_look_and_others_compare_on_their_own_seeds(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 400)
    (tmp_path / "rte-labels.txt").write_text("\n".join(map(str, labels)) + "\n")
    rows = {"course": [], "recipe": []}
    for seed in range(42, 48):
        for arm, run, right in [("course", "c0ffee", 0.60), ("recipe", "beef", 0.66)]:
            predictions = np.where(rng.random(400) < right, labels, 1 - labels)
            keep(tmp_path, seed, run, predictions)
            rows[arm].append(row(seed, (predictions == labels).mean(), run, arm=arm))
    six = compute.versus(rows["recipe"], rows["course"], tmp_path)
    assert six.alpha == pytest.approx(0.025)  # six seeds: the first three were looked at first
    three = compute.versus(rows["recipe"][:3], rows["course"], tmp_path)  # an arm with the protocol's three seeds
    assert three.alpha == pytest.approx(0.05)  # ... is held against the course settings' same three
    course3 = [float(r["value"]) for r in rows["course"][:3]]
    recipe3 = [float(r["value"]) for r in rows["recipe"][:3]]
    assert three.difference == pytest.approx(np.mean(recipe3) - np.mean(course3))
