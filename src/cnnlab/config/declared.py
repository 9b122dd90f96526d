"""The options cnnlab's configs give other libraries' classes, with ranges: torch, Lightning and
kornia annotate types only (``lr: float``), and some check no value until the first step (a
negative ``gamma`` trains on). ``**others``, and a ``_target_`` neither here nor cnnlab's, are
checked when the class is built."""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Len, Lt

from cnnlab.options import Count, Fraction, Natural, NonNegative, Positive, Probability

DECLARED: dict[str, Callable] = {}

Pair = Annotated[list[float], Len(2, 2)]
Batches = Natural | Probability | None  # a number of batches, or a share of them as a float
Betas = Annotated[list[Fraction], Len(2, 2)]
# Lightning's precision names, and the short forms it still takes.
Precision = Literal[
    "64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true",
    "64", "32", "16", "bf16", 64, 32, 16,
]  # fmt: skip


def declares(*targets: str):
    def file(stub: Callable) -> Callable:
        DECLARED.update(dict.fromkeys(targets, stub))
        return stub

    return file


@declares("torch.optim.SGD")
def sgd(
    lr: Positive = 1e-3,
    momentum: Fraction = 0.0,
    dampening: Fraction = 0.0,
    weight_decay: NonNegative = 0.0,
    nesterov: bool = False,
    **others: Any,
): ...


@declares("torch.optim.Adam", "torch.optim.AdamW")
def adam(
    lr: Positive = 1e-3,
    betas: Betas = (0.9, 0.999),
    eps: Positive = 1e-8,
    weight_decay: NonNegative = 0.0,
    amsgrad: bool = False,
    **others: Any,
): ...


@declares("torch.optim.RMSprop")
def rmsprop(
    lr: Positive = 1e-2,
    alpha: Fraction = 0.99,
    eps: Positive = 1e-8,
    weight_decay: NonNegative = 0.0,
    momentum: Fraction = 0.0,
    centered: bool = False,
    **others: Any,
): ...


@declares("torch.optim.Adagrad")
def adagrad(
    lr: Positive = 1e-2,
    lr_decay: NonNegative = 0.0,
    weight_decay: NonNegative = 0.0,
    initial_accumulator_value: NonNegative = 0.0,
    eps: Positive = 1e-10,
    **others: Any,
): ...


@declares("torch.optim.Adadelta")
def adadelta(
    lr: Positive = 1.0,
    rho: Fraction = 0.9,
    eps: Positive = 1e-6,
    weight_decay: NonNegative = 0.0,
    **others: Any,
): ...


@declares("lightning.pytorch.Trainer")
def trainer(
    max_epochs: Count | Literal[-1] = 30,
    max_steps: Count | Literal[-1] = -1,
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto",
    devices: Count | list[Natural] | Literal["auto", -1] = 1,
    num_nodes: Count = 1,
    strategy: str = "auto",
    precision: Precision = "32-true",
    deterministic: bool | Literal["warn"] = False,
    benchmark: bool | None = None,
    log_every_n_steps: Count = 50,
    gradient_clip_val: NonNegative | None = None,
    gradient_clip_algorithm: Literal["norm", "value"] | None = None,
    accumulate_grad_batches: Count = 1,
    fast_dev_run: bool | Count = False,
    limit_train_batches: Batches = None,
    limit_val_batches: Batches = None,
    limit_test_batches: Batches = None,
    overfit_batches: Natural | Probability = 0,
    val_check_interval: Count | Annotated[float, Gt(0), Le(1)] | None = None,
    check_val_every_n_epoch: Count | None = 1,
    num_sanity_val_steps: Annotated[int, Ge(-1)] = 2,
    min_epochs: Natural | None = None,
    min_steps: Natural | None = None,
    max_time: str | None = None,
    default_root_dir: str | None = None,
    enable_progress_bar: bool | None = None,
    enable_checkpointing: bool | None = None,
    enable_model_summary: bool | None = None,
    detect_anomaly: bool = False,
    sync_batchnorm: bool = False,
    use_distributed_sampler: bool = True,
    inference_mode: bool = True,
    reload_dataloaders_every_n_epochs: Natural = 0,
    **others: Any,
): ...


