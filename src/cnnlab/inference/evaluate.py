"""src/eval.py: test one checkpoint or an ensemble of them, with or without TTA, on the data set
the checkpoint was trained on (or another ``data=``), writing the figures a run writes."""

from pathlib import Path
from typing import Any, Literal

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnlab.callbacks.filters import FirstLayerFilters
from cnnlab.callbacks.gradcam import GradCamGrid
from cnnlab.callbacks.publish import csv_text
from cnnlab.config.declared import declaration
from cnnlab.config.job import compose
from cnnlab.data.datamodule import ImageDataModule
from cnnlab.errors import ConfigError
from cnnlab.files import write_json, write_text
from cnnlab.inference.ensemble import Ensemble, snapshot_members, sweep_members
from cnnlab.inference.predict import check_device, load_classifier
from cnnlab.options import Count, Natural, check_options, parameters
from cnnlab.registry import build

SHAPE_KEYS = ("in_channels", "image_size", "num_classes")


def eval_options(
    ckpt: str | None = None,
    ckpts: list[str] | None = None,
    sweep: str | None = None,
    top_k: Count = 3,
    snapshots: str | None = None,
    batch_size: Count = 512,
    device: Literal["auto", "cpu", "gpu", "cuda"] = "auto",
) -> None:
    """The options at the top of ``eval.yaml`` (``data`` is checked when the test set is built)."""


def tta_options(
    enabled: bool = False, flip: bool | Literal["auto"] = "auto", shift: Natural = 2
) -> None:
    """``tta``: each model's softmax averaged over views, mirrored (``auto``: if the training data
    was) and moved by ``shift`` pixels (less than half the image, checked with the data)."""


def check_eval(cfg: DictConfig) -> None:
    """The whole of eval.yaml against its declarations, before a checkpoint is read."""
    check_options(eval_options, {k: cfg.get(k) for k in parameters(eval_options)}, "")
    check_options(tta_options, cfg.tta, "tta")
    for name, node in (cfg.callbacks or {}).items():
        declared = declaration(str(node.get("_target_"))) if node else None
        if declared is not None:
            check_options(declared, node, f"callbacks.{name}")
    check_device(cfg.device)


def members(cfg: DictConfig) -> list[tuple[str, Path]]:
    """(name, checkpoint) of each model to evaluate, from the one source ``cfg`` names."""
    given = [key for key in ("ckpt", "ckpts", "sweep", "snapshots") if cfg.get(key)]
    if len(given) != 1:
        raise ConfigError(
            "name the checkpoints one way: ckpt=PATH, ckpts=[PATH,PATH,...], "
            f"sweep=DIR top_k=K or snapshots=RUN_DIR (given: {', '.join(given) or 'none'})"
        )
    if cfg.get("sweep"):
        return sweep_members(Path(cfg.sweep), cfg.top_k)
    if cfg.get("snapshots"):
        return snapshot_members(Path(cfg.snapshots))
    return [(str(path), Path(path)) for path in cfg.get("ckpts") or [cfg.ckpt]]


def data_arguments(cfg: DictConfig, model, data_choice: str | None = None) -> dict[str, Any]:
    """The ImageDataModule's arguments: the checkpoint's own, or those of ``data=data_choice``
    composed as src/train.py would, with ``cfg.data`` (``data.KEY=VALUE``) on top."""
    if data_choice:
        train = compose([f"data={data_choice}", f"paths.root_dir={cfg.paths.root_dir}"])
        with open_dict(train):
            train.data = OmegaConf.merge(train.data, cfg.data)
        data = OmegaConf.to_container(train.data, resolve=True)
        data["augment"] = OmegaConf.to_container(train.augment, resolve=True)
        data["preprocess"] = OmegaConf.to_container(train.preprocess, resolve=True)
    elif model.data:
        data = dict(model.data)
    else:
        raise ConfigError(
            "the checkpoint does not record its data set (it was saved before cnnlab kept it): "
            "give it, e.g. data=cifar10"
        )
    for key in SHAPE_KEYS:
        if data.get(key) != model.hparams.data[key]:
            raise ConfigError(
                f"data={data['dataset']['name']} has {key}={data.get(key)}, the model "
                f"{model.hparams.data[key]}: test it on data of the kind it was trained on"
            )
    data["eval_batch_size"] = cfg.batch_size
    return data


def evaluate(cfg: DictConfig, data_choice: str | None = None) -> dict[str, Any]:
    """Test what ``cfg`` names (on ``data=data_choice`` if given), write metrics.json, members.md
    and .csv (ensembles, TTA) and the figures into ``cfg.output_dir``; return metrics.json's."""
    check_eval(cfg)
    chosen = members(cfg)
    models = [load_classifier(path) for _, path in chosen]
    data = data_arguments(cfg, models[0], data_choice)
    tta = _tta(cfg.tta, data) if cfg.tta.enabled else None
    single = len(models) == 1 and tta is None
    module = models[0] if single else Ensemble(models, tta)
    callbacks = [build(c, where=f"callbacks.{k}") for k, c in cfg.callbacks.items() if c]
    if not single:  # drawn from one network's layers: not an ensemble's
        callbacks = [c for c in callbacks if not isinstance(c, FirstLayerFilters | GradCamGrid)]
    out = Path(cfg.output_dir)
    trainer = L.Trainer(
        accelerator="gpu" if cfg.device == "cuda" else cfg.device,
        devices=1,
        logger=False,
        default_root_dir=out,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    tested = trainer.test(module, datamodule=ImageDataModule(**data), verbose=False)[0]
    if single:
        rows = [{"acc": tested["test/acc"], "loss": tested["test/loss"]}]
    else:
        rows = module.member_results()
    names = [name for name, _ in chosen] + ([] if single else ["ensemble (mean softmax)"])
    table = [{"member": name, **row} for name, row in zip(names, rows, strict=True)]
    last = table[-1]  # the model tested: the ensemble (with TTA if on), or the one checkpoint
    result = {
        "test_acc": last.get("acc_tta", last["acc"]),
        "test_loss": last.get("loss_tta", last["loss"]),
        "data": data["dataset"]["name"],
        "tta": tta,
        "members": table,
    }
    write_json(out / "metrics.json", result)
    if not single:
        write_text(out / "members.md", members_markdown(table))
        write_text(out / "members.csv", csv_text(table, list(table[0])))
    return result


def _tta(options: DictConfig, data: dict[str, Any]) -> dict[str, Any]:
    """``{flip, shift}`` for tta_views; ``flip: auto`` flips if the training data did."""
    flip, shift = options.flip, options.shift
    if shift >= data["image_size"] // 2:
        raise ConfigError(
            f"tta.shift={shift}: a whole number of pixels from 0 to {data['image_size'] // 2 - 1}"
        )
    return {"flip": data.get("hflip", 0) > 0 if flip == "auto" else flip, "shift": shift}


def members_markdown(table: list[dict]) -> str:
    keys = [k for k in table[0] if k != "member"]
    lines = ["| member | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for row in table:
        cells = [f"{100 * row[k]:.2f}%" if k.startswith("acc") else f"{row[k]:.4f}" for k in keys]
        lines.append(f"| {row['member']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
