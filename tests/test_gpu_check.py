"""The GPU check runs every part end to end at toy sizes on the CPU, so that it cannot rot before
a GPU runs it: the tests it ran, the runs it timed, the grids it launched, the table it wrote."""

import json

import pytest

from cnnlab import gpucheck
from cnnlab.gpucheck_report import projection


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    from disk_formats import write_fashion_mnist

    root = tmp_path_factory.mktemp("gpu-check")
    fashion = write_fashion_mnist(root / "fashion")
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
    assert "seed 002's grid, projected" in report


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
    for k in gpucheck.TOY.packing:
        records = [json.loads(p.read_text()) for p in out.glob(f"packing/*_{k}/*/metrics.json")]
        assert len(records) == gpucheck.TOY.grid_jobs
        assert {r["cuda_visible_devices"] for r in records} == {"0"}  # the launcher's device
        assert {r["choices"]["model"] for r in records} == {"nin"}
    assert part["levels"]["1"]["throughput_vs_one_job"] == 1.0


def test_seed002s_grid_is_projected_from_the_faster_epoch_and_the_best_packing(checked):
    parts = json.loads((checked[1] / "results.json").read_text())["parts"]
    epochs = parts["seed002"]["epoch_s"]
    assert set(epochs) == {"eager", "compile"} and min(epochs.values()) > 0
    found = projection(parts)
    gain = max(row["throughput_vs_one_job"] for row in parts["packing"]["levels"].values())
    assert found["hours"] == pytest.approx(10 * 164 * min(epochs.values()) / gain / 3600, abs=0.005)


def test_the_fashion_run_is_a_network_under_5m_parameters_that_learns(checked):
    part = json.loads((checked[1] / "results.json").read_text())["parts"]["fashion"]
    assert part["params"] < 5_000_000 and part["epochs"] == 1
    assert part["test_acc"] > 0.2  # ten classes; the generated images are separable


def test_without_a_gpu_the_full_check_is_refused_in_one_line(capsys, tmp_path):
    if gpucheck.torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as caught:
        gpucheck.main(["--out", str(tmp_path)])
    assert caught.value.code == 2
    assert "no CUDA device here; --toy runs" in capsys.readouterr().err
