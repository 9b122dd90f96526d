"""``python src/train.py --help GROUP``: every declared option of a group, with what it accepts
and its value, read from the same declarations that check a config."""

import subprocess
import sys

import pytest
from omegaconf import OmegaConf
from test_train import train_cli

from cnnlab import CONF
from cnnlab.cli import group_help
from cnnlab.errors import ConfigError
from cnnlab.options import _settable, describe, parameters, shown
from cnnlab.run.checks import FromSource, declared_nodes

from conftest import compose_cfg

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")


def test_each_group_lists_every_declared_option_with_what_it_accepts(tmp_path):
    text = group_help(["top", *GROUPS], [])
    nodes = list(declared_nodes(OmegaConf.to_container(compose_cfg(tmp_path, []), resolve=True)))
    wheres = {node.where for node in nodes}  # nested nodes: listed as nodes of their own
    lines = [line.split() for line in text.splitlines()]
    for node in nodes:
        for name, param in parameters(node.declaration, node.supplied).items():
            key = f"{node.where}.{name}" if node.where else name
            if _settable(param.annotation) and key not in wheres:
                (row,) = [line for line in lines if line and line[0].lstrip("+") == key]
                assert " ".join(row[1:]).startswith(describe(param.annotation)), key
    for group in GROUPS:
        assert f"\n{group} (" in f"\n{text}"


def test_the_values_shown_are_those_of_the_composed_choice():
    text = group_help(["scheduler", "optimizer"], ["scheduler=step", "optimizer=adam"])
    assert text.startswith("scheduler (scheduler=step; choices: cosine,")
    assert "  scheduler (step):\n    scheduler.step_size  an integer >= 1  [20]" in text
    assert "scheduler.warmup_epochs  a number in [0, 100000]  [0]" in text
    assert "optimizer.betas         a list of 2 numbers in [0, 1)  [[0.9,0.999]]" in text
    assert "+optimizer.amsgrad      true or false  [default false]" in text  # settable with +


def test_an_unknown_group_is_refused_with_the_groups():
    with pytest.raises(ConfigError, match="--help modle: no such group; choose from: top, act"):
        group_help(["modle"], [])


def test_help_for_a_group_from_the_command_line(tmp_path):
    result = train_cli("--help", "model", "model=resnet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model (cnnlab.models.resnet" in result.stdout or "model (resnet):" in result.stdout
    assert "model.blocks" in result.stdout
    wrong = train_cli("--help", "model", "model=resnt", cwd=tmp_path)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    (line,) = wrong.stderr.strip().splitlines()
    assert line.startswith("cnnlab: error: model=resnt: no such option; did you mean resnet?")
    assert not (tmp_path / "logs").exists()


CHOICES = [f"{g}={p.stem}" for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize("choice", [c for c in CHOICES if not c.startswith(("hydra", "paths"))])
def test_help_reads_from_source_the_declarations_the_checks_import(choice, tmp_path):
    plain = OmegaConf.to_container(compose_cfg(tmp_path, [choice]), resolve=True)
    imported, read = list(declared_nodes(plain)), list(declared_nodes(plain, FromSource()))
    assert [n.where for n in imported] == [n.where for n in read]
    for live, source in zip(imported, read, strict=True):
        ours = parameters(live.declaration, live.supplied)
        theirs = parameters(source.declaration, source.supplied)
        assert list(ours) == list(theirs), live.where
        for name, param in ours.items():
            other, key = theirs[name], f"{live.where}.{name}"
            assert _settable(param.annotation) == _settable(other.annotation), key
            if _settable(param.annotation):  # (what no config sets, help does not show)
                assert describe(param.annotation) == describe(other.annotation), key
                assert shown(param.default) == shown(other.default), key


def test_help_for_a_group_imports_no_torch():
    code = "import sys; from cnnlab.cli import group_help; group_help(['model', 'top'], []); "
    code += "print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
