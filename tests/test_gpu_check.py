"""The GPU check runs every part end to end at toy sizes on the CPU, so that it cannot rot before
a GPU runs it: the tests it ran, the runs it timed, the grids it launched, the table it wrote."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu as gpucheck
from benchmarks.gpu.report import busy_seconds, projection


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    from disk_formats import write_fashion_mnist

    root = tmp_path_factory.mktemp("gpu-check")
    fashion = write_fashion_mnist(root / "fashion")
    with pytest.MonkeyPatch.context() as env:  # --toy hides any GPU: not from the later tests
        env.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        status = gpucheck.main(["--toy", "--out", str(root / "out"), "--fashion", str(fashion)])
    return status, root / "out"


def test_every_part_ran_and_its_results_were_written(checked):
    status, out = checked
    results = json.loads((out / "results.json").read_text())
    errors = {name: part["error"] for name, part in results["parts"].items() if "error" in part}
    assert status == 0 and not errors
    assert list(results["parts"]) == list(gpucheck.PARTS)
    report = (out / "results.md").read_text()
    for name in gpucheck.PARTS:
        assert f"## {name} (" in report
    assert "the NIN lab report's grid, projected" in report


def test_the_gpu_tests_ran_and_without_a_gpu_were_skipped(checked):
    part = json.loads((checked[1] / "results.json").read_text())["parts"]["gpu_tests"]
    assert part["tests"] >= 1 and part["skipped"] == part["tests"] and part["failed"] == []


def test_the_framework_and_data_path_were_timed_for_each_model_and_preset(checked):
    parts = json.loads((checked[1] / "results.json").read_text())["parts"]
    assert set(parts["framework"]["models"]) == {"nin", "base_cnn", "resnet24"}
    for row in parts["framework"]["models"].values():
        assert row["ratio"] > 0 and all(v > 0 for v in row["cnnlab_img_s"] + row["raw_img_s"])
    assert parts["data_path"]["presets"]["standard"]["speedup"] > 0


def test_the_packing_grid_ran_each_job_through_the_gpus_launcher(checked):
    out = checked[1]
    part = json.loads((out / "results.json").read_text())["parts"]["packing"]
    assert [int(k) for k in part["levels"]] == list(gpucheck.TOY.packing)
    for k, row in part["levels"].items():
        records = [json.loads(p.read_text()) for p in out.glob(f"packing/*_{k}/*/metrics.json")]
        assert len(records) == gpucheck.TOY.grid_jobs
        assert {r["cuda_visible_devices"] for r in records} == {"stand-in"}  # visible GPU 0
        assert {r["choices"]["model"] for r in records} == {"nin"}
        assert 0 < row["busy_s"] <= row["wall_s"]  # some job was running, within the sweep


def test_nins_epoch_was_timed_eager_and_compiled_and_the_nin_lab_reports_grid_projected(checked):
    results = json.loads((checked[1] / "results.json").read_text())
    epochs = results["parts"]["nin_epoch"]["epoch_s"]
    assert set(epochs) == {"eager", "compile"} and min(epochs.values()) > 0
    assert results["projection"] == projection(results["parts"])  # in the JSON as well
    assert results["projection"]["epoch_s"] == min(epochs.values())


def test_busy_time_counts_overlapping_runs_once_and_gaps_not_at_all():
    assert busy_seconds([(0, 10), (20, 30)]) == 20  # one at a time, a start-up gap between
    assert busy_seconds([(0, 10), (2, 12), (3, 5)]) == 12  # overlapping
    assert busy_seconds([(5, 6), (0, 10)]) == 10  # inside another
    assert busy_seconds([]) == 0


def test_the_projection_runs_the_nin_lab_reports_ten_runs_in_waves_at_the_fastest_packing():
    levels = {
        "1": {"throughput_vs_one_job": 1.0},
        "2": {"throughput_vs_one_job": 1.6},
        "4": {"throughput_vs_one_job": 2.0},
    }
    epochs = {"epoch_s": {"eager": 10.0, "compile": 8.0}}
    parts = {"nin_epoch": epochs, "packing": {"levels": levels}}
    found = projection(parts)
    # jobs_per_gpu=4: waves of 4, 4 and 2 runs, each 164 epochs of 8 s at that wave's gain
    hours = 164 * 8 * (4 / 2.0 + 4 / 2.0 + 2 / 1.6) / 3600
    assert found["jobs_per_gpu"] == 4 and found["epoch"] == "compile"
    assert found["hours"] == pytest.approx(hours, abs=1e-3)
    # without packing: ten runs one after another
    alone = projection({"nin_epoch": parts["nin_epoch"]})
    assert alone["hours"] == pytest.approx(10 * 164 * 8 / 3600, abs=1e-3)
    assert not alone["packing_measured"]


def test_the_fashion_run_is_a_network_under_5m_parameters_that_learns(checked):
    part = json.loads((checked[1] / "results.json").read_text())["parts"]["fashion"]
    assert part["params"] < 5_000_000 and part["epochs"] == 1
    assert part["test_acc"] > 0.2  # ten classes; the generated images are separable


def test_without_a_gpu_the_full_check_is_refused_in_one_line(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as caught:
        gpucheck.main(["--out", str(tmp_path)])
    assert caught.value.code == 2
    assert "no CUDA device here; --toy runs" in capsys.readouterr().err


def test_a_part_run_again_into_the_same_folder_measures_afresh_and_keeps_the_others(checked):
    out = checked[1]
    before = json.loads((out / "results.json").read_text())["parts"]
    first = json.loads((out / "fashion" / "metrics.json").read_text())["started_at"]
    fashion = next(p.parent for p in out.parent.rglob("train-images-idx3-ubyte.gz"))
    with pytest.MonkeyPatch.context() as env:
        env.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        args = ["--toy", "--out", str(out), "--fashion", str(fashion), "--only", "fashion"]
        assert gpucheck.main(args) == 0
    after = json.loads((out / "results.json").read_text())["parts"]
    assert after["packing"] == before["packing"] and list(after) == list(before)
    assert json.loads((out / "fashion" / "metrics.json").read_text())["started_at"] != first


def test_wheels_from_a_folder_without_any_are_refused_in_one_line(tmp_path):
    script = Path(__file__).resolve().parents[1] / "src" / "gpu_check.py"
    args = [sys.executable, str(script), "--wheels", str(tmp_path), "--out", str(tmp_path / "o")]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == f"cnnlab: error: --wheels {tmp_path}: no .whl files there"
    assert not (tmp_path / "o").exists()
