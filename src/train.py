"""Train one configuration, or a grid with -m: `python src/train.py --help` lists the options."""

import sys

import hydra
from omegaconf import DictConfig

from cnnlab import CONF
from cnnlab.cli import one_line, prepare


@hydra.main(config_path=str(CONF), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from cnnlab.run.train import run  # torch, Lightning: not needed by --help or a mistyped option

    with one_line(cfg.paths.output_dir):
        return run(cfg)


if __name__ == "__main__":
    prepare(sys.argv[1:])
    main()
