"""Export a checkpoint to TorchScript or ONNX:
`python src/export.py ckpt=…/best.ckpt format=onnx` (checked against the checkpoint first)."""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cnnlab import CONF
from cnnlab.cli import one_line, prepare
from cnnlab.errors import ConfigError


@hydra.main(config_path=str(CONF), config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from cnnlab.inference.export import TOLERANCE, export  # torch: not needed by --help

    with one_line(HydraConfig.get().runtime.output_dir):  # (its log, nothing else)
        if not cfg.ckpt:
            raise ConfigError("give the checkpoint: ckpt=PATH (and format=torchscript|onnx)")
        path, difference = export(cfg.ckpt, cfg.format, cfg.output)
    print(f"{path}: outputs equal the checkpoint's within {TOLERANCE} (largest {difference:.1e})")


if __name__ == "__main__":
    prepare(sys.argv[1:], own=None)
    main()
