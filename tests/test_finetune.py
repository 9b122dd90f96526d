"""Fine-tuning: ``init.checkpoint`` starts a run from a cnnlab checkpoint's or a timm state
dict's weights, with a fresh head for another class count; ``finetune.*`` freezes the body's
parts, unfreezes them at an epoch and trains the body at a share of the head's rate; a run
resumed across the unfreeze ends with the weights of one that was never interrupted."""

import logging
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.callbacks import Callback
from safetensors.torch import save_file
from torch import nn

from cnnlab import registry
from cnnlab.config.settings import settings
from cnnlab.errors import ConfigError
from cnnlab.files import epoch_series
from cnnlab.models.build import build_model
from cnnlab.models.parts import parts
from cnnlab.models.pretrained import read_weights
from cnnlab.run.assemble import build_module
from cnnlab.run.checks import check
from cnnlab.run.train import run
from cnnlab.training.module import Classifier
from cnnlab.training.schedules import build_schedule

from conftest import TINY_DATA, compose_cfg

SMALL = [*TINY_DATA, "model=base_cnn"]  # 32 images of 16x16 in batches of 8
HEAD = ("net.classifier.3.weight", "net.classifier.3.bias")  # base_cnn's output layer


class Cut(Exception):
    """The end of a run cut short by CutAt."""


class CutAt(Callback):
    """Ends fitting with an error as epoch ``epoch`` starts (the last one's checkpoints saved,
    as a kill between two epochs leaves them), or after its batch ``batch`` with ``path``
    saved first, as SaveOnSignal saves a pre-empted run."""

    def __init__(self, epoch: int, batch: int | None, path: str):
        self.epoch, self.batch, self.path = epoch, batch, path

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and self.batch is None:
            raise Cut(f"as epoch {self.epoch} starts")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            trainer.save_checkpoint(self.path)
            raise Cut(f"after batch {batch_idx} of epoch {self.epoch}")


def cut_at(epoch: int, batch: int | None, path) -> list[str]:
    options = {"_target_": f"{__name__}.CutAt", "epoch": epoch, "batch": batch, "path": path}
    return [f"+callbacks.cut.{k}={'null' if v is None else v}" for k, v in options.items()]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    """A base_cnn trained for one epoch on 10 classes: the checkpoint the tests start from."""
    root = tmp_path_factory.mktemp("source")
    run(compose_cfg(root, [*SMALL, "trainer.max_epochs=1"]))
    GlobalHydra.instance().clear()
    return str(root / "run" / "checkpoints" / "last.ckpt")


def weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def body(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("net.") and k not in HEAD}


def test_the_body_starts_as_the_checkpoint_and_the_head_fits_the_new_class_count(
    source, make_cfg, caplog, tmp_path
):
    copy = Path(shutil.copy(source, tmp_path / "pretrained.ckpt"))
    with caplog.at_level(logging.INFO, logger="cnnlab.models.pretrained"):
        module = build_module(make_cfg([*SMALL, f"init.checkpoint={copy}", "data.num_classes=4"]))
    saved, now = weights(source), {f"net.{k}": v for k, v in module.net.state_dict().items()}
    assert body(now).keys() == body(saved).keys()
    for key, tensor in body(saved).items():
        assert torch.equal(now[key], tensor), key
    assert now[HEAD[0]].shape == (4, 512) and saved[HEAD[0]].shape == (10, 512)
    said = "the head, which keeps its fresh init: classifier.3.weight (4x512; 10x512 in the file)"
    assert said in caplog.text
    # the fine-tuned run's checkpoints load without the file
    saved = tmp_path / "tuned.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, saved)
    copy.unlink()
    loaded = Classifier.load(saved)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in module.state_dict().items())


def test_the_same_class_count_takes_the_head_as_well(source, make_cfg):
    module = build_module(make_cfg([*SMALL, f"init.checkpoint={source}"]))
    head = module.net.state_dict()["classifier.3.weight"]
    assert torch.equal(head, weights(source)[HEAD[0]])


def test_frozen_parts_keep_their_weights_and_the_body_trains_at_its_share_of_the_rate(
    source, make_cfg, tmp_path
):
    tune = ["finetune.freeze=[features]", "finetune.body_lr=0.1", "trainer.max_epochs=2"]
    run(make_cfg([*SMALL, f"init.checkpoint={source}", "data.num_classes=4", *tune]))
    saved, after = weights(source), weights(tmp_path / "run" / "checkpoints" / "last.ckpt")
    frozen = [k for k in after if k.startswith("net.features.")]
    assert any(k.endswith("running_mean") for k in frozen)  # BN statistics stay as well
    for key in frozen:
        assert torch.equal(after[key], saved[key]), key
    trained = "net.classifier.1.0.weight"  # the body's dense layer, not frozen
    assert not torch.equal(after[trained], saved[trained])
    # the rates the optimizer used, as the LR monitor logged them: cosine over two epochs
    series = epoch_series(tmp_path / "run")
    head, body_rate = series["lr-SGD/head"], series["lr-SGD/body"]
    assert head == pytest.approx({0: 0.1, 1: 0.05})
    assert body_rate == pytest.approx({0: 0.01, 1: 0.005})


