"""The machine's faults, not the trial's: a real full file system (a small tmpfs), damaged checkpoints,
a study stopped by its failure limit. Faults are real: real writes into a full tmpfs, real truncated files."""
import datetime
import errno
import re
import shutil
import sqlite3
import subprocess

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState
from test_faults import args, poisoned_study, states, wait_for

from conftest import TINY, cli, cli_popen, compose_config, load
from sweeper.study import faults
from sweeper.study.run import SweepStopped, check_failures
from sweeper.train import checkpoints, disk
from sweeper.train.disk import DiskFull

MB = 2**20
FULL_LINE = (r"error: out_dir={out_dir}: no space left \(\d+ MB free, {what} needs about \d+ MB\); free space or "
             r"set study.keep_checkpoints=none / a larger out_dir, then run the same command again")


@pytest.fixture
def small_fs():
    """mount(path, size_mb): a tmpfs of that size at `path` (root only; skipped where refused), unmounted after."""
    mounted = []

    def mount(path, size_mb: int):
        path.mkdir(parents=True, exist_ok=True)
        try:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}M", "tmpfs", str(path)],
                               capture_output=True, text=True)
        except FileNotFoundError as e:
            pytest.skip(f"cannot mount a tmpfs: {e}")
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs at {path}: {r.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory, leave: int):
    """A filler file that leaves `leave` bytes (rounded up to a page) free on directory's file system."""
    filler = directory / "filler"
    size = disk.free_bytes(directory) - leave
    size -= size % 4096
    with open(filler, "wb") as f:
        f.write(b"\0" * size)
    return filler


def errors_of_a_full_disk(fs):
    """What torch, safetensors and Python really raise when the file system is full."""
    from safetensors.torch import save_file

    tensors = {"w": torch.randn(512, 1024)}  # 2 MB: more than the 1 MB tmpfs holds
    caught = []
    for write in (lambda: torch.save(tensors, fs / "a.bin"), lambda: save_file(tensors, fs / "b.safetensors"),
                  lambda: (fs / "c").write_bytes(b"\0" * (2 * MB))):
        with pytest.raises(Exception) as e:
            write()
        caught.append(e.value)
        for f in fs.iterdir():
            f.unlink()
    return caught


def test_the_classifier_tells_the_machines_faults_from_the_trials(small_fs, tmp_path):
    torch_error, safetensors_error, os_error = errors_of_a_full_disk(small_fs(tmp_path / "fs", 1))
    assert "unexpected pos" in str(torch_error) or "PytorchStreamWriter" in str(torch_error)
    assert "No space left" in str(safetensors_error)
    assert isinstance(os_error, OSError) and os_error.errno == errno.ENOSPC
    for error in (torch_error, safetensors_error, os_error):
        assert disk.no_space(error) and faults.cause(error) == faults.MACHINE, repr(error)
    try:  # raised while handling a full disk: the chain (__context__) says whose fault it is
        try:
            raise os_error
        except OSError:
            raise ValueError("could not write the checkpoint") from None
    except ValueError as chained:
        assert faults.cause(chained) == faults.MACHINE
    with pytest.raises(sqlite3.OperationalError) as unreachable:
        sqlite3.connect(tmp_path / "no-such-dir" / "s.db")
    assert faults.cause(unreachable.value) == faults.MACHINE
    assert faults.cause(KeyboardInterrupt()) == faults.MACHINE

    from sweeper.train.epoch import NonFiniteLoss, check_finite

    with pytest.raises(NonFiniteLoss) as nan:
        check_finite(torch.tensor(float("nan")), 0, 8)
    with pytest.raises(RuntimeError) as shapes:
        torch.ones(2, 3) @ torch.ones(2, 3)  # a bug in the trial's own computation
    with pytest.raises(RuntimeError) as oom:
        torch.empty(2**60, dtype=torch.uint8)  # out of memory: too big for this machine at any free space
    for error in (nan.value, shapes.value, oom.value):
        assert not disk.no_space(error) and faults.cause(error) == faults.TRIAL, repr(error)


