"""Each experiment encodes its study's setup: the numbers the documents give (docs/studies.md),
checked one by one."""

import pytest
from torch import nn

from cnnlab.layers.activations import ElementwisePReLU
from cnnlab.models.build import count_parameters
from cnnlab.run.assemble import build_datamodule, build_module

from conftest import CONF


def rows(experiment: str) -> list[str]:
    return sorted(p.stem for p in (CONF / "study" / experiment).glob("*.yaml"))


def row_cfg(make_cfg, experiment: str, row: str, *more: str):
    return make_cfg([f"experiment={experiment}", f"+study/{experiment}={row}", *more])


def test_nin_activation_bn_grid_is_the_nin_lab_reports_setup(make_cfg):
    cfg = make_cfg(["experiment=nin_activation_bn_grid"])
    assert cfg.model.name == "nin" and cfg.model.dropout == 0.5 and cfg.model.final_norm_act
    assert cfg.optimizer.momentum == 0.9 and cfg.optimizer.nesterov and cfg.optimizer.lr == 0.1
    assert list(cfg.scheduler.milestones) == [81, 122]
    assert cfg.scheduler.gamma == 0.1 and cfg.scheduler.warmup_epochs == 0
    assert cfg.trainer.max_epochs == 164 and cfg.data.batch_size == 128
    assert cfg.regularizer.l2 == 1e-4 and cfg.optimizer.weight_decay == 0
    assert set(cfg.augment.transforms) == {"crop_flip"}
    assert cfg.data.val_split == 0 and not cfg.data.val_on_test


def test_nin_activation_bn_grid_trains_391_iterations_per_epoch_on_all_50000_images(make_cfg):
    cfg = make_cfg(
        ["experiment=nin_activation_bn_grid", "data=fake", "data.dataset.train_size=50000"]
    )
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    assert len(datamodule.train_set) == 50_000 and len(datamodule.train_dataloader()) == 391


@pytest.mark.parametrize("row", rows("nin_activation_bn_grid"))
def test_nin_activation_bn_grid_rows_use_he_init_or_keras_default(row, make_cfg):
    cfg = row_cfg(make_cfg, "nin_activation_bn_grid", row)
    assert cfg.init.name == ("he" if "wi" in row else "xavier")
    assert cfg.init.name != "he" or cfg.init.distribution == "normal"  # normal(sqrt(2/n))
    assert cfg.init.name != "xavier" or cfg.init.distribution == "uniform"  # glorot_uniform
    assert cfg.norm.name == ("bn" if "bn" in row else "none")


def test_nin_activation_bn_grid_rows_carry_the_nin_lab_reports_results(make_cfg):
    grid = "nin_activation_bn_grid"
    found = {r: row_cfg(make_cfg, grid, r).reference for r in rows(grid)}
    assert found["elu_bn_wi"] == {"test_acc": 0.9167, "source": "NIN lab report, Table 2"}
    assert found["lrelu_bn_wi"] == {
        "test_acc": 0.9091,
        "source": "NIN lab report, Other experiments",
    }
    assert found["maxout_bn_wi"] is None  # its code did not work; the report has no result
    table2 = [r for r in found.values() if r and r.source == "NIN lab report, Table 2"]
    assert sorted(r.test_acc for r in table2) == [
        0.9049, 0.905, 0.9076, 0.9094, 0.9098, 0.9113, 0.9134, 0.9167
    ]  # fmt: skip


def test_base_cnn_studies_train_on_all_images_from_lr_0_001(make_cfg):
    cfg = make_cfg(["experiment=base_cnn_nesterov"])
    assert cfg.data.val_split == 0 and cfg.data.batch_size == 32 and cfg.trainer.max_epochs == 100
    assert cfg.optimizer.lr == 1e-3 and cfg.optimizer.nesterov and cfg.init.name == "xavier"
    sweep = make_cfg(["experiment=base_cnn_lr_sweep"])
    assert sweep.optimizer.nesterov and sweep.data.val_split == 0


def test_base_cnn_adam_bn_prelu_is_adam_0_0005_bn_and_keras_prelu(make_cfg):
    cfg = make_cfg(["experiment=base_cnn_adam_bn_prelu"])
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 5e-4
    net = build_module(cfg).net
    assert sum(isinstance(m, ElementwisePReLU) for m in net.modules()) == 5
    bn = sum(
        m.weight.numel() + m.bias.numel() for m in net.modules() if isinstance(m, nn.BatchNorm2d)
    )
    assert count_parameters(net) == 1_338_154 + bn and bn == 2 * (32 + 32 + 64 + 64)


@pytest.mark.parametrize(
    ("row", "check"),
    [
        ("prelu", lambda a: a.name == "prelu" and a.per == "element" and a.init == 0),
        ("leaky_relu", lambda a: a.negative_slope == 0.1),
        ("maxout", lambda a: a.name == "maxout"),
    ],
)
def test_base_cnn_activations_rows(row, check, make_cfg):
    cfg = row_cfg(make_cfg, "base_cnn_activations", row)
    assert check(cfg.activation) and cfg.optimizer.lr == 1e-3 and cfg.data.val_split == 0


def test_resnet24_mixup_is_the_best_model_of_the_resnet_report(make_cfg):
    cfg = make_cfg(["experiment=resnet24_mixup"])
    assert count_parameters(build_module(cfg).net) == 4_935_242
    assert cfg.optimizer.nesterov and cfg.optimizer.weight_decay == 1e-3
    assert cfg.scheduler.gamma == 0.9 and cfg.trainer.max_epochs == 50
    assert cfg.augment.mixup_alpha > 0 and cfg.data.val_split == 0.1
    assert set(cfg.augment.transforms) == {"noise", "crop_flip", "vflip"}
    assert cfg.reference.test_acc == 0.9443


