"""The sweep's progress (sweeper/study/progress.py): the numbers from a real study, log lines through a pipe
(the CLI as a SLURM log sees it) and a bar updated in place on a real pseudo-terminal."""
import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios
from datetime import timedelta

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from conftest import ROOT, TINY, cli
from sweeper.study.progress import choose, seconds_left, snapshot

DIST = {"lr": FloatDistribution(1e-5, 1e-4, log=True)}


def trial(state, seconds, value=None):
    t = create_trial(state=state, value=value, params={"lr": 5e-5}, distributions=DIST,
                     intermediate_values={0: 0.5} if state == TrialState.PRUNED else None)
    t.datetime_start = t.datetime_complete - timedelta(seconds=seconds)
    return t


@pytest.fixture
def study(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="s", direction="maximize")
    study.set_metric_names(["f1"])
    study.add_trial(trial(TrialState.COMPLETE, 10, 0.8))
    study.add_trial(trial(TrialState.PRUNED, 4))
    study.add_trial(trial(TrialState.FAIL, 1))  # neither finished nor timed: it is retried
    return study


def test_time_left_is_what_is_left_times_the_mean_trial_less_what_runs_shared_among_workers(study):
    running = study.ask()
    trials = study.get_trials()
    now = trials[-1].datetime_start + timedelta(seconds=3)
    # 5 wanted, 2 finished (mean 7 s): 3 x 7 s, less the 3 s the running trial has done
    assert seconds_left(trials, 5, now, workers=1) == pytest.approx(18)
    assert seconds_left(trials, 5, now, workers=2) == pytest.approx(9)
    assert seconds_left(trials, 5, now + timedelta(seconds=60), workers=1) == pytest.approx(14)  # capped at the mean
    assert seconds_left(trials, 2, now, workers=1) == 0
    study.tell(running, 0.9)

    s = snapshot(study, 5, elapsed=14)
    assert re.fullmatch(r"s: 3/5 trials finished, best f1 0\.9000 \(trial 3\), 0:00:14 elapsed, ~0:00:\d\d left",
                        s.line()), s.line()
    assert snapshot(study, 3, elapsed=3661).line().endswith("1:01:01 elapsed, done")


def test_under_a_budget_time_left_is_what_the_budget_has_left_at_the_pace_so_far(tmp_path):
    from sweeper.search import budget
    from sweeper.search.budget import TRAIN

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/b.db", study_name="b", direction="maximize")
    study.set_user_attr("train_size", 100)
    study.set_user_attr("budget_epochs", 3)
    for state, seconds, samples in ((TrialState.COMPLETE, 10, 100), (TrialState.PRUNED, 4, 40)):
        t = trial(state, seconds, 0.8 if state == TrialState.COMPLETE else None)
        t.user_attrs = {TRAIN: samples}
        study.add_trial(t)
    trials = study.get_trials()
    # 140 of 300 samples in 14 trial seconds: 160 samples left at 0.1 s each
    assert budget.seconds_left(trials, study.user_attrs, workers=1) == pytest.approx(16)
    assert budget.seconds_left(trials, study.user_attrs, workers=2) == pytest.approx(8)
    # 30 trials wanted at 7 s each would say 196 s: the budget ends the study first, and the line says so
    line = snapshot(study, 30, elapsed=14).line()
    assert line.endswith("budget 1.40/3 epochs, best value 0.8000 (trial 0), 0:00:14 elapsed, ~0:00:16 left"), line
    study.set_user_attr("budget_minutes", 0.5)  # 30 trial seconds, 14 spent: the sooner budget counts
    assert budget.seconds_left(study.get_trials(), study.user_attrs, workers=1) == pytest.approx(16)
    study.set_user_attr("budget_minutes", 0.4)
    assert budget.seconds_left(study.get_trials(), study.user_attrs, workers=1) == pytest.approx(10)
    assert budget.seconds_left(trials, {"train_size": 100}, workers=1) is None  # no budget: n_trials alone


def test_workers_of_one_study_show_the_same_progress(study, tmp_path):
    study.ask()  # running in this "worker"
    other = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")  # another worker's view
    mine, theirs = snapshot(study, 5, elapsed=1), snapshot(other, 5, elapsed=1)
    assert (theirs.finished, theirs.running, theirs.best) == (mine.finished, mine.running, mine.best) == (
        2, 1, "best f1 0.8000 (trial 0)")
    assert theirs.left == pytest.approx(mine.left, abs=2)  # both from the same records, a moment apart


