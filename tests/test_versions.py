"""The versions cnnlab declares are the versions it is tested with: pyproject.toml's lower bounds
are .ci/floors.txt's pins, which CI installs to run the tests a second time."""

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import ROOT


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def floors() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / ".ci" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def lower_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    return max(bounds, default=None)


def test_every_dependency_has_a_lower_bound_and_ci_tests_exactly_that_version():
    pins = floors()
    assert set(pins) == set(declared())
    for name, requirement in declared().items():
        assert lower_bound(requirement) is not None, f"{name} declares no lower bound"
        assert pins[name] == lower_bound(requirement), name
        assert requirement.specifier.contains(pins[name]), name


def test_python_floor_is_the_one_ruff_targets():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["requires-python"] == ">=3.11"
    assert config["tool"]["ruff"]["target-version"] == "py311"


def test_the_image_is_built_on_a_torch_within_the_tested_range():
    base = re.search(r"^ARG BASE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    torch = Version(re.fullmatch(r"docker\.io/pytorch/pytorch:([\d.]+)-cuda[\w.-]+", base)[1])
    assert torch >= floors()["torch"]
