"""docs/development.md's worked examples, as written: a model, a data set, an augmentation and a
figure callback, each one module and one YAML added to a copy of the repository, train together
with no other file touched."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "development.md"


def examples() -> dict[str, str]:
    """Each code block of the guide that starts with a comment naming its file."""
    blocks = re.findall(r"```(?:python|yaml)\n# (\S+)\n(.*?)```", GUIDE.read_text(), re.S)
    return {path: text for path, text in blocks}


def copy_of_repository(tmp_path: Path) -> Path:
    """src/ and conf/ copied, so that the files a test adds touch nothing of the real tree."""
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("src", "conf"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=ignore)
    return copy


def train_in(copy: Path, *args: str) -> Path:
    """``python src/train.py ARGS`` in the copy, importing cnnlab from it: the run's directory."""
    done = subprocess.run(
        [sys.executable, "src/train.py", *args, "~callbacks.progress_bar"],
        cwd=copy,
        env={"PYTHONPATH": str(copy / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (copy / "logs" / "train" / "runs").iterdir()
    return run


def test_the_guides_new_components_train_with_no_other_file_touched(tmp_path):
    copy = copy_of_repository(tmp_path)
    added = examples()
    assert {Path(p).parts[0] for p in added} == {"src", "conf"} and len(added) == 8
    for path, text in added.items():
        assert not (copy / path).exists(), f"{path} is not new"
        (copy / path).write_text(text)
    (command,) = re.findall(
        r"```bash\n(python src/train.py model=two_layer .*)\n```", GUIDE.read_text()
    )
    run = train_in(copy, *shlex.split(command)[2:])
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "finished" and record["choices"]["model"] == "two_layer"
    assert record["settings"]["augment.transforms.invert._target_"] == "cnnlab.data.invert.Invert"
    assert (run / "figures" / "first_batch.png").is_file()
    assert record["test_acc"] > 0.9, "stripes are learned in two epochs"


def test_a_copied_model_and_data_set_train_under_their_new_names(tmp_path):
    """A copy of models/base_cnn.py as another class and name, and of data/fake.py as another
    name, each with a copy of its YAML, train as model=NEW data=NEW: nothing else to edit."""
    copy = copy_of_repository(tmp_path)
    model = (copy / "src/cnnlab/models/base_cnn.py").read_text()
    model = model.replace("BaseCNN", "WiderCNN").replace('"base_cnn")', '"wider_cnn")')
    (copy / "src/cnnlab/models/wider_cnn.py").write_text(model)
    yaml = (
        (copy / "conf/model/base_cnn.yaml").read_text().replace("name: base_cnn", "name: wider_cnn")
    )
    (copy / "conf/model/wider_cnn.yaml").write_text(yaml.replace("hidden: 512", "hidden: 1024"))
    data = (copy / "src/cnnlab/data/fake.py").read_text().replace('"fake")', '"noise")')
    (copy / "src/cnnlab/data/noise.py").write_text(data)
    yaml = (copy / "conf/data/fake.yaml").read_text().replace("name: fake", "name: noise")
    (copy / "conf/data/noise.yaml").write_text(yaml)
    args = ["model=wider_cnn", "data=noise", "data.dataset.train_size=64", "trainer.max_epochs=1"]
    run = train_in(copy, *args)
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "finished"
    assert (
        record["settings"]["model.name"] == "wider_cnn"
        and record["settings"]["model.hidden"] == 1024
    )
    assert record["settings"]["data.dataset.name"] == "noise"
    assert "(Linear)" in (run / "model_summary.txt").read_text()
