"""Test a checkpoint, or an ensemble of them, with or without test-time augmentation:
`python src/eval.py ckpt=…/best.ckpt`, `ckpts=[A,B]`, `sweep=DIR top_k=3`, `snapshots=RUN_DIR`,
`tta.enabled=true`, `data=NAME` (conf/eval.yaml says more)."""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cnnlab import CONF
from cnnlab.cli import one_line, prepare


@hydra.main(config_path=str(CONF), config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from cnnlab.inference.evaluate import evaluate, members_markdown  # torch: not for --help

    with one_line(cfg.output_dir):
        result = evaluate(cfg, HydraConfig.get().runtime.choices.get("data"))
    print(members_markdown(result["members"]), end="")
    print(f"test accuracy {100 * result['test_acc']:.2f}%; written to {cfg.output_dir}")


if __name__ == "__main__":
    prepare(sys.argv[1:], own=None)
    main()
