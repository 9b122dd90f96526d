"""Objects from ``_target_`` configs (optimizers, schedules, callbacks, loggers, the Trainer)."""

from typing import Any

from hydra.utils import instantiate


def build(config: Any, *args: Any, **kwargs: Any) -> Any:
    """``config``'s object, given plain Python values. Hydra's own default hands lists and dicts
    on as OmegaConf containers, which then reach checkpoints (Adam's ``betas`` in the optimizer's
    state) that ``torch.load(weights_only=True)`` refuses to read."""
    return instantiate(config, *args, _convert_="all", **kwargs)
