"""Classify image files with a trained checkpoint:
`python src/predict.py ckpt=…/best.ckpt inputs=photo.jpg` (or a folder)."""

import csv
import io
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
    from cnnlab.inference.predict import predict  # torch: not needed by --help

    with one_line(cfg.output_dir):
        if not cfg.ckpt or not cfg.inputs:
            raise ConfigError("give the checkpoint and the images: ckpt=PATH inputs=FILE_OR_FOLDER")
        results, skipped = predict(cfg.ckpt, cfg.inputs, cfg.top_k, cfg.batch_size, cfg.device)
        for item in skipped:
            print(f"cnnlab: skipped {item['file']}: {item['error']}", file=sys.stderr)
        if not results:
            raise ConfigError(f"inputs={cfg.inputs}: no readable image")
    for item in results:
        best = ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in item["top"])
        print(f"{item['file']}: {best}")
    out = Path(cfg.output_dir)
    write_json(out / "predictions.json", {"predictions": results, "skipped": skipped})
    write_text(out / "predictions.csv", _csv(results))
    print(f"{len(results)} images classified, {len(skipped)} skipped; written to {out}")


def _csv(results: list[dict]) -> str:
    """One row per image and rank: file, rank, label, index, probability."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["file", "rank", "label", "index", "probability"])
    for item in results:
        for rank, top in enumerate(item["top"], 1):
            writer.writerow([item["file"], rank, top["label"], top["index"], top["probability"]])
    return text.getvalue()


if __name__ == "__main__":
    prepare(sys.argv[1:], own=None)
    main()
