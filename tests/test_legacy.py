"""Runs and checkpoints written before cnnlab's modules moved into packages (tests/legacy/, its
README says how they were made) still resume, pool in the report and load in eval, predict and
export: a user's sweeps and checkpoints outlive the move."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_train import train_cli

from cnnlab.config.job import compose
from cnnlab.inference.evaluate import evaluate
from cnnlab.inference.export import export
from cnnlab.inference.predict import load_classifier, predict
from cnnlab.results.rows import collect, rows

LEGACY = Path(__file__).parent / "legacy" / "sweep"
# The legacy sweep's own command line, less the callback that paused its third job.
SWEEP = [
    "-m",
    "data=fake",
    "data.image_size=16",
    "data.dataset.train_size=48",
    "data.dataset.test_size=16",
    "data.batch_size=8",
    "model=resnet",
    "model.blocks=[1]",
    "model.channels=[4]",
    "trainer.max_epochs=2",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "~callbacks.predictions",
    "~callbacks.filters",
    "~callbacks.augment_examples",
    "~callbacks.confusion_matrix",
    "seed=1,2,3",
]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A copy of the legacy sweep (the tests write into it), moved from where it was made."""
    return Path(shutil.copytree(LEGACY, tmp_path / "sweep"))


def test_the_legacy_sweep_is_one_row_of_the_report(sweep):
    (row,), _ = rows(collect([sweep]))
    assert sorted(job.status for job in row.jobs) == ["finished", "finished", "interrupted"]
    assert len(row.values("best_val_acc")) == 2


def test_its_rerun_skips_the_finished_jobs_and_resumes_the_interrupted_one(sweep, tmp_path):
    finished = {n: (sweep / n / "metrics.json").read_text() for n in ("0", "1")}
    result = train_cli(*SWEEP, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {n: (sweep / n / "metrics.json").read_text() for n in finished} == finished
    resumed = json.loads((sweep / "2" / "metrics.json").read_text())
    assert resumed["status"] == "finished", resumed.get("error")
    assert Path(resumed["resumed_from"]) == sweep / "2" / "checkpoints" / "last.ckpt"
    assert resumed["epochs"] == 2
    (row,), _ = rows(collect([sweep]))  # old records and the new one pool as one recipe
    assert [job.status for job in row.jobs] == ["finished"] * 3


def test_its_checkpoints_load_in_eval_predict_and_export(sweep, tmp_path):
    checkpoint = sweep / "0" / "checkpoints" / "best.ckpt"
    module = load_classifier(checkpoint)
    assert module.hparams.model["name"] == "resnet" and module.num_classes == 10
    image = tmp_path / "image.png"
    Image.fromarray((torch.rand(20, 24, 3) * 255).byte().numpy()).save(image)
    (found,), skipped = predict(checkpoint, image, k=2)
    assert not skipped and len(found["top"]) == 2
    path, difference = export(checkpoint, "torchscript", tmp_path / "model.pt")
    assert path.is_file() and difference < 1e-4
    cfg = compose(
        [f"ckpt={checkpoint}", f"output_dir={tmp_path / 'eval'}", f"paths.root_dir={tmp_path}"],
        name="eval",
    )
    tested = evaluate(cfg)  # on the data set the checkpoint records, as it was trained on
    assert tested["data"] == "fake" and 0 <= tested["test_acc"] <= 1
