"""Augmentations draw per image, mixing and preprocessing do what the seeds say."""

import pytest
import torch

from cnnlab.data.preprocess import Whitening
from cnnlab.data.transforms import AdditiveNoise, CropSides, Multiply
from cnnlab.run import build_datamodule

from conftest import CONF

AUGMENTS = sorted(p.stem for p in (CONF / "augment").glob("*.yaml"))


class _Training:
    training = True


def datamodule(make_cfg, *overrides):
    cfg = make_cfg(
        [
            "data=fake",
            "data.dataset.train_size=40",
            "data.val_split=0",
            "data.batch_size=8",
            "data.num_workers=0",
            *overrides,
        ]
    )
    dm = build_datamodule(cfg)
    dm.setup()
    return dm


@pytest.mark.parametrize("augment", [a for a in AUGMENTS if a != "none"])
def test_each_augment_changes_images_differently_per_draw(augment, make_cfg):
    dm = datamodule(make_cfg, f"augment={augment}")
    torch.manual_seed(0)
    draws = torch.stack([dm.train_set[0][0] for _ in range(6)])
    assert draws.shape == (6, 3, 32, 32) and torch.isfinite(draws).all()
    assert len({d.sum().item() for d in draws}) == 6
    assert torch.equal(
        dm.eval_transform(dm.arrays.test_images[0]), dm.eval_transform(dm.arrays.test_images[0])
    )


def test_seed000_heavy_has_every_step_of_the_table(make_cfg):
    dm = datamodule(make_cfg, "augment=seed000_heavy")
    names = repr(dm.train_transform)
    for step in (
        "RandomOrder",
        "RandomHorizontalFlip",
        "CropSides",
        "GaussianBlur",
        "ColorJitter",
        "AdditiveNoise",
        "Multiply",
        "RandomAffine",
    ):
        assert step in names


def test_crop_sides_keeps_the_size_and_zero_crops_nothing():
    img = torch.rand(3, 32, 32)
    assert CropSides(0.1)(img).shape == (3, 32, 32)
    assert torch.allclose(CropSides(0.0)(img), img)


def test_noise_is_shared_across_channels_unless_per_channel():
    img = torch.full((3, 8, 8), 0.5)
    shared = AdditiveNoise(0.05, per_channel=0.0)(img)
    assert torch.equal(shared[0], shared[1]) and torch.equal(shared[1], shared[2])
    torch.manual_seed(1)
    separate = AdditiveNoise(0.05, per_channel=1.0)(img)
    assert not torch.equal(separate[0], separate[1])


def test_multiply_stays_in_its_range():
    img = torch.full((3, 4, 4), 0.5)
    out = torch.stack([Multiply(0.8, 1.2, per_channel=1.0)(img) for _ in range(200)])
    assert out.min() >= 0.4 - 1e-6 and out.max() <= 0.6 + 1e-6 and out.std() > 0.01


def test_cutmix_pastes_a_box_and_weights_targets_by_its_area(make_cfg):
    dm = datamodule(make_cfg, "augment.cutmix_alpha=1.0")
    dm.trainer = _Training()
    torch.manual_seed(3)
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8)
    mixed, soft = dm.on_after_batch_transfer((x.clone(), y), 0)
    from_self = (mixed == x).all(dim=1)  # (N, H, W): pixels still the image's own
    from_partner = (mixed == x.flip(0)).all(dim=1)
    assert torch.all(from_self | from_partner)
    lam = soft[0, 0].item()
    assert 0 < lam < 1 and from_self[0].float().mean().item() == pytest.approx(lam, abs=1e-6)


def test_minmax_maps_pixels_to_minus_one_one(make_cfg):
    dm = datamodule(make_cfg, "preprocess=minmax")
    x = torch.stack([dm.test_set[i][0] for i in range(len(dm.test_set))])
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.99 and x.max() > 0.99


def test_zca_whitening_decorrelates_the_training_images():
    torch.manual_seed(0)
    mixing = torch.randn(12, 12)
    images = (torch.rand(4000, 12) @ mixing).view(4000, 3, 2, 2)  # strongly correlated pixels
    white = Whitening(images, eps=1e-6)(images).flatten(1)
    cov = torch.cov(white.T)
    assert torch.allclose(cov, torch.eye(12), atol=0.02)


def test_zca_option_whitens_batches_on_transfer(make_cfg):
    dm = datamodule(make_cfg, "preprocess=zca", "data.image_size=8")
    batch = next(iter(dm.test_dataloader()))
    white, _ = dm.on_after_batch_transfer(batch, 0)
    assert dm.whiten is not None and not torch.allclose(white, batch[0])
    assert white.shape == batch[0].shape