# Frozen but for the head in epoch 0, then all of it at a tenth of the head's rate.
RESUMED = [
    *SMALL,
    "data.num_classes=4",
    "finetune.freeze=all",
    "finetune.body_lr=0.1",
    "finetune.unfreeze_at=1",
    "trainer.max_epochs=3",
]


@pytest.fixture(scope="module")
def uninterrupted(source, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The final weights of the resume tests' run, trained in one go."""
    root = tmp_path_factory.mktemp("uninterrupted")
    run(compose_cfg(root, [*RESUMED, f"init.checkpoint={source}"]))
    GlobalHydra.instance().clear()
    final = weights(root / "run" / "checkpoints" / "last.ckpt")
    for key, tensor in body(weights(source)).items():  # the body trained once unfrozen
        assert key.endswith("num_batches_tracked") or not torch.equal(final[key], tensor), key
    return final


@pytest.mark.parametrize("cut", [2, 1], ids=["after-the-unfreeze-epoch", "before-it"])
def test_a_run_resumed_across_the_unfreeze_ends_as_an_uninterrupted_one(
    cut, uninterrupted, source, make_cfg, tmp_path
):
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    tuned = [*RESUMED, f"init.checkpoint={source}"]
    with pytest.raises(Cut):
        run(make_cfg([*tuned, *cut_at(cut, None, last)]))
    assert torch.load(last, weights_only=True)["epoch"] == cut - 1
    run(make_cfg([*tuned, f"resume={last}"]))
    resumed = weights(last)
    assert resumed.keys() == uninterrupted.keys()
    for key in uninterrupted:
        assert torch.equal(resumed[key], uninterrupted[key]), key  # bit for bit


def test_a_run_resumed_within_the_unfreeze_epoch_trains_the_body_at_once(
    source, make_cfg, tmp_path
):
    # Not compared with an uninterrupted run: a run resumed within an epoch draws that
    # epoch's remaining batches anew, with or without fine-tuning.
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    tuned = [*RESUMED, f"init.checkpoint={source}", "trainer.max_epochs=2"]
    with pytest.raises(Cut):
        run(make_cfg([*tuned, *cut_at(1, 1, last)]))
    before = weights(last)
    run(make_cfg([*tuned, f"resume={last}"]))  # the rest of epoch 1, and no epoch after it
    after = weights(last)
    for key, tensor in body(before).items():
        if key.endswith(".weight"):
            assert not torch.equal(after[key], tensor), key


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_timm_state_dict_loads_into_model_timm_with_a_new_head(suffix, make_cfg, tmp_path):
    imagenet = timm.create_model("test_resnet")  # 1000 classes, randomly initialised
    file = tmp_path / f"test_resnet{suffix}"
    if suffix == ".safetensors":
        save_file(imagenet.state_dict(), file)
    else:
        torch.save(imagenet.state_dict(), file)
    model = ["model=timm", "model.arch=test_resnet", "model.stem=imagenet"]
    cfg = make_cfg([*SMALL, "data.image_size=32", *model, f"init.checkpoint={file}"])
    net = build_module(cfg).net
    assert net.fc.weight.shape == (10, 96)
    theirs = imagenet.state_dict()
    for key, tensor in net.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(tensor, theirs[key]), key


def test_every_models_head_is_its_output_layer():
    """The parts sweep the registry: the first of the head's is the layer of one unit a class."""
    for name in registry.names("model"):
        spec = {
            "name": name,
            **({"arch": "test_resnet", "stem": "imagenet"} if name == "timm" else {}),
        }
        net = build_model(spec, {"name": "relu"}, {"name": "bn"}, {"name": "auto"}, num_classes=7)
        body_parts, head = parts(net)
        assert body_parts and next(iter(head.values())).weight.shape[0] == 7, name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("init.checkpoint={tmp}/gone.ckpt", "init.checkpoint={tmp}/gone.ckpt: no such file"),
        (  # another architecture: a narrower dense layer
            "init.checkpoint={source} model.hidden=256",
            "init.checkpoint={source} (model=base_cnn) holds another architecture: "
            "classifier.1.0.weight is 256x256 here and 512x256 in it",
        ),
        (
            "finetune.freeze=[stem]",
            "finetune.freeze: no part 'stem'; choose from: features, classifier.0, "
            "classifier.1, classifier.2 (the head, classifier.3, always trains)",
        ),
        ("finetune.freeze=5", "finetune.freeze=5: only 4 parts; choose from: features,"),
        ("finetune.freeze=0", "finetune.freeze=0: expected all, an integer >= 1, a list of"),
        ("finetune.body_lr=2", "finetune.body_lr=2: expected a number in (0, 1]"),
        ("finetune.unfreeze_at=1", "finetune.unfreeze_at=1 needs finetune.freeze"),
        (
            "finetune.freeze=all finetune.unfreeze_at=3 trainer.max_epochs=3",
            "finetune.unfreeze_at=3: the run ends before it (trainer.max_epochs=3;",
        ),
        (
            "finetune.freeze=all finetune.body_lr=0.1",
            "finetune.body_lr=0.1 with finetune.freeze=all: the body never trains",
        ),
        ("init.checkpoint=[1]", "init.checkpoint=[1]: expected a string or null"),
        (
            "init.checkpoint={tmp}",
            "init.checkpoint={tmp}: a folder, not a file; expected a cnnlab .ckpt, or a model's",
        ),
        ("finetune.freeze=[]", "finetune.freeze=[]: expected all, an integer >= 1, a list of at"),
    ],
)
def test_a_fine_tuning_mistake_is_refused_in_one_line_before_training(
    overrides, message, source, make_cfg, tmp_path
):
    overrides, message = (s.format(tmp=tmp_path, source=source) for s in (overrides, message))
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        run(make_cfg([*SMALL, *overrides.split()]))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("name", "write", "said"),
    [
        ("empty.pth", lambda path, source: path.write_bytes(b""), "the file is empty"),
        (  # torch's own word for a text file is "101" (KeyError)
            "notes.ckpt",
            lambda path, source: path.write_text("hello"),
            "cut short, or not a file torch.save wrote: KeyError",
        ),
        (
            "cut.ckpt",
            lambda path, source: path.write_bytes(Path(source).read_bytes()[:5000]),
            "cut short, or not a file torch.save wrote: ",
        ),
        (  # torch's own words run to a page, with terminal colour codes
            "model.pth",
            lambda path, source: torch.save(torch.nn.Linear(2, 2), path),
            "it holds Python objects beside tensors: a whole model, torch.save(model)?",
        ),
    ],
)
def test_a_file_of_no_weights_is_refused_saying_why_and_what_is_accepted(
    name, write, said, source, tmp_path
):
    path = tmp_path / name
    write(path, source)
    with pytest.raises(ConfigError) as caught:
        read_weights(str(path))
    message = str(caught.value)
    assert message.startswith(f"init.checkpoint={path}: cannot be read ({said}")
    assert message.endswith(
        "); expected a cnnlab .ckpt, or a model's state_dict() saved with "
        "torch.save or as .safetensors"
    )
    assert "\n" not in message and "\x1b" not in message


