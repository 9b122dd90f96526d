"""Train one configuration, or a grid with -m: `python src/train.py --help` lists the options."""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from cnnlab import CONF
from cnnlab.errors import ConfigError, Diverged, SaveFailed
from cnnlab.files import check_dir_overrides, remove_refused
from cnnlab.validate import check_choices


@hydra.main(config_path=str(CONF), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from cnnlab.run import run  # torch, Lightning: not needed by --help or a mistyped option

    try:
        return run(cfg)
    except (ConfigError, Diverged, SaveFailed) as err:  # a user mistake, or a fault: one line
        what = {ConfigError: "error", Diverged: "training diverged"}.get(type(err), "run failed")
        print(f"cnnlab: {what}: {err}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:  # Hydra records the job as failed, runs
            raise type(err)(str(err)) from None  # the others, and reports it at the end
        if isinstance(err, ConfigError):  # nothing ran: leave no run directory behind
            remove_refused(Path(cfg.paths.output_dir))
        sys.exit(2 if isinstance(err, ConfigError) else 1)


if __name__ == "__main__":
    check_dir_overrides(sys.argv[1:])
    asks_help = any(a in ("-h", "--help") for a in sys.argv[1:])
    if asks_help and any(not a.startswith("-") and "=" not in a for a in sys.argv[1:]):
        from cnnlab.grouphelp import answer

        answer(sys.argv[1:], CONF)
    try:
        # (other config folders: --config-dir or hydra.searchpath; Hydra checks those itself)
        if not any(a.startswith(("-cd", "--config-dir", "hydra.searchpath")) for a in sys.argv):
            check_choices([a for a in sys.argv[1:] if not a.startswith("-")], CONF)
    except ConfigError as err:
        print(f"cnnlab: error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
