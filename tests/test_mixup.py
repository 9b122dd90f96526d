import pytest
import torch
import torch.nn.functional as F

from cnnlab.data.datamodule import ImageDataModule
from cnnlab.training.module import Classifier

from conftest import seed_all

NET = {
    "model": {"name": "base_cnn"},
    "activation": {"name": "relu"},
    "norm": {"name": "none"},
    "init": {"name": "default"},
}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}
SHAPE = {"in_channels": 3, "image_size": 32, "num_classes": 10}


class _Training:
    training = True


def mixup_module(alpha: float) -> ImageDataModule:
    dm = ImageDataModule(
        dataset={"name": "fake"},
        augment={"transforms": {}, "mixup_alpha": alpha},
        mean=[0.5] * 3,
        std=[0.25] * 3,
        num_classes=10,
    )
    dm.setup()
    dm.trainer = _Training()
    return dm


def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images as a loader gives them, and as the floats in [0, 1] the model takes (it
    normalises them itself; mixing before or after is the same, both being linear)."""
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    return x, x.float() / 255


def test_mixup_mixes_images_and_targets_with_one_lambda():
    seed_all(0)  # lambda is drawn from numpy's generator (timm's Mixup)
    (x, plain), y = images(8), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    mixed_x, soft = mixup_module(alpha=1.0).on_after_batch_transfer((x, y), 0)
    lam = soft[0, y[0]].item()  # the pair of image 0 is image 7: a different class
    assert 0 < lam < 1
    assert torch.allclose(soft, lam * F.one_hot(y, 10) + (1 - lam) * F.one_hot(y.flip(0), 10))
    assert torch.allclose(mixed_x, lam * plain + (1 - lam) * plain.flip(0), atol=1e-5)


def test_mixup_loss_is_the_lambda_weighted_cross_entropy():
    seed_all(1)
    (x, _), y = images(8), torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    mixed_x, soft = mixup_module(alpha=0.4).on_after_batch_transfer((x, y), 0)
    lam = soft[0, y[0]].item()
    module = Classifier(**NET, optimizer=SGD, data=SHAPE)
    logits = module(mixed_x)
    by_hand = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y.flip(0))
    assert module.loss(logits, soft).item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_no_mixup_at_alpha_zero_or_outside_training():
    (x, plain), y = images(4), torch.arange(4)
    out_x, out_y = mixup_module(alpha=0.0).on_after_batch_transfer((x, y), 0)
    assert out_y is y and torch.allclose(out_x, plain, atol=1e-6)
    dm = mixup_module(alpha=1.0)
    dm.trainer.training = False
    assert dm.on_after_batch_transfer((x, y), 0)[1] is y
