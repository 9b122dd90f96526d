"""Test a checkpoint, or an ensemble of them, with or without test-time augmentation:
`python src/eval.py ckpt=…/best.ckpt`, `ckpts=[A,B]`, `sweep=DIR top_k=3`, `snapshots=RUN_DIR`,
`tta.enabled=true`, `data=NAME` (conf/eval.yaml says more)."""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cnnlab import CONF
from cnnlab.errors import ConfigError
from cnnlab.files import check_dir_overrides, remove_refused


@hydra.main(config_path=str(CONF), config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from cnnlab.evaluate import evaluate, members_markdown  # torch: not needed by --help

    try:
        result = evaluate(cfg, HydraConfig.get().runtime.choices.get("data"))
    except ConfigError as err:
        print(f"cnnlab: error: {err}", file=sys.stderr)
        remove_refused(Path(cfg.output_dir))
        sys.exit(2)
    print(members_markdown(result["members"]), end="")
    print(f"test accuracy {100 * result['test_acc']:.2f}%; written to {cfg.output_dir}")


if __name__ == "__main__":
    check_dir_overrides(sys.argv[1:])
    main()