def test_before_any_trial_finishes_the_time_left_says_so(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="new", direction="minimize")
    study.ask()
    assert snapshot(study, 4, elapsed=0).line() == ("new: 0/4 trials finished (1 running), no trial complete yet, "
                                                    "0:00:00 elapsed, time left: after the first trial")


def test_auto_is_a_bar_on_a_terminal_and_log_lines_elsewhere(tmp_path):
    master, slave = os.openpty()
    with open(slave, "w") as terminal, open(tmp_path / "log", "w") as file:
        assert choose("auto", terminal) == "bar"
        assert choose("auto", file) == "log"
        assert choose("auto", io.StringIO()) == "log"
        assert [choose(m, terminal) for m in ("bar", "log", "off")] == ["bar", "log", "off"]
        assert choose("bar", file) == "bar"  # asked for: a file gets the bar
    os.close(master)


def command(tmp_path, glue_dir, *extra):
    return [*TINY, "search.space.train.batch_size=8", f"study.storage=sqlite:///{tmp_path}/s.db", f"out_dir={tmp_path}",
            f"data_dir={glue_dir}", *extra]


@pytest.mark.slow
def test_through_a_pipe_the_progress_is_plain_log_lines_and_no_carriage_return(tmp_path, glue_dir):
    # train.progress=true: the per-epoch bar, which wrote a line of carriage returns into files before
    # Trials of a few seconds, for a line while one runs.
    result = cli(*command(tmp_path, glue_dir, "study.n_trials=2", "train.progress=true", "study.progress_every=1",
                          "task.max_train_samples=128", "search.space.train.epochs=2"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    assert "\r" not in output
    lines = re.findall(r"mrpc-tiny: (\d)/2 trials finished( \(1 running\))?, (.*), (\d+:\d\d:\d\d) elapsed, (.*)",
                       output)
    assert lines[0] == ("0", "", "no trial complete yet", "0:00:00", "time left: after the first trial")
    assert any(running for _, running, *_ in lines)  # a line every second while a trial runs
    after_first = [line for line in lines if line[0] == "1" and not line[1]][0]
    assert re.fullmatch(r"best f1 \d\.\d{4} \(trial 0\)", after_first[2]) and re.fullmatch(r"~0:\d\d:\d\d left",
                                                                                        after_first[4])
    assert lines[-1][0] == "2" and lines[-1][4] == "done"
    assert [int(n) for n, *_ in lines] == sorted(int(n) for n, *_ in lines)


@pytest.mark.slow
def test_on_a_terminal_the_progress_is_one_bar_updated_in_place(tmp_path, glue_dir):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a terminal with a width
    proc = subprocess.Popen([sys.executable, "-m", "sweeper", *command(tmp_path, glue_dir, "study.n_trials=2",
                                                                         "search.space.train.epochs=1")],
                            cwd=ROOT, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    output = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # the terminal closed with the process
            break
        if ready and not chunk or not ready and proc.poll() is not None:
            break
        output += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, output[-2000:]
    text = output.decode()
    assert "trials finished" not in text  # no log lines: the bar
    states = re.findall(r"\rmrpc-tiny: [ █▏▎▍▌▋▊▉]{20} (\d)/2 trials(?:, 1 running)?, ([^\r\n]*?) *(?=[\r\n])", text)
    assert [n for n, _ in states][0] == "0" and states[-1] == ("2", states[-1][1])
    assert states[-1][1].startswith("best f1 ") and states[-1][1].endswith(" elapsed, done")
    assert len(states) > 3  # one line, rewritten (\r) at each update


def test_the_progress_keys_are_checked(compose_cfg):
    from sweeper.errors import ConfigError
    from sweeper.validate import validate

    with pytest.raises(ConfigError, match=r"study.progress_every=0; need an integer >= 1"):
        validate(compose_cfg("study.progress_every=0"))
    with pytest.raises(Exception, match="study.progress=sometimes") as error:
        compose_cfg("study.progress=sometimes")
    assert "expected one of [auto, bar, log, off]" in str(error.value.__cause__)  # what the CLI prints
