"""Train one configuration, or a grid with -m: `python src/train.py --help` lists the options."""

import sys

import hydra
from omegaconf import DictConfig

from cnnlab.errors import ConfigError
from cnnlab.run import run


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        return run(cfg)
    except ConfigError as err:  # a user mistake: one line, no traceback
        print(f"cnnlab: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
