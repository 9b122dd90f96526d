"""Export a checkpoint to TorchScript or ONNX:
`python src/export.py ckpt=…/best.ckpt format=onnx` (checked against the checkpoint first)."""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cnnlab import CONF
from cnnlab.errors import ConfigError
from cnnlab.files import check_dir_overrides, remove_refused


@hydra.main(config_path=str(CONF), config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from cnnlab.export import TOLERANCE, export  # torch: not needed by --help

    try:
        if not cfg.ckpt:
            raise ConfigError("give the checkpoint: ckpt=PATH (and format=torchscript|onnx)")
        path, difference = export(cfg.ckpt, cfg.format, cfg.output)
    except ConfigError as err:
        print(f"cnnlab: error: {err}", file=sys.stderr)
        remove_refused(Path(HydraConfig.get().runtime.output_dir))  # its log, nothing else
        sys.exit(2)
    print(f"{path}: outputs equal the checkpoint's within {TOLERANCE} (largest {difference:.1e})")


if __name__ == "__main__":
    check_dir_overrides(sys.argv[1:])
    main()