def test_unfreezing_under_ddp_is_refused_and_freezing_without_a_checkpoint_is_said(
    make_cfg, caplog
):
    tune = ["finetune.freeze=all", "finetune.unfreeze_at=1"]
    with pytest.raises(
        ConfigError,
        match=r"unfreeze_at with several processes \(trainer.strategy=ddp, trainer.devices=1\)",
    ):
        check(make_cfg([*SMALL, *tune, "+trainer.strategy=ddp"]))
    with caplog.at_level(logging.WARNING, logger="cnnlab.training.finetune"):
        check(make_cfg([*SMALL, *tune]))
    assert "finetune.freeze without init.checkpoint" in caplog.text


@pytest.mark.parametrize(
    "override",
    [
        "init.checkpoint=/elsewhere/last.ckpt",  # another start is another run
        "finetune.freeze=all",
        "finetune.freeze=[features]",
        "finetune.body_lr=0.1",
        "finetune.unfreeze_at=2",
    ],
)
def test_the_fine_tuning_options_are_settings(override, default_settings, tmp_path):
    assert settings(compose_cfg(tmp_path, [override])) != default_settings


@pytest.fixture(scope="module")
def default_settings(tmp_path_factory):
    return settings(compose_cfg(tmp_path_factory.mktemp("default"), []))


def test_onecycle_peaks_each_group_at_its_share_of_max_lr():
    head, body_param = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([{"params": [head]}, {"params": [body_param], "lr": 0.01}], lr=0.1)
    onecycle = {"name": "onecycle", "max_lr": 0.4, "total_steps": None}  # null: the run's length
    build_schedule(optimizer, {**onecycle, "interval": "step"}, 100, 10)
    assert [g["max_lr"] for g in optimizer.param_groups] == pytest.approx([0.4, 0.04])


def test_frozen_bn_layers_normalise_by_their_running_statistics_until_unfrozen(make_cfg):
    """Lightning's freeze leaves frozen BN layers in training mode (each batch normalised by its
    own statistics, unlike when tested); cnnlab's callback puts them in eval mode each step."""
    tune = ["finetune.freeze=[features]", "finetune.unfreeze_at=1"]
    module = build_module(make_cfg([*SMALL, *tune, "trainer.max_epochs=2"]))
    callback = module.finetuning
    callback.freeze_before_training(module)
    module.train()  # as Lightning does at every epoch
    callback.on_train_batch_start(SimpleNamespace(current_epoch=0), module, None, 0)
    norms = {name: m for name, m in module.net.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert norms and all(not m.training for n, m in norms.items() if n.startswith("features."))
    module.train()
    callback.on_train_batch_start(SimpleNamespace(current_epoch=1), module, None, 0)
    assert all(m.training for m in norms.values())  # unfrozen from epoch 1: they train