def tiny_state(precision="no"):
    from hydra.utils import instantiate

    from sweeper.train.loop import get_accelerator
    from sweeper.train.model import fresh_model, load_template

    cfg = compose_config(*TINY)
    template = load_template(cfg.model, 2, seed=0)
    accelerator = get_accelerator(precision)
    model = fresh_model(template)
    optimizer = instantiate(cfg.optimizer.optimizer)(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    for param in model.parameters():
        param.grad = torch.full_like(param, 1e-3)
    optimizer.step()  # AdamW now holds its two moments, as after a trained epoch
    return cfg, accelerator, model


def test_a_checkpoint_on_a_full_disk_raises_disk_full_and_keeps_the_previous_one(small_fs, tmp_path):
    from sweeper.train.loop import save_checkpoint

    cfg, accelerator, model = tiny_state()
    trial = small_fs(tmp_path / "fs", 40) / "trial-0"
    try:
        needed = checkpoints.estimate(trial, model)
        save_checkpoint(accelerator, trial, [{"epoch": 0}], needed)
        first = checkpoints.latest(trial)
        size = disk.dir_bytes(first)
        assert checkpoints.estimate(trial, model) == size and abs(needed - size) < 0.05 * size
        fill(trial.parent, size // 2)
        with pytest.raises(DiskFull, match=r"no space left \(\d+ MB free, a checkpoint needs about \d+ MB\)"):
            save_checkpoint(accelerator, trial, [{"epoch": 0}, {"epoch": 1}], size)  # checked before writing
        with pytest.raises(DiskFull) as during:  # the estimate can be wrong: the write itself runs out
            save_checkpoint(accelerator, trial, [{"epoch": 0}, {"epoch": 1}], 0)
        assert disk.no_space(during.value.__cause__) and not isinstance(during.value.__cause__, DiskFull)
        assert sorted(p.name for p in trial.iterdir()) == ["epoch-1"]  # no epoch-2.tmp left
        assert checkpoints.latest(trial) == first and checkpoints.damage(first) is None
    finally:
        accelerator.free_memory()


def test_an_export_on_a_full_disk_raises_disk_full_and_keeps_the_previous_model(small_fs, tmp_path):
    from transformers import AutoTokenizer

    from sweeper.train.export import export, read_marker
    from sweeper.train.model import load_template

    cfg = compose_config(*TINY)
    model = load_template(cfg.model, 2, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    fs = small_fs(tmp_path / "fs", 16)
    assert export(model, tokenizer, [], fs / "best-model", {"trial": 0, "value": 0.5})
    fill(fs, disk.model_bytes(model) // 2).rename(fs / "filler-1")
    with pytest.raises(DiskFull, match="the best model needs about 4 MB"):  # checked before writing
        export(model, tokenizer, [], fs / "best-model", {"trial": 1, "value": 0.9})
    (fs / "filler-1").unlink()
    fill(fs, disk.model_bytes(model) + 4096)  # passes the check; the weights' header and the tokenizer do not fit
    with pytest.raises(DiskFull) as during:
        export(model, tokenizer, [], fs / "best-model", {"trial": 1, "value": 0.9})
    assert disk.no_space(during.value.__cause__)
    assert sorted(p.name for p in fs.iterdir()) == ["best-model", "best-model.lock", "filler"]  # no .tmp-*
    assert read_marker(fs / "best-model")["trial"] == 0


def checkpoint_pair(root):
    """trial-0 holding two real checkpoints, epoch-1 and epoch-2 (as a kill between rename and cleanup leaves)."""
    from sweeper.train.loop import save_checkpoint

    cfg, accelerator, model = tiny_state()
    trial = checkpoints.trial_dir(root, 0)
    try:
        save_checkpoint(accelerator, trial, [{"epoch": 0}])
        shutil.copytree(trial / "epoch-1", root / "kept")
        save_checkpoint(accelerator, trial, [{"epoch": 0}, {"epoch": 1}])
        (root / "kept").rename(trial / "epoch-1")
    finally:
        accelerator.free_memory()
    return trial


def test_a_retry_falls_back_from_a_damaged_checkpoint(tmp_path, caplog):
    root = tmp_path / "checkpoints"
    trial = checkpoint_pair(root)
    model = trial / "epoch-2" / "model.safetensors"
    with open(model, "r+b") as f:
        f.truncate(model.stat().st_size // 2)
    with caplog.at_level("WARNING"):
        resume = checkpoints.claim(root, 1, [0])
    assert resume == checkpoints.trial_dir(root, 1) / "epoch-1"
    assert checkpoints.read_progress(resume)["epoch"] == 1
    assert re.search(r"damaged checkpoint epoch-2 \(model.safetensors: .*\); resuming from epoch-1$", caplog.text,
                     re.M), caplog.text
    assert not (resume.parent / "epoch-2").exists()

    optimizer = resume / "optimizer.bin"
    data = bytearray(optimizer.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the zip's CRC no longer matches
    optimizer.write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert checkpoints.claim(root, 2, [0, 1]) is None
    assert "damaged checkpoint epoch-1 (optimizer.bin: " in caplog.text
    assert "resuming from the start of the trial" in caplog.text


def test_bad_progress_is_a_damaged_checkpoint(tmp_path):
    trial = checkpoint_pair(tmp_path)
    (trial / "epoch-2" / checkpoints.PROGRESS).write_text('{"epoch": 2, "hist')
    assert checkpoints.damage(trial / "epoch-2").startswith("progress.json: ")
    assert checkpoints.readable(trial) == trial / "epoch-1"


def test_the_failure_limit_counts_the_trials_own_failures_of_this_run(compose_cfg):
    cfg = compose_cfg("study.n_trials=4", "study.max_failed_fraction=0")
    study = optuna.create_study(storage=cfg.study.storage, study_name="f")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    fail = dict(state=TrialState.FAIL, params={"x": 0.5}, distributions=dist)
    study.add_trial(optuna.create_trial(**fail, user_attrs={faults.CAUSE: faults.MACHINE}))  # disk full, not retried
    check_failures(study.trials, cfg.study)  # max_failed_fraction=0: any counted failure would stop it
    study.add_trial(optuna.create_trial(**fail, user_attrs={faults.CAUSE: faults.TRIAL, "fail_reason": "nan"}))
    with pytest.raises(SweepStopped, match="1 trials failed.*last failure: nan; once its cause is fixed, the same "
                                           r"command goes on \(only its own failures count\)"):
        check_failures(study.trials, cfg.study)
    check_failures(study.trials, cfg.study, since=datetime.datetime.now())  # a new run: earlier ones do not count
    assert faults.by_cause(study.trials) == {faults.MACHINE: 1, faults.TRIAL: 1}


def assert_nothing_half_written(study_dir):
    left = [p for p in study_dir.rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name]
    assert not left, left


@pytest.mark.slow
def test_a_full_disk_stops_the_sweep_with_one_line_and_the_same_command_finishes(tmp_path, glue_dir, small_fs):
    storage = f"sqlite:///{tmp_path}/s.db"  # elsewhere, healthy: only the study's directory is full
    command = args(tmp_path, glue_dir, "study.n_trials=1", "task.max_train_samples=64", "search.space.train.epochs=2",
                   "study.max_failed_fraction=0")
    study_dir = small_fs(tmp_path / "mrpc-tiny", 40)
    # Room for the first checkpoint, not for the second beside it; without the filler, for both.
    filler = fill(study_dir, 20 * MB)
    result = cli(*command)
    assert result.returncode == 4, result.stderr[-3000:]
    assert re.fullmatch(FULL_LINE.format(out_dir=re.escape(str(tmp_path)), what="a checkpoint"),
                        result.stderr.strip().splitlines()[-1]), result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    trials = load(storage, "mrpc-tiny").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]  # no RUNNING trial
    assert trials[0].user_attrs[faults.CAUSE] == faults.MACHINE
    assert trials[1].params == trials[0].params and trials[1].system_attrs["retry_history"] == [0]
    assert_nothing_half_written(study_dir)
    assert [p.name for p in (study_dir / "checkpoints" / "trial-0").iterdir()] == ["epoch-1"]  # the last good one

    filler.unlink()  # space back: the same command finishes the study
    result = cli(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load(storage, "mrpc-tiny").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]  # exactly n_trials finished
    assert trials[1].user_attrs["resumed_at_epoch"] == 1
    assert_nothing_half_written(study_dir)
    table = pd.read_csv(study_dir / "trials.csv")
    assert table[faults.CAUSE].tolist()[0] == faults.MACHINE and table[faults.CAUSE].isna().tolist() == [False, True]
    assert "1 complete, 0 pruned, 1 failed (1 by the machine, retried; 0 by the trial itself)" in (
        result.stdout + result.stderr)


@pytest.mark.slow
def test_an_export_on_a_full_disk_stops_the_sweep_and_the_same_command_finishes(tmp_path, glue_dir, small_fs):
    storage = f"sqlite:///{tmp_path}/s.db"
    command = [*TINY, f"study.storage={storage}", f"out_dir={tmp_path}", f"data_dir={glue_dir}",
               "study.n_trials=1", "search.space.train.epochs=1", "search.space.train.batch_size=8"]
    study_dir = small_fs(tmp_path / "mrpc-tiny", 40)
    filler = fill(study_dir, 14 * MB)  # one checkpoint (about 12 MB), not the model's export beside it
    result = cli(*command)
    assert result.returncode == 4, result.stderr[-3000:]
    assert re.fullmatch(FULL_LINE.format(out_dir=re.escape(str(tmp_path)), what="the best model"),
                        result.stderr.strip().splitlines()[-1]), result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert states(storage) == [TrialState.FAIL, TrialState.WAITING]
    assert_nothing_half_written(study_dir)
    assert not (study_dir / "best-model").exists()

    filler.unlink()
    result = cli(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert states(storage) == [TrialState.FAIL, TrialState.COMPLETE]
    assert (study_dir / "best-model" / "model.safetensors").exists()
    assert_nothing_half_written(study_dir)


@pytest.mark.slow
def test_a_study_stopped_by_the_failure_limit_goes_on_when_run_again(tmp_path, glue_dir):
    storage = f"sqlite:///{tmp_path}/s.db"
    poisoned_study(storage, 3)  # three queued trials whose loss turns NaN
    command = args(tmp_path, glue_dir, "study.n_trials=1", "study.max_failed_fraction=1",
                   "task.max_train_samples=64", "search.space.train.epochs=1")
    result = cli(*command)  # two failures: more than 1 * n_trials
    assert result.returncode == 3, result.stderr[-2000:]
    assert states(storage) == [TrialState.FAIL, TrialState.FAIL, TrialState.WAITING]
    result = cli(*command)  # only this run's failures count: the last poisoned trial fails (1, at most 1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert states(storage) == [TrialState.FAIL] * 3 + [TrialState.COMPLETE]


@pytest.mark.slow
def test_a_truncated_checkpoint_is_retried_from_the_start(tmp_path, glue_dir):
    storage = f"sqlite:///{tmp_path}/s.db"
    command = args(tmp_path, glue_dir, "study.n_trials=1", "task.max_train_samples=400")
    ckpt = tmp_path / "mrpc-tiny" / "checkpoints" / "trial-0"
    proc = cli_popen(*command)
    try:  # killed once its first epoch is checkpointed and reported, two epochs before the end
        wait_for(lambda: (ckpt / "epoch-1" / "progress.json").exists()
                 and 0 in load(storage, "mrpc-tiny").trials[0].intermediate_values, timeout=600)
    finally:
        proc.kill()
        proc.wait()
    assert states(storage) == [TrialState.RUNNING]
    model = ckpt / "epoch-1" / "model.safetensors"
    with open(model, "r+b") as f:
        f.truncate(model.stat().st_size // 2)

    result = cli(*command)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"trial-1: damaged checkpoint epoch-1 \(model.safetensors: .*\); resuming from the start of "
                     "the trial", result.stdout + result.stderr), result.stderr[-2000:]
    trials = load(storage, "mrpc-tiny").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "resumed_at_epoch" not in trials[1].user_attrs and sorted(trials[1].intermediate_values) == [0, 1, 2]