@declares("lightning.pytorch.callbacks.LearningRateMonitor")
def lr_monitor(
    logging_interval: Literal["step", "epoch"] | None = None,
    log_momentum: bool = False,
    log_weight_decay: bool = False,
): ...


@declares("cnnlab.run.checkpoints.Checkpoint", "lightning.pytorch.callbacks.ModelCheckpoint")
def model_checkpoint(
    dirpath: str | None = None,
    filename: str | None = None,
    monitor: str | None = None,
    mode: Literal["min", "max"] = "min",
    save_top_k: Annotated[int, Ge(-1)] = 1,
    save_last: bool | Literal["link"] | None = None,
    every_n_epochs: Natural | None = None,
    every_n_train_steps: Natural | None = None,
    save_on_train_epoch_end: bool | None = None,
    auto_insert_metric_name: bool = True,
    save_weights_only: bool = False,
    enable_version_counter: bool = True,
    **others: Any,
): ...


@declares("cnnlab.run.csv_log.CSVLogger", "lightning.pytorch.loggers.CSVLogger")
def csv_logger(
    save_dir: str = ".",
    name: str | None = "lightning_logs",
    version: int | str | None = None,
    prefix: str = "",
    flush_logs_every_n_steps: Count = 100,
): ...


@declares("lightning.pytorch.callbacks.EarlyStopping")
def early_stopping(
    monitor: str = "val/acc",
    min_delta: NonNegative = 0.0,
    patience: Natural = 3,
    mode: Literal["min", "max"] = "min",
    **others: Any,
): ...


@declares("lightning.pytorch.callbacks.EMAWeightAveraging")
def ema(
    decay: Annotated[float, Gt(0), Lt(1)] = 0.999,
    update_every_n_steps: Count = 1,
    update_starting_at_step: Natural | None = None,
    update_starting_at_epoch: Natural | None = None,
    use_buffers: bool = True,
    **others: Any,
): ...


@declares("lightning.pytorch.callbacks.RichProgressBar")
def rich_progress_bar(refresh_rate: Natural = 100, leave: bool = False, **others: Any): ...


@declares("kornia.augmentation.RandomHorizontalFlip", "kornia.augmentation.RandomVerticalFlip")
def flip(p: Probability = 0.5, **others: Any): ...


@declares("kornia.augmentation.ColorJitter")
def color_jitter(
    brightness: NonNegative | Pair = 0.0,
    contrast: NonNegative | Pair = 0.0,
    saturation: NonNegative | Pair = 0.0,
    hue: Annotated[float, Ge(0), Le(0.5)] | Pair = 0.0,
    p: Probability = 1.0,
    **others: Any,
): ...


@declares("kornia.augmentation.RandomErasing")
def random_erasing(
    scale: Annotated[list[Annotated[float, Gt(0), Le(1)]], Len(2, 2)] = (0.02, 0.33),
    ratio: Annotated[list[Positive], Len(2, 2)] = (0.3, 3.3),
    value: float = 0.0,
    p: Probability = 0.5,
    **others: Any,
): ...


@declares("kornia.augmentation.RandomGaussianBlur")
def gaussian_blur(
    kernel_size: Count | Annotated[list[Count], Len(2, 2)] = 3,
    sigma: Annotated[list[Positive], Len(2, 2)] = (0.1, 2.0),
    p: Probability = 0.5,
    **others: Any,
): ...


@declares("kornia.augmentation.RandomAffine")
def random_affine(
    degrees: Annotated[float, Ge(0), Le(180)] | Pair = 0.0,
    translate: Annotated[list[Probability], Len(2, 2)] | None = None,
    scale: Annotated[list[Positive], Len(2, 2)] | None = None,
    shear: NonNegative | Pair | None = None,
    p: Probability = 0.5,
    **others: Any,
): ...


def declaration(target: str) -> Callable | None:
    """What declares ``target``'s options: a stub above, or cnnlab's own class itself."""
    if target in DECLARED:
        return DECLARED[target]
    if target.startswith("cnnlab."):
        from hydra.utils import get_object

        try:
            return get_object(target)
        except Exception:  # a typo in _target_: building it says so
            return None
    return None
