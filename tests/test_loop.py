"""The Accelerate loop on a tiny random BERT: it learns, it reports, it starts fresh, it resumes."""
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config
from sweeper.data import dataset
from sweeper.data.batching import get_dataloaders
from sweeper.train import checkpoints
from sweeper.train.epoch import NonFiniteLoss
from sweeper.train.loop import Hparams, resolve_precision, train
from sweeper.train.metrics import compute_metrics
from sweeper.train.model import fresh_model, load_template


@pytest.fixture(scope="module")
def sst2(glue_dir):
    cfg = compose_config("task=sst2", "model=tiny", "task.max_train_samples=64", "task.max_eval_samples=64")
    task = dataset.load_task(cfg.task, cfg.model.path, glue_dir, seed=0)
    return cfg, task, load_template(cfg.model, 2, seed=0)


def run(cfg, task, model, hp, **kw):
    """The loop as a trial calls it, with the configured optimizer and schedule."""
    train_dl, eval_dl = get_dataloaders(task, hp.batch_size, 32, seed=0, group_by_length=True,
                                        pad_to_multiple_of=8)
    return train(model, train_dl, eval_dl, hp, optimizer_fn=instantiate(cfg.optimizer.optimizer),
                 precision=kw.pop("precision", resolve_precision("auto")),
                 metric_names=["accuracy", "f1"], seed=0, progress=False, **kw)


def test_training_loss_falls_on_a_learnable_slice(sst2):
    cfg, task, template = sst2
    seen = []
    history = run(cfg, task, fresh_model(template), Hparams(lr=5e-3, epochs=8, batch_size=8),
                  on_epoch_end=lambda epoch, m: seen.append((epoch, m["accuracy"])))
    losses = [h["loss"] for h in history]
    assert losses[-1] < 0.5 * losses[0], losses  # 64 sentences: memorised
    assert [e for e, _ in seen] == list(range(8))
    for h in history:
        assert 0 <= h["accuracy"] <= 1 and 0 <= h["f1"] <= 1 and h["samples_per_s"] > 0
        assert 0 <= h["padded_fraction"] < 0.5


def test_metrics_on_hand_made_cases():
    assert compute_metrics([1, 0, 1, 1], [1, 0, 0, 1], ["accuracy", "f1"]) == {"accuracy": 0.75, "f1": 0.8}
    assert compute_metrics([0, 0], [0, 0], ["f1"]) == {"f1": 0.0}  # no positives: 0, not a warning
    assert compute_metrics([1, 1, 0], [0, 0, 1], ["accuracy"]) == {"accuracy": 0.0}
    # F1 is of the positive class: swapping labels changes it.
    assert compute_metrics([1, 0, 0, 0], [1, 1, 0, 0], ["f1"])["f1"] == pytest.approx(2 / 3)


def test_every_trial_starts_from_the_pretrained_weights(sst2):
    cfg, task, template = sst2
    pristine = {k: v.clone() for k, v in template.state_dict().items()}
    first = fresh_model(template)
    run(cfg, task, first, Hparams(lr=2e-3, epochs=1, batch_size=8), on_epoch_end=lambda e, m: None)
    trained = first.state_dict()
    assert any(not torch.equal(trained[k], pristine[k]) for k in pristine)  # training changed the copy
    second = fresh_model(template)
    for k, v in second.state_dict().items():
        assert torch.equal(v, pristine[k]), k  # ... but neither the template nor the next trial
        assert v.data_ptr() != trained[k].data_ptr()


def test_a_non_finite_loss_ends_the_trial(sst2):
    cfg, task, template = sst2
    with pytest.raises(NonFiniteLoss, match="training loss is (nan|inf)"):
        # A learning rate of 1e20 blows the weights up to inf within a few steps.
        run(cfg, task, fresh_model(template), Hparams(lr=1e20, epochs=2, batch_size=8),
            on_epoch_end=lambda e, m: None, log_every=2)


