"""Find the learning rate and the batch size to give a training config before a sweep:
`python src/tune.py find=lr model=nin` (the range test) or `find=batch_size` (the largest batch
that fits); any `src/train.py` override works here. conf/tune.yaml says more."""

import sys

import hydra
from omegaconf import DictConfig

from cnnlab import CONF
from cnnlab.cli import one_line, prepare


@hydra.main(config_path=str(CONF), config_name="tune", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from cnnlab.tuning.tune import tune  # torch, Lightning: not needed by --help

    with one_line(cfg.paths.output_dir):
        found = tune(cfg)
    out = cfg.paths.output_dir
    if found["find"] == "lr":
        print(f"suggested learning rate: {found['override']}")
        print(f"cyclic / one-cycle range: {found['base_lr']} .. {found['max_lr']}")
        print(f"  {found['one_cycle']}")
        print(f"plot: {out}/lr_find.png")
    else:
        memory = found["peak_memory_per_image_mib"]
        print(f"largest batch: {found['batch_size']} on {found['device']} ({found['limited_by']})")
        said = f"{memory} MiB" if memory is not None else "not measured (no GPU)"
        print(f"peak memory per image: {said}")
        print(f"with the linear scaling rule: {found['override']}")
    print(f"written to {out}/tune.json")


if __name__ == "__main__":
    prepare(sys.argv[1:], own=("find", "lr_find", "batch_find"))
    main()
