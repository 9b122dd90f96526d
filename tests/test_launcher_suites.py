"""Hydra's own contract tests for launchers, run against ``hydra/launcher=gpus``: what any
launcher must do (job numbers, directories, overrides, ``hydra.job.name``, resolvers, the
working directory), tested by Hydra's suites as shipped. The devices are stand-in ids."""

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from hydra.version import VersionBase, __compat_version__


@pytest.fixture(autouse=True)
def two_stand_in_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "a,b")


@pytest.fixture(autouse=True)
def hydras_default_version_base():
    """The suites expect a fresh process's version base (1.1: jobs change directory); an
    earlier test in this worker may have set 1.3."""
    versions = VersionBase.instance()
    before = versions.getbase()
    versions.setbase(__compat_version__)
    yield
    versions.version_base = before


@pytest.mark.parametrize(("launcher_name", "overrides"), [("gpus", [])])
class TestGpusLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    ("task_launcher_cfg", "extra_flags"), [({}, ["-m", "hydra/launcher=gpus"])]
)
class TestGpusLauncherIntegration(IntegrationTestSuite):
    pass
