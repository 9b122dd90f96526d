"""Nothing lost: bad input refused in one line, runs resumed exactly after a kill, checkpoints
saved on pre-emption signals, NaN stopped at its step, files and downloads that a kill cannot
leave half-written."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from omegaconf import OmegaConf
from test_train import train_cli

from cnnlab.config.job import check_choices, new_dir
from cnnlab.data.cifar import cifar10
from cnnlab.data.fashion_mnist import fashion_mnist
from cnnlab.errors import ConfigError, Diverged
from cnnlab.files import epoch_series
from cnnlab.run.resume import run_state
from cnnlab.run.train import run

import wandb_records
from conftest import CONF, FAST, ROOT, TINY_DATA
from disk_formats import write_cifar10_archive

TESTS = Path(__file__).resolve().parent
SMALL = ["data=fake", "data.image_size=16", "model=base_cnn", *FAST]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("optimizer.lr=abc", "optimizer.lr=abc: expected a number > 0"),
        ("optimizer.lr=-1", "optimizer.lr=-1: expected a number > 0"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0: expected an integer >= 1"),
        ("trainer.max_epochs=-1", "trainer.max_epochs=-1 needs trainer.max_steps > 0"),
        ("seed=-3", "seed=-3: expected an integer >= 0"),
        ("label_smoothing=1", "label_smoothing=1: expected a number in [0, 1)"),
        (
            "optimizer=adam optimizer.betas=[0.9,1.5]",
            "optimizer.betas=[0.9,1.5]: expected a list of 2 numbers in [0, 1)",
        ),
        (
            "model=cnn_shallow model.pool=40",
            "model.pool=40, model.hidden=500, model.dropout=0.7)"
            " cannot be built for 3x16x16 images: Given input size: (20x16x16)",
        ),
        (  # a map pooled to nothing
            "model=cnn_deep model.pool=1000000000",
            "model.pool=1000000000, model.pool_stride=1, model.hidden=[512,512], "
            "model.dropout=0.7) cannot be built for 3x16x16 images:",
        ),
        # Values that trained wrongly without a word, or crashed deep inside a build.
        (
            "scheduler=exponential scheduler.gamma=-1",
            "scheduler.gamma=-1: expected a number in (0, 1]",
        ),
        ("scheduler.warmup_start=-3", "scheduler.warmup_start=-3: expected a number in (0, 1]"),
        (
            "scheduler=step scheduler.step_size=0",
            "scheduler.step_size=0: expected an integer >= 1",
        ),
        (
            "model=resnet model.blocks=[0,0,0,0]",
            "model.blocks=[0,0,0,0]: expected a list of at least 1 integers in [1, 64]",
        ),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1: expected a number >= 0"),
        ("++trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0: expected"),
        ("trainer.precision=bogus", "trainer.precision=bogus: expected one of 64-true, 32-true"),
        ("+trainer.strategy=bogus", "trainer (lightning.pytorch.Trainer) cannot be built:"),
        (
            "augment=imgaug_heavy augment.transforms.all.transforms.3.low=2",
            "augment.transforms.all.transforms.3 (cnnlab.data.augment.LinearContrast) cannot be "
            "built: "
            "low=2 is above high=1.5",
        ),
        ("augment.mix_prob=2", "augment.mix_prob=2: expected a number in [0, 1]"),
        ("data.test_subset=-1", "data.test_subset=-1: expected an integer >= 1 or null"),
        ("data.batch_size=abc", "data.batch_size=abc: expected an integer"),
        ("data.std=[0,0,0]", "data.std=[0,0,0]: expected a list of"),
        ("activation=elu activation.alpha=-1", "activation.alpha=-1: expected a number > 0"),
        (
            "regularizer=max_norm regularizer.max_norm=-1",
            "regularizer.max_norm=-1: expected a number > 0",
        ),
        (
            "augment=standard augment.transforms.crop_flip.padding=-4",
            "augment.transforms.crop_flip.padding=-4: expected an integer in [0, 64]",
        ),
        ("preprocess=zca preprocess.eps=-1", "preprocess.eps=-1: expected a number > 0"),
        ("data.image_size=4", "base_cnn needs images of at least 10 pixels, got 4"),
    ],
)
def test_a_bad_value_is_refused_in_one_line_before_anything_runs(
    make_cfg, tmp_path, overrides, message
):
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        run(make_cfg([*SMALL, *overrides.split()]))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_unknown_option_names_the_nearest_one():
    with pytest.raises(ConfigError, match="activation=relux: no such option; did you mean relu?"):
        check_choices(["activation=relux"], CONF)
    with pytest.raises(ConfigError, match="model=resnt: .*did you mean resnet?"):
        check_choices(["model=nin,resnt"], CONF)
    fine = ["activation=elu,relu", "experiment=nin_activation_bn_grid", "hydra/launcher=gpus"]
    check_choices([*fine, "~callbacks.progress_bar", "optimizer.lr=0.1", "debug=null"], CONF)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("optimizer.lr=-1", "optimizer.lr=-1: expected a number > 0"),
        ("data.batch_size=abc", "data.batch_size=abc: expected an integer >= 1"),
        ("trainer.precision=bogus", "trainer.precision=bogus: expected one of 64-true, 32-true"),
        ("model=cnn_shallow model.pool=40", "model=cnn_shallow (model.filters=20, model.pool=40"),
    ],
)
def test_a_user_mistake_on_the_command_line_leaves_one_line_and_no_run_directory(
    tmp_path, overrides, message
):
    result = train_cli(*TINY_DATA, *overrides.split(), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"cnnlab: error: {message}")
    assert list((tmp_path / "logs" / "train" / "runs").iterdir()) == []


def test_a_directory_that_holds_a_run_is_never_overwritten(make_cfg, tmp_path):
    run(make_cfg([*SMALL, "trainer.max_epochs=1"]))
    record = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(ConfigError, match="already holds a run: resume=auto goes on with it"):
        run(make_cfg([*SMALL, "trainer.max_epochs=1"]))
    with pytest.raises(ConfigError, match=r"finished with other settings: optimizer.lr=0.1 \(now"):
        run(make_cfg([*SMALL, "trainer.max_epochs=1", "resume=auto", "optimizer.lr=0.05"]))
    ema = "+callbacks.ema._target_=lightning.pytorch.callbacks.EMAWeightAveraging"  # a callback
    with pytest.raises(ConfigError, match=r"other settings: callbacks.ema._target_=None \(now"):
        run(make_cfg([*SMALL, "trainer.max_epochs=1", "resume=auto", ema]))
    assert (tmp_path / "run" / "metrics.json").read_text() == record  # both left it as it was
    # resume=auto on a finished run of the same settings: nothing to do, the record stays
    assert (
        run(make_cfg([*SMALL, "trainer.max_epochs=1", "resume=auto"]))
        == json.loads(record)["best_val_acc"]
    )
    assert (tmp_path / "run" / "metrics.json").read_text() == record
    # a finished run whose checkpoints were cleared away is still a run
    for path in (tmp_path / "run" / "checkpoints").iterdir():
        path.unlink()
    with pytest.raises(ConfigError, match="already holds a run"):
        run(make_cfg([*SMALL, "trainer.max_epochs=1"]))


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("a file", "logs/train/runs/now: Not a directory"),
        ("a dangling link", "logs/train/runs/now: File exists ("),
        ("no permission", "Permission denied (the folder it goes in must be writable by user"),
    ],
)
def test_a_run_directory_that_cannot_be_made_ends_in_one_line(
    fault, message, tmp_path, capsys, monkeypatch
):
    if fault == "a file":
        (tmp_path / "logs").write_text("")
    elif fault == "a dangling link":
        (tmp_path / "logs").symlink_to(tmp_path / "gone")
    else:  # as a logs/ mount owned by another user (root here may write anywhere)

        def denied(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(SystemExit) as caught:
        new_dir(str(tmp_path / "logs" / "train" / "runs" / "now"))
    assert caught.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("cnnlab: error: cannot create the run directory") and message in line


def test_runs_started_in_the_same_second_get_directories_of_their_own(tmp_path):
    path = str(tmp_path / "runs" / "2026-01-01_00-00-00")
    assert [new_dir(path) for _ in range(3)] == [path, f"{path}-2", f"{path}-3"]
    # cached like ${now:}: reading the run directory again gives the same one
    cfg = OmegaConf.create({"dir": f"${{cnnlab.new_dir:{tmp_path}/other}}"})
    assert cfg.dir == cfg.dir == f"{tmp_path}/other"


def _cli_job(tmp_path: Path, out: Path, pause: list[str], *overrides: str) -> subprocess.Popen:
    """``python src/train.py`` in the background, pausing where ``pause`` says."""
    callback = "+callbacks.pause._target_=fault_callbacks.PauseAt"
    args = [callback, *(f"+callbacks.pause.{p}" for p in pause), f"hydra.run.dir={out}"]
    env = {**os.environ, "PYTHONPATH": str(TESTS), "HYDRA_FULL_ERROR": "0", "WANDB_MODE": "offline"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "train.py"), *overrides, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(marker: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)


# Shuffled data, augmentation and dropout: everything whose randomness a
# resumed run must replay. 64 images of 8 a batch: 7 steps an epoch (one image to validation).
EXACT = [
    *SMALL,
    "data.dataset.train_size=64",
    "data.val_split=0.125",
    "data.batch_size=8",
    "augment=standard",
    "model.dropout=0.3",
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
]


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights_and_results(make_cfg, tmp_path):
    uninterrupted, killed = tmp_path / "a", tmp_path / "b"
    run(make_cfg([*EXACT, f"paths.output_dir={uninterrupted}"]))

    marker = tmp_path / "in-epoch-3"
    pause = ["epoch=2", "batch=3", f"marker={marker}", "seconds=600"]
    job = _cli_job(tmp_path, killed, pause, *EXACT)
    _wait_for(marker, job)
    job.send_signal(signal.SIGKILL)  # in the third epoch, its weights changed and unsaved
    job.wait()
    assert not (killed / "metrics.json").exists()
    last = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, 14)  # the end of the second epoch

    run(make_cfg([*EXACT, f"paths.output_dir={killed}", "resume=auto"]))
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (uninterrupted, killed))
    assert b["resumed_from"] == str(killed / "checkpoints" / "last.ckpt")
    for key in ("best_val_acc", "test_acc", "test_loss", "epochs"):
        assert a[key] == b[key], key
    weights = [_weights(d) for d in (uninterrupted, killed)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name  # bit for bit
    steps = [
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        for d in (uninterrupted, killed)
    ]
    assert steps == [28, 28]
    # the CSV log has every epoch, the first attempt's two too, with the same figures
    series = [epoch_series(d) for d in (uninterrupted, killed)]
    assert sorted(series[1]["train/loss"]) == [0, 1, 2, 3]
    assert series[0] == series[1]


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.mark.parametrize(
    ("sig", "stage", "step"),
    [
        (signal.SIGTERM, "train", 4 + 2),  # mid-epoch, where it stopped
        (signal.SIGUSR2, "train", 4 + 2),
        (signal.SIGTERM, "val", 4 + 4),  # in the epoch's validation: the epoch's end
    ],
)
def test_a_preemption_signal_saves_where_it_stopped_and_the_run_goes_on(
    tmp_path, make_cfg, sig, stage, step
):
    out, marker = tmp_path / "run", tmp_path / "paused"
    tiny = [*TINY_DATA, "model=base_cnn", "trainer.max_epochs=3", "logger=wandb"]
    pause = ["epoch=1", "batch=1" if stage == "train" else "batch=0", f"marker={marker}"]
    job = _cli_job(tmp_path, out, [*pause, "seconds=3", f"stage={stage}"], *tiny)
    _wait_for(marker, job)
    job.send_signal(sig)
    assert job.wait(timeout=120) == 128 + sig, job.stderr.read()[-2000:]
    stopped = json.loads((out / "metrics.json").read_text())
    assert stopped["status"] == "interrupted" and signal.Signals(sig).name in stopped["error"]
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == step
    seconds_before = run_state(out / "checkpoints" / "last.ckpt")["seconds"]
    assert seconds_before >= 3  # the pause was training time
    if (sig, stage) != (signal.SIGTERM, "train"):
        return  # resuming from the saved step: once is enough

    os.environ["WANDB_MODE"] = "offline"
    try:
        run(make_cfg([*tiny, f"paths.output_dir={out}", "resume=auto"]))
    finally:
        del os.environ["WANDB_MODE"]
    done = json.loads((out / "metrics.json").read_text())
    assert done["status"] == "finished" and done["epochs"] == 3
    assert done["wall_time_s"] > seconds_before  # the first attempt's time counts
    ids = {wandb_records.summary(p)["id"] for p in out.glob("wandb/offline-run-*/run-*.wandb")}
    assert len(list(out.glob("wandb/offline-run-*"))) == 2 and len(ids) == 1  # one W&B run


def test_a_nan_loss_stops_the_run_at_its_step_and_keeps_the_last_good_checkpoint(
    make_cfg, tmp_path
):
    poison = ["+callbacks.poison._target_=fault_callbacks.PoisonAt", "+callbacks.poison.epoch=1"]
    with pytest.raises(Diverged, match=r"loss is nan at epoch 1, step 8 \(batch 0 of the epoch\)"):
        run(make_cfg([*SMALL, "trainer.max_epochs=3", *poison]))
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and "Diverged" in record["error"]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and all(t.isfinite().all() for t in last["state_dict"].values())


def test_weights_that_are_not_finite_are_never_saved(make_cfg, tmp_path):
    poison = [f"+callbacks.poison.{k}" for k in ("_target_=fault_callbacks.PoisonAt", "epoch=1")]
    with pytest.raises(Diverged, match="weights are not finite after epoch 1, step 16"):
        run(make_cfg([*SMALL, "trainer.max_epochs=3", *poison, "+callbacks.poison.batch=7"]))
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and all(t.isfinite().all() for t in last["state_dict"].values())


def test_a_sweep_rerun_into_its_directory_skips_finished_jobs_and_resumes_the_others(tmp_path):
    grid = ["-m", *TINY_DATA, "model=base_cnn", "trainer.max_epochs=1"]
    assert train_cli(*grid, "activation=elu,relu", cwd=tmp_path).returncode == 0
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    first = (sweep / "0" / "metrics.json").read_text()
    (sweep / "1" / "metrics.json").unlink()  # job 1 as if killed after its last checkpoint
    again = train_cli(*grid, "activation=elu,relu,tanh", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (sweep / "0" / "metrics.json").read_text() == first  # skipped
    resumed = json.loads((sweep / "1" / "metrics.json").read_text())
    assert resumed["resumed_from"] == str(sweep / "1" / "checkpoints" / "last.ckpt")
    new = json.loads((sweep / "2" / "metrics.json").read_text())
    assert new["resumed_from"] is None and new["choices"]["activation"] == "tanh"
    records = [json.loads((sweep / job / "metrics.json").read_text()) for job in "012"]
    assert all(record["status"] == "finished" for record in records)


def test_a_kill_while_writing_leaves_the_previous_file_whole(tmp_path):
    path, marker = tmp_path / "metrics.json", tmp_path / "writing"
    path.write_text('{"status": "finished"}\n')
    writer = (  # cnnlab/files.py alone: the package would import torch
        "import importlib.util as u, sys, time; from pathlib import Path\n"
        "spec = u.spec_from_file_location('files', sys.argv[3]); files = u.module_from_spec(spec)\n"
        "spec.loader.exec_module(files)\n"
        "with files.atomic(Path(sys.argv[1])) as tmp:\n"
        "    with open(tmp, 'w') as f:\n"
        "        f.write('{\"status\": '); f.flush(); Path(sys.argv[2]).touch(); time.sleep(600)\n"
    )
    files = ROOT / "src" / "cnnlab" / "files.py"
    process = subprocess.Popen([sys.executable, "-c", writer, str(path), str(marker), str(files)])
    _wait_for(marker, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads(path.read_text()) == {"status": "finished"}


def test_checkpoints_and_records_are_written_to_a_temporary_file_and_renamed(
    make_cfg, tmp_path, monkeypatch
):
    renamed, replace = [], os.replace

    def spy(src, dst):
        renamed.append((Path(src), Path(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    run(make_cfg([*SMALL, "trainer.max_epochs=1"]))
    atomic = {dst.name for src, dst in renamed if src.parent == dst.parent and src.name[0] == "."}
    assert {"best.ckpt", "last.ckpt", "metrics.json"} <= atomic


def test_a_damaged_cifar_archive_is_named_and_removed(tmp_path):
    archive = write_cifar10_archive(tmp_path)  # not the official bytes: fails the md5 check
    with pytest.raises(ConfigError, match="does not have the official md5 sum .* removed it"):
        cifar10(str(tmp_path), verify=True, download=False)
    assert not archive.exists()


def test_parallel_jobs_take_turns_to_unpack_cifar(tmp_path):
    write_cifar10_archive(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    with FileLock(tmp_path / ".cifar-10-batches-py.lock"):  # another job is fetching
        job = threading.Thread(target=cifar10, args=(str(tmp_path), False, False))
        job.start()
        time.sleep(1.0)
        assert not folder.exists()  # waits for it
    job.join(timeout=60)
    assert (folder / "data_batch_5").is_file()
    assert not list(tmp_path.glob(".unpack-*"))


@pytest.mark.parametrize("kind", ["cifar", "fashion"])
def test_a_wrong_data_root_is_named(tmp_path, kind):
    root = tmp_path / "not-a-folder"
    root.write_text("")
    if kind == "cifar":
        with pytest.raises(ConfigError, match=f"data.dataset.root={root} cannot be used"):
            cifar10(str(root), verify=False, download=False)
    else:
        with pytest.raises(ConfigError, match=f"Fashion-MNIST files missing in {root}"):
            fashion_mnist(str(root))


def test_a_damaged_fashion_mnist_file_is_named(tmp_path):
    from disk_formats import write_fashion_mnist

    write_fashion_mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-20])  # cut short, as by a failed copy
    with pytest.raises(ConfigError, match="train-images-idx3-ubyte.gz is (damaged|truncated)"):
        fashion_mnist(str(tmp_path))
