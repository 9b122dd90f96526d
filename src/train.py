"""Train one configuration, or a grid with -m: `python src/train.py --help` lists the options."""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from cnnlab.errors import ConfigError
from cnnlab.run import run


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        return run(cfg)
    except ConfigError as err:  # a user mistake: one line, no traceback
        print(f"cnnlab: error: {err}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:  # Hydra records the job as failed, runs
            raise ConfigError(str(err)) from None  # the others, and reports it at the end
        sys.exit(2)


if __name__ == "__main__":
    main()
