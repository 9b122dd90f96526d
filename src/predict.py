"""Classify image files with a trained checkpoint:
`python src/predict.py ckpt=…/best.ckpt inputs=photo.jpg` (or a folder)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from cnnlab import CONF
from cnnlab.cli import one_line, prepare
from cnnlab.errors import ConfigError
from cnnlab.files import write_json, write_text


@hydra.main(config_path=str(CONF), config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from cnnlab.callbacks.publish import csv_text  # torch: not needed by --help
    from cnnlab.inference.predict import predict

    with one_line(cfg.output_dir):
        if not cfg.ckpt or not cfg.inputs:
            raise ConfigError("give the checkpoint and the images: ckpt=PATH inputs=FILE_OR_FOLDER")
        results, skipped = predict(cfg.ckpt, cfg.inputs, cfg.top_k, cfg.batch_size, cfg.device)
        for item in skipped:
            print(f"cnnlab: skipped {item['file']}: {item['error']}", file=sys.stderr)
        if not results:
            raise ConfigError(f"inputs={cfg.inputs}: no readable image")
    ranked = []  # predictions.csv: one row per image and rank
    for item in results:
        best = ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in item["top"])
        print(f"{item['file']}: {best}")
        ranked += [{"file": item["file"], "rank": n, **t} for n, t in enumerate(item["top"], 1)]
    out = Path(cfg.output_dir)
    write_json(out / "predictions.json", {"predictions": results, "skipped": skipped})
    write_text(out / "predictions.csv", csv_text(ranked, list(ranked[0])))
    print(f"{len(results)} images classified, {len(skipped)} skipped; written to {out}")


if __name__ == "__main__":
    prepare(sys.argv[1:], own=None)
    main()
