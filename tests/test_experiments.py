"""Each experiment encodes its seed's setup: spot checks of the numbers the reports give."""

import pytest

from cnnlab.models import count_parameters
from cnnlab.run import build_module


def test_seed002_nin_grid_is_the_lab_setup(make_cfg):
    cfg = make_cfg(["experiment=seed002_nin_grid"])
    assert cfg.model.name == "nin" and cfg.model.dropout == 0.5
    assert cfg.optimizer.momentum == 0.9 and cfg.optimizer.nesterov and cfg.optimizer.lr == 0.1
    assert list(cfg.scheduler.scheduler.milestones) == [81, 122]
    assert cfg.scheduler.scheduler.gamma == 0.1
    assert cfg.trainer.max_epochs == 164 and cfg.data.batch_size == 128
    assert cfg.regularizer.l2 == 1e-4
    assert set(cfg.augment.transforms) == {"crop", "flip"}


def test_seed002_row_sets_its_three_choices(make_cfg):
    cfg = make_cfg(["experiment=seed002_nin_grid", "+study/seed002_nin_grid=elu_bn_wi"])
    assert (cfg.activation.name, cfg.norm.name, cfg.init.name) == ("elu", "bn", "he")


def test_seed004_resnet24_is_the_best_model_of_the_report(make_cfg):
    cfg = make_cfg(["experiment=seed004_resnet24"])
    assert count_parameters(build_module(cfg).net) == 4_935_242
    assert cfg.optimizer.nesterov and cfg.optimizer.weight_decay == 1e-3
    assert cfg.scheduler.scheduler.gamma == 0.9 and cfg.trainer.max_epochs == 50
    assert cfg.augment.mixup_alpha > 0 and cfg.data.val_split == 0.1


@pytest.mark.parametrize(
    ("row", "model", "filters", "batch", "activation", "init"),
    [
        ("1_original", "cnn_shallow", 20, 512, "relu", "default"),
        ("4_xavier_selu", "cnn_shallow", 24, 128, "selu", "xavier"),
        ("6_multilayer_xavier_selu", "cnn_deep", [24, 24, 24], 128, "selu", "xavier"),
    ],
)
def test_seed000_ladder_rows(row, model, filters, batch, activation, init, make_cfg):
    cfg = make_cfg(["experiment=seed000_ladder", f"+study/seed000_ladder={row}"])
    assert cfg.model.name == model and cfg.data.batch_size == batch
    assert (list(cfg.model.filters) if model == "cnn_deep" else cfg.model.filters) == filters
    assert (cfg.activation.name, cfg.init.name) == (activation, init)
    assert cfg.model.dropout == 0.7  # keep probability 0.3


def test_sweeps_drop_augmentation_the_base_experiment_has(make_cfg):
    assert make_cfg(["experiment=seed000_nin9"]).augment.transforms
    assert not make_cfg(["experiment=seed000_lr_sweep"]).augment.transforms
