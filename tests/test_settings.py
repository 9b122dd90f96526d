"""What decides a run's result: every group and setting that changes a run changes its settings
(resume=auto refuses it, the report keeps it apart); where and how it is logged does not."""

import json
from pathlib import Path

import pytest

from cnnlab.config.job import group_choices
from cnnlab.config.settings import SCOPE, settings, upgrade
from cnnlab.errors import ConfigError
from cnnlab.run.resume import _same_settings

from conftest import CONF, compose_cfg

# Every choice of every group is another recipe, but for these: the loggers and paths are not
# settings; trainer=cpu is the same recipe on another device, and the callbacks', debug's and
# trainer's other choices are below; experiments and studies are made of the groups' choices.
NOT_RECIPES = {"hydra", "logger", "paths", "callbacks", "debug", "trainer", "experiment", "study"}
RECIPE_GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in NOT_RECIPES)
CHANGES = [
    "debug=limit",
    "debug=overfit",
    "+callbacks.ema._target_=lightning.pytorch.callbacks.EMAWeightAveraging",
    "trainer.precision=bf16-mixed",
    "trainer.limit_train_batches=5",
    "+trainer.overfit_batches=2",
    "trainer=gpu",
    "trainer=ddp",
    "trainer.deterministic=true",
    "trainer.devices=2",
    "compile=true",
    "matmul_precision=high",
    "label_smoothing=0.1",
    "seed=7",
    "data.split_seed=3",
    "data.eval_batch_size=64",  # with a limit in batches, it decides which images count
    "data.hflip=0",
    "callbacks.model_checkpoint.monitor=val/loss",
]
SAME = [
    "logger=wandb",
    "logger=tensorboard",
    "task_name=elsewhere",
    "paths.data_dir=/elsewhere",
    "data.dataset.root=/elsewhere",
    "data.on_device=false",
    "callbacks.curves=null",  # switched off: as if it were not there
    "trainer=cpu",  # the same recipe on another kind of device
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "callbacks.snapshots.every_n_epochs=5",
    "callbacks=figures",
    "resume=auto",
    "diagnose.overfit_gap=0.2",
    "reference={test_acc: 0.9}",
]


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    return settings(compose_cfg(tmp_path_factory.mktemp("default"), []))


def other_choices(group: str, tmp_path) -> list[str]:
    compose_cfg(tmp_path, [])
    chosen = group_choices()[group]
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if p.stem != chosen)


@pytest.mark.parametrize("group", RECIPE_GROUPS)
def test_every_other_choice_of_a_recipe_group_is_another_recipe(group, default, tmp_path):
    for option in other_choices(group, tmp_path):
        found = settings(compose_cfg(tmp_path, [f"{group}={option}"]))
        assert found != default, f"{group}={option} leaves the settings as they were"


@pytest.mark.parametrize("override", CHANGES)
def test_a_setting_that_changes_the_run_changes_its_settings(override, default, tmp_path):
    found = settings(compose_cfg(tmp_path, [override]))
    differ = sorted(k for k in set(found) | set(default) if found.get(k) != default.get(k))
    assert differ, f"{override} leaves the settings as they were"


@pytest.mark.parametrize("override", SAME)
def test_where_and_how_a_run_is_logged_is_not_a_setting(override, default, tmp_path):
    found = settings(compose_cfg(tmp_path, [override]))
    differ = sorted(k for k in set(found) | set(default) if found.get(k) != default.get(k))
    assert not differ, f"{override} changed {differ}"


def test_no_setting_is_a_place_on_disk(default, tmp_path):
    elsewhere = settings(compose_cfg(tmp_path / "elsewhere", [], tmp_path / "run2"))
    assert elsewhere == default
    assert not any(str(tmp_path) in str(v) for v in elsewhere.values())


def test_a_record_of_an_older_cnnlab_is_compared_on_what_it_recorded(make_cfg, caplog):
    cfg = make_cfg([])
    older = {"settings": {"optimizer.lr": 0.1, "seed": 42}}  # a few settings, no scope
    _same_settings(older, cfg, "last.ckpt was written")
    assert "last.ckpt was written by an older cnnlab, which recorded 2 settings" in caplog.text
    with pytest.raises(ConfigError, match=r"other settings: optimizer.lr=0.5 \(now 0.1\)"):
        _same_settings({"settings": {"optimizer.lr": 0.5}}, cfg, "last.ckpt was written")
    ema = {"callbacks.ema._target_": "lightning.pytorch.callbacks.EMAWeightAveraging"}
    newer = {"settings": {**settings(cfg), **ema}, "settings_scope": SCOPE}  # every setting
    with pytest.raises(ConfigError, match="callbacks.ema._target_=lightning"):
        _same_settings(newer, cfg, "last.ckpt was written")


def test_options_added_later_are_left_out_at_their_old_behaviour_and_an_image_folder_counts(
    make_cfg,
):
    """A run recorded before k-fold and fine-tuning existed still matches one of today with
    them off; your own images are told apart by their folder."""
    plain = settings(make_cfg([]))
    assert not {"data.folds", "data.fold", "init.checkpoint"} & plain.keys()
    assert not any(key.startswith("finetune.") for key in plain)
    folds = settings(make_cfg(["data.folds=3", "data.fold=1"]))
    assert folds["data.folds"] == 3 and folds["data.fold"] == 1
    assert settings(make_cfg(["finetune.body_lr=0.5"]))["finetune.body_lr"] == 0.5
    cats, xrays = (
        settings(make_cfg(["data=image_folder", f"data.dataset.root={root}"]))
        for root in ("cats", "xrays")
    )
    assert cats != xrays and cats["data.dataset.root"] == "cats"


# The settings of the default config and of every choice of every recipe group, as cnnlab
# recorded them before its modules moved into packages (tests/legacy/README.md).
LEGACY = json.loads((Path(__file__).parent / "legacy" / "settings.json").read_text())


def recorded(choice: str) -> dict:
    """The settings a run of ``choice`` recorded then, named as today's are."""
    if choice == "default":
        return upgrade(LEGACY["default"])
    entry = LEGACY["choices"][choice]
    kept = {k: v for k, v in LEGACY["default"].items() if k not in entry["gone"]}
    return upgrade(kept | entry["changed"])


@pytest.mark.parametrize("choice", ["default", *sorted(LEGACY["choices"])])
def test_runs_recorded_before_match_every_choice_of_today(choice, tmp_path):
    """An option added since must be decided in cnnlab.config.settings, or the runs recorded
    before it would stop resuming and pool apart from today's of the same recipe."""
    now = settings(compose_cfg(tmp_path, [] if choice == "default" else [choice]))
    before = recorded(choice)
    new = sorted(k for k in now if k not in before)
    assert not new, (
        f"{choice} has settings its runs recorded before lack: {new}. Say in "
        "cnnlab.config.settings whether each decides a result: FREE if it does not; NEUTRAL, "
        "with the value at which it does what cnnlab did before it, if it does"
    )
    differ = {k: (before.get(k), now.get(k)) for k in before if before.get(k) != now.get(k)}
    assert not differ, f"{choice}: (recorded before, now) {differ}"