def test_resuming_from_a_checkpoint_continues_the_same_training(sst2, tmp_path):
    cfg, task, template = sst2
    hp = Hparams(lr=1e-3, epochs=3, batch_size=8)
    straight = run(cfg, task, fresh_model(template), hp, on_epoch_end=lambda e, m: None)

    class Killed(Exception):
        pass

    def die_after_epoch_1(epoch, metrics):
        if epoch == 1:
            raise Killed

    ckpt = tmp_path / "trial-0"
    with pytest.raises(Killed):
        run(cfg, task, fresh_model(template), hp, on_epoch_end=die_after_epoch_1, checkpoint=ckpt)
    resume = checkpoints.latest(ckpt)
    assert resume.name == "epoch-2" and checkpoints.read_progress(resume)["epoch"] == 2
    resumed_epochs = []
    resumed = run(cfg, task, fresh_model(template), hp, resume=resume,
                  on_epoch_end=lambda e, m: resumed_epochs.append(e))
    assert resumed_epochs == [2]
    assert [h["epoch"] for h in resumed] == [0, 1, 2]
    assert resumed[-1]["loss"] == pytest.approx(straight[-1]["loss"], rel=1e-4)
    assert resumed[-1]["accuracy"] == straight[-1]["accuracy"]


def test_a_report_within_an_epoch_sits_at_its_share_of_the_epoch_wherever_the_short_batch_fell(sst2):
    # 64 sentences in batches of 24: 24, 24 and a short 16, shuffled; evaluations after batches 1 and 2 of 3.
    from sweeper.data.batching import ShuffledBatches

    cfg, task, template = sst2
    seed = next(s for s in range(100) if len(next(iter(ShuffledBatches(task.train_lengths, 24, s, True)))) == 16)
    train_dl, eval_dl = get_dataloaders(task, 24, 32, seed=seed, group_by_length=True, pad_to_multiple_of=8)
    reports = []
    train(fresh_model(template), train_dl, eval_dl, Hparams(lr=1e-3, epochs=1, batch_size=24),
          optimizer_fn=instantiate(cfg.optimizer.optimizer), precision=resolve_precision("auto"),
          metric_names=["accuracy"], seed=0, progress=False,
          on_epoch_end=lambda epoch, m: None, evals_per_epoch=3,
          on_evaluate=lambda step, m: reports.append((step, m["train_samples"])))
    # Steps at a third and two thirds of the epoch's 64 samples (the pruner's rungs); the budget counts what trained.
    assert reports == [(21, 16), (43, 40)]


def test_a_trial_stopped_within_an_epoch_resumes_at_the_next_batch_bit_exact(sst2, tmp_path):
    """A stop after batch 5 of epoch 1 (of 8), and a checkpoint on the clock after batch 3 of epoch 0 on the way:
    the run resumed from the stop ends with the same weights, losses and metrics as one never interrupted."""
    from sweeper.train.epoch import CHECKPOINT, STOP, Preempted

    cfg, task, template = sst2
    hp = Hparams(lr=1e-3, epochs=3, batch_size=8)
    finals = []

    def keep(model):
        finals.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    reports = {"straight": [], "resumed": []}  # evaluations within epochs (3 an epoch) draw RNG too

    def within(name):
        return dict(evals_per_epoch=3, on_evaluate=lambda step, m: reports[name].append((step, m["accuracy"])))

    straight = run(cfg, task, fresh_model(template), hp, on_epoch_end=lambda e, m: None, on_train_end=keep,
                   precision="no", **within("straight"))
    steps = []

    def pause(seconds):  # after the 4th step of the run: a checkpoint (go on); after the 14th: stop
        steps.append(seconds)
        return {4: CHECKPOINT, 14: STOP}.get(len(steps))

    ckpt = tmp_path / "trial-0"
    with pytest.raises(Preempted):
        run(cfg, task, fresh_model(template), hp, on_epoch_end=lambda e, m: None, checkpoint=ckpt, pause=pause,
            precision="no", **within("resumed"))
    # 8 batches an epoch, a pause question after each and one after the epoch's end: the 14th is batch 5 of epoch 1.
    resume = checkpoints.latest(ckpt)
    assert resume.name == "epoch-1-step-5", sorted(p.name for p in ckpt.iterdir())
    assert checkpoints.read_progress(resume)["within"]["step"] == 5
    resumed = run(cfg, task, fresh_model(template), hp, resume=resume, on_epoch_end=lambda e, m: None,
                  on_train_end=keep, precision="no", **within("resumed"))
    assert reports["resumed"] == reports["straight"]  # each evaluation once, before or after the stop, the same
    for key in ("loss", "accuracy", "f1"):
        assert [h[key] for h in resumed] == [h[key] for h in straight], key
    for name, weight in finals[0].items():
        assert torch.equal(weight, finals[1][name]), name