@pytest.mark.parametrize(
    "study",
    [
        "resnet_optimizers",
        "resnet24_schedulers",
        "resnet24_activations",
        "resnet24_block_orders",
        "resnet24_regularisation",
    ],
)
def test_the_resnet_reports_studies_ran_without_augmentation(study, make_cfg):
    cfg = make_cfg([f"experiment={study}"])
    assert not cfg.augment.transforms and cfg.augment.mixup_alpha == 0
    assert cfg.model.name == "resnet" and list(cfg.model.blocks) == [3, 3, 2, 3]
    assert cfg.trainer.max_epochs == 50 and cfg.reference is None


def test_resnet24_regularisation_tries_several_weights_of_each(make_cfg):
    found = set()
    for row in rows("resnet24_regularisation"):
        cfg = row_cfg(make_cfg, "resnet24_regularisation", row)
        assert cfg.optimizer.weight_decay == 0
        found.add(("l1", cfg.regularizer.l1) if cfg.regularizer.l1 else ("l2", cfg.regularizer.l2))
    assert {w for kind, w in found if kind == "l1"} == {1e-5, 1e-4, 1e-3}
    assert {w for kind, w in found if kind == "l2"} == {1e-4, 1e-3, 1e-2}  # 1e-3: the report's


@pytest.mark.parametrize(
    ("row", "model", "filters", "batch", "activation", "init", "acc"),
    [
        ("1_original", "cnn_shallow", 20, 512, "relu", "default", 0.7176),
        ("4_xavier_selu", "cnn_shallow", 24, 128, "selu", "xavier", 0.7472),
        ("6_multilayer_xavier_selu", "cnn_deep", [24, 24, 24], 128, "selu", "xavier", 0.7931),
    ],
)
def test_plain_cnn_ladder_rows(row, model, filters, batch, activation, init, acc, make_cfg):
    cfg = row_cfg(make_cfg, "plain_cnn_ladder", row)
    assert cfg.model.name == model and cfg.data.batch_size == batch
    assert (list(cfg.model.filters) if model == "cnn_deep" else cfg.model.filters) == filters
    assert (cfg.activation.name, cfg.init.name) == (activation, init)
    assert cfg.model.dropout == 0.7  # keep probability 0.3
    assert cfg.reference.test_acc == acc


def test_nin9_heavy_augment_keeps_the_relu_on_its_class_scores(make_cfg):
    cfg = make_cfg(["experiment=nin9_heavy_augment"])
    assert (
        cfg.model.final_norm_act and cfg.reference.test_acc == 0.8981 and cfg.optimizer.lr == 1e-3
    )


def test_nin9_heavy_augment_trains_as_many_images_as_the_slides_offline_augmentation(make_cfg):
    # 164 epochs of 450,000 images (45,000 and nine augmented copies), decay at 81: here the
    # 45,000 are augmented on the fly, ten times as many epochs.
    cfg = make_cfg(["experiment=nin9_heavy_augment"])
    assert cfg.trainer.max_epochs * 45_000 == 164 * 450_000
    assert list(cfg.scheduler.milestones) == [810]
    for sweep in ("nin9_lr_sweep", "nin9_batch_sweep"):  # not augmented: 45,000 an epoch
        cfg = make_cfg([f"experiment={sweep}"])
        assert cfg.trainer.max_epochs == 164 and list(cfg.scheduler.milestones) == [81]


@pytest.mark.parametrize(
    ("sweep", "key", "expected"),
    [
        (
            "nin9_lr_sweep",
            "optimizer.lr",
            {1e-4: 0.8572, 1e-3: 0.899, 1e-2: 0.8906, 0.1: 0.8358},
        ),
        (
            "nin9_batch_sweep",
            "data.batch_size",
            {64: 0.9032, 128: 0.899, 256: 0.8982, 512: 0.8932},
        ),
    ],
)
def test_nin9_sweep_rows_carry_the_slides_validation_accuracy(sweep, key, expected, make_cfg):
    found = {}
    for row in rows(sweep):
        cfg = row_cfg(make_cfg, sweep, row)
        group, name = key.split(".")
        found[cfg[group][name]] = cfg.reference.val_acc
        assert "test_acc" not in cfg.reference and not cfg.augment.transforms
    assert found == expected


def test_sweeps_drop_augmentation_the_base_experiment_has(make_cfg):
    assert make_cfg(["experiment=nin9_heavy_augment"]).augment.transforms
    assert not make_cfg(["experiment=nin9_lr_sweep"]).augment.transforms


# Every experiment but cnnlab's own recipes reproduces a study (docs/studies.md).
RECIPES = {"fashion_base_cnn", "speedrun"}
STUDY_EXPERIMENTS = sorted(
    p.stem for p in (CONF / "experiment").glob("*.yaml") if p.stem not in RECIPES
)


@pytest.mark.parametrize("experiment", STUDY_EXPERIMENTS)
def test_study_experiments_do_not_clip_gradients_as_the_studies_did_not(experiment, make_cfg):
    assert make_cfg([f"experiment={experiment}"]).trainer.gradient_clip_val is None


def test_the_default_recipe_clips_gradients(make_cfg):
    assert make_cfg([]).trainer.gradient_clip_val == 1.0
