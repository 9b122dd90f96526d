"""best.ckpt and last.ckpt: the same state is written once, and each file holds its own epoch."""

import os
import zipfile

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins import AsyncCheckpointIO
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.serialization import config

from cnnlab.run.checkpoints import AtomicCheckpointIO, Checkpoint
from cnnlab.run.train import run

from conftest import TINY_DATA

VAL_ACC = [0.5, 0.7, 0.6, 0.8, 0.8]  # by epoch: improves on 0, 1 and 3 only


class Scripted(L.LightningModule):
    """A linear model whose validation accuracy is VAL_ACC[epoch]."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", VAL_ACC[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def loader():
    data = torch.utils.data.TensorDataset(torch.randn(8, 4))
    return torch.utils.data.DataLoader(data, batch_size=4)


class Files(Callback):
    """After each epoch's checkpoints are written: which epoch each file holds, and whether
    last.ckpt is the same file as best.ckpt."""

    def __init__(self, folder):
        self.folder, self.seen = folder, []

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch > 0:
            self.look(trainer)

    def on_train_end(self, trainer, pl_module):
        self.look(trainer)

    def look(self, trainer):
        trainer.strategy.checkpoint_io.teardown()  # waits for the writer thread
        best, last = self.folder / "best.ckpt", self.folder / "last.ckpt"
        epoch = {p.name: torch.load(p, weights_only=True)["epoch"] for p in (best, last)}
        self.seen.append((epoch["best.ckpt"], epoch["last.ckpt"], os.path.samefile(best, last)))


def fit(folder, epochs, resume=None):
    files = Files(folder)
    best = Checkpoint(dirpath=folder, filename="best", monitor="val/acc", mode="max")
    last = Checkpoint(dirpath=folder, filename="last", enable_version_counter=False)
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[best, last, files],
        plugins=[AsyncCheckpointIO(AtomicCheckpointIO())],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Scripted(), loader(), loader(), ckpt_path=resume)
    return files.seen


def test_last_ckpt_is_a_link_to_best_ckpt_only_on_the_epochs_that_improve(tmp_path):
    seen = fit(tmp_path, epochs=5)
    # (epoch in best.ckpt, epoch in last.ckpt, one file) after each epoch
    assert seen == [(0, 0, True), (1, 1, True), (1, 2, False), (3, 3, True), (3, 4, False)]


def test_a_run_resumed_from_a_linked_last_ckpt_goes_on_as_before(tmp_path):
    fit(tmp_path, epochs=2)  # epoch 1 improved: last.ckpt is best.ckpt's file
    assert os.path.samefile(tmp_path / "best.ckpt", tmp_path / "last.ckpt")
    seen = fit(tmp_path, epochs=5, resume=str(tmp_path / "last.ckpt"))
    # as found, then after epochs 2-4: the best score came back with the state, so epoch 2's
    # 0.6 does not replace epoch 1's 0.7
    assert seen == [(1, 1, True), (1, 2, False), (3, 3, True), (3, 4, False)]


def test_without_hard_links_last_ckpt_is_a_copy(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError("this file system has no hard links")

    monkeypatch.setattr(os, "link", no_links)
    seen = fit(tmp_path, epochs=2)
    assert seen == [(0, 0, False), (1, 1, False)]  # each epoch's state, in two files


def test_its_state_is_stored_under_lightnings_name(tmp_path):
    fit(tmp_path, epochs=1)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["callbacks"]
    keys = {Checkpoint(monitor="val/acc", mode="max").state_key, Checkpoint().state_key}
    assert keys == {key for key in saved if key.startswith("ModelCheckpoint{")}


def test_checkpoints_load_back_whole_from_files_written_without_crc32s(tmp_path):
    state = {"state_dict": {"w": torch.randn(1000)}, "epoch": 3}
    AtomicCheckpointIO().save_checkpoint(state, tmp_path / "ours.ckpt")
    TorchCheckpointIO().save_checkpoint(state, tmp_path / "lightning.ckpt")
    files = list(tmp_path.iterdir())
    crcs = {p.name: {i.CRC for i in zipfile.ZipFile(p).infolist()} for p in files}
    assert crcs.keys() == {"ours.ckpt", "lightning.ckpt"}  # and no temporary file left
    assert crcs["ours.ckpt"] == {0} and 0 not in crcs["lightning.ckpt"]
    folders = {p.name: {n.split("/")[0] for n in zipfile.ZipFile(p).namelist()} for p in files}
    assert folders == {"ours.ckpt": {"archive"}, "lightning.ckpt": {"archive"}}
    assert config.save.compute_crc32  # for everything else the process saves
    back = AtomicCheckpointIO().load_checkpoint(tmp_path / "ours.ckpt")
    assert back["epoch"] == 3 and torch.equal(back["state_dict"]["w"], state["state_dict"]["w"])


def _classes(obj) -> set[type]:
    """The class of every object in a loaded checkpoint, containers and what they hold."""
    found = {type(obj)}
    items = obj.items() if isinstance(obj, dict) else []
    if isinstance(obj, list | tuple | set):
        items = enumerate(obj)
    for key, value in items:
        found |= _classes(key) | _classes(value)
    return found


def test_a_runs_checkpoints_hold_only_plain_python_and_tensors(make_cfg, tmp_path):
    # Lists from the config in every place that reaches a checkpoint: Adam's betas (optimizer
    # state), multistep's milestones (scheduler state), EMA's callback state, hyperparameters.
    ema = "+callbacks.ema._target_=lightning.pytorch.callbacks.EMAWeightAveraging"
    options = ["optimizer=adam", "scheduler=multistep", "scheduler.milestones=[1,2]"]
    run(make_cfg([*TINY_DATA, *options, ema, "trainer.max_epochs=2"]))
    saved = sorted((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in saved} == {"best.ckpt", "last.ckpt"}
    for path in saved:
        # torch.load's default since torch 2.6, and how Lightning reads it to resume or test
        checkpoint = torch.load(path, weights_only=True)
        modules = {cls.__module__.split(".")[0] for cls in _classes(checkpoint)}
        assert modules <= {"builtins", "collections", "torch"}, path.name
        assert checkpoint["optimizer_states"][0]["param_groups"][0]["betas"][1] == 0.999
