"""Augmentations work on whole batches and draw per image; mixing and preprocessing do what the
studies say; statistics are computed from the training split and cached."""

from types import SimpleNamespace

import pytest
import torch

from cnnlab.data import augment as aug
from cnnlab.data.preprocess import Whitening
from cnnlab.data.stats import zca
from cnnlab.errors import ConfigError
from cnnlab.run.assemble import build_datamodule

from conftest import CONF, seed_all

AUGMENTS = sorted(p.stem for p in (CONF / "augment").glob("*.yaml"))


class _Stage:
    """The little of a Trainer that the data module asks: the stage and the device."""

    strategy = SimpleNamespace(root_device=torch.device("cpu"))

    def __init__(self, training: bool):
        self.training = training


def datamodule(make_cfg, *overrides):
    cfg = make_cfg(
        [
            "data=fake",
            "data.dataset.train_size=40",
            "data.val_split=0",
            "data.batch_size=8",
            *overrides,
        ]
    )
    dm = build_datamodule(cfg)
    dm.setup()
    return dm


def transfer(dm, images, labels=None, training=True):
    """A batch as the Trainer hands it to the model, in a training or an evaluation step."""
    dm.trainer = _Stage(training)
    labels = torch.zeros(len(images), dtype=torch.long) if labels is None else labels
    return dm.on_after_batch_transfer((images, labels), 0)


@pytest.mark.parametrize("augment", [a for a in AUGMENTS if a != "none"])
def test_each_augment_draws_per_image_and_leaves_evaluation_alone(augment, make_cfg):
    dm = datamodule(make_cfg, f"augment={augment}")
    same = dm.arrays.test_images[:1].expand(16, -1, -1, -1).contiguous()  # one image, 16 times
    torch.manual_seed(0)
    out, _ = transfer(dm, same)
    assert out.shape == (16, 3, 32, 32) and torch.isfinite(out).all()
    assert len({image.sum().item() for image in out}) >= 12  # one draw per batch gives 1
    evaluated = transfer(dm, same, training=False)[0]
    assert torch.equal(evaluated, transfer(dm, same, training=False)[0])
    assert torch.equal(evaluated, same.float() / 255)  # the model normalises


def test_imgaug_heavy_has_every_step_of_the_79_to_90_slides_table(make_cfg):
    names = repr(datamodule(make_cfg, "augment=imgaug_heavy").augment)
    for step in (
        "RandomOrder",
        "RandomHorizontalFlip",
        "CropSides",
        "RandomGaussianBlur",
        "LinearContrast",
        "AdditiveNoise",
        "Multiply",
        "RandomAffine",
    ):
        assert step in names


def test_crop_flip_takes_a_padded_window_of_each_image_flipped_or_not():
    torch.manual_seed(0)
    x = torch.rand(64, 2, 8, 8)
    out = aug.CropFlip(padding=2, flip=0.5)(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets, flips = set(), []
    for image, source in zip(out, padded, strict=True):
        windows = {
            (dy, dx, flip): source[:, dy : dy + 8, dx : dx + 8].flip(2 if flip else ())
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
        }
        found = [where for where, window in windows.items() if torch.equal(image, window)]
        assert found, "an output that is no window of its padded image"
        offsets.add(found[0][:2])
        flips.append(found[0][2])
    assert len(offsets) > 12 and 16 < sum(flips) < 48
    assert torch.equal(aug.CropFlip(padding=0, flip=1.0)(x), x.flip(3))
    assert torch.equal(aug.CropFlip(padding=0, flip=0.0)(x), x)


def test_crop_sides_keeps_the_size_and_zero_crops_nothing():
    x = torch.rand(4, 3, 32, 32)
    assert aug.CropSides(0.1)(x).shape == (4, 3, 32, 32)
    assert torch.allclose(aug.CropSides(0.0)(x), x, atol=1e-4)


def test_noise_is_shared_across_channels_unless_per_channel():
    x = torch.full((8, 3, 8, 8), 0.5)
    shared = aug.AdditiveNoise(0.05, per_channel=0.0)(x)
    assert torch.equal(shared[:, 0], shared[:, 1]) and torch.equal(shared[:, 1], shared[:, 2])
    separate = aug.AdditiveNoise(0.05, per_channel=1.0)(x)
    assert not torch.equal(separate[:, 0], separate[:, 1])
    sigmas = (aug.AdditiveNoise(0.05, 0.0)(x) - 0.5).flatten(1).std(1)
    assert sigmas.max() < 0.06 and sigmas.max() - sigmas.min() > 0.005  # s drawn per image


def test_multiply_and_contrast_stay_in_their_ranges():
    x = torch.full((200, 3, 4, 4), 0.5)
    out = aug.Multiply(0.8, 1.2, per_channel=1.0)(x)
    assert out.min() >= 0.4 - 1e-6 and out.max() <= 0.6 + 1e-6 and out.std() > 0.01
    grey = torch.rand(200, 1, 4, 4)
    a = (aug.LinearContrast(0.75, 1.5)(grey) - 0.5) / (grey - 0.5)  # the factor, per pixel
    unclipped = (0.5 + 1.5 * (grey - 0.5)).clamp(0, 1) == 0.5 + 1.5 * (grey - 0.5)
    assert a[unclipped].min() >= 0.75 - 1e-4 and a[unclipped].max() <= 1.5 + 1e-4


def test_own_augmentations_draw_on_the_batch_device():
    """A CPU tensor drawn for a batch elsewhere fails on mixing; 'meta' stands in for a GPU."""
    x = torch.empty(4, 3, 8, 8, device="meta")
    for step in (
        aug.CropFlip(2, 0.5),
        aug.AdditiveNoise(),
        aug.Multiply(),
        aug.LinearContrast(),
        aug.GaussianNoise(),
    ):
        assert step(x).device.type == "meta"


def test_autoaugment_gives_images_their_own_sub_policy():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16).expand(64, -1, -1, -1).contiguous()
    out = aug.AutoAugment("cifar10")(x)
    assert out.shape == x.shape and len({image.sum().item() for image in out}) > 20


def test_cutmix_pastes_a_box_and_weights_targets_by_its_area(make_cfg):
    dm = datamodule(make_cfg, "augment=none", "augment.cutmix_alpha=1.0")
    seed_all(3)  # the box and its share are drawn from numpy's generator (timm's Mixup)
    x, y = dm.arrays.train_images[:8], torch.arange(8)
    mixed, soft = transfer(dm, x, y)
    plain = x.float() / 255
    from_self = (mixed == plain).all(dim=1)  # (N, H, W): pixels still the image's own
    from_partner = (mixed == plain.flip(0)).all(dim=1)
    assert torch.all(from_self | from_partner)
    lam = soft[0, 0].item()
    assert 0 < lam < 1 and from_self[0].float().mean().item() == pytest.approx(lam, abs=1e-6)


def test_minmax_maps_pixels_to_minus_one_one(make_cfg):
    dm = datamodule(make_cfg, "preprocess=minmax")
    x = dm.normalize(transfer(dm, dm.arrays.test_images, training=False)[0])
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.99 and x.max() > 0.99


def fitted(whitening: Whitening, found: dict) -> Whitening:
    """``whitening`` with the mean and matrix ``zca`` found."""
    whitening.mean.copy_(found["mean"])
    whitening.matrix.copy_(found["matrix"])
    return whitening


def test_zca_whitening_decorrelates_the_training_images():
    torch.manual_seed(0)
    mixing = torch.randn(12, 12)
    images = (torch.rand(4000, 12) @ mixing).view(4000, 3, 2, 2)  # strongly correlated pixels
    white = fitted(Whitening(channels=3, size=2), zca(images, eps=1e-6))(images).flatten(1)
    cov = torch.cov(white.T)
    assert torch.allclose(cov, torch.eye(12), atol=0.02)


def test_zca_is_fitted_once_and_read_from_the_cache(make_cfg, tmp_path, monkeypatch):
    dm = datamodule(make_cfg, "preprocess=zca", "data.image_size=8")
    cached = [p.name for p in (tmp_path / "data" / "cache").iterdir()]
    assert len(cached) == 1 and cached[0].startswith("zca-") and "-fake-" in cached[0]
    images = dm.arrays.test_images[:8].float() / 255
    white = dm.normalize(images)
    assert not torch.allclose(white, images)

    def refit(*args):
        raise AssertionError("refitted although cached")

    monkeypatch.setattr("cnnlab.data.preprocess.zca", refit)
    again = datamodule(make_cfg, "preprocess=zca", "data.image_size=8")
    assert torch.equal(again.normalize(images), white)
    with pytest.raises(AssertionError, match="refitted"):  # a different split is not the same
        datamodule(make_cfg, "preprocess=zca", "data.image_size=8", "data.val_split=0.5")


def test_mean_and_std_come_from_the_training_split_unless_given(make_cfg, tmp_path):
    dm = datamodule(make_cfg, "data.val_split=0.25")
    train = dm.train_set.images.float() / 255
    assert torch.allclose(dm.normalize.mean.flatten(), train.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(dm.normalize.std.flatten(), train.std((0, 2, 3)), atol=1e-4)
    assert len(list((tmp_path / "data" / "cache").glob("stats-fake-*.pt"))) == 1
    given = datamodule(make_cfg, "data.mean=[0.1,0.2,0.3]", "data.std=[1,2,3]")
    assert given.normalize.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert given.normalize.std.flatten().tolist() == [1, 2, 3]


def flip_chances(dm) -> dict[str, float]:
    """Every flip among a data module's augmentations, wherever it sits, with its chance."""
    return {
        place: float(getattr(module, "flip", getattr(module, "p", 1.0)))
        for place, module in dm.augment.named_modules()
        if "Flip" in type(module).__name__
    }


@pytest.mark.parametrize("augment", AUGMENTS)
@pytest.mark.parametrize("data", ["svhn", "mnist"])  # their configs: a mirrored digit is no digit
def test_no_augment_flips_a_data_set_that_forbids_it(data, augment, make_cfg):
    cfg = make_cfg([f"data={data}", f"augment={augment}"])
    assert cfg.data.hflip == cfg.data.vflip == 0
    chances = flip_chances(build_datamodule(cfg))  # built, not loaded
    assert all(chance == 0 for chance in chances.values()), chances


def quadrant_pattern(n: int = 256) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, :14, :14] = 1  # the top-left quarter bright
    return x


def test_noise_crop_flips_keeps_digits_upright_and_flips_other_images(make_cfg):
    x = quadrant_pattern()

    def sides(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = out.mean((1, 3)), out.mean((1, 2))  # by row, by column
        return rows[:, :14].mean(1) > rows[:, 14:].mean(1), cols[:, :14].mean(1) > cols[
            :, 14:
        ].mean(1)

    upright, unmirrored = sides(
        build_datamodule(make_cfg(["data=mnist", "augment=noise_crop_flips"])).augment(x)
    )
    assert upright.all() and unmirrored.all()
    fashion = make_cfg(["data=fashion_mnist", "augment=noise_crop_flips"])  # clothes may flip
    upright, unmirrored = sides(build_datamodule(fashion).augment(x))
    assert 0.3 < upright.float().mean() < 0.7 and 0.3 < unmirrored.float().mean() < 0.7


def test_a_flip_added_by_hand_is_refused_where_the_data_set_forbids_it(make_cfg):
    vertical = "{_target_: kornia.augmentation.RandomVerticalFlip, p: 0.5}"
    cfg = make_cfg(["data=mnist", f"+augment.transforms.upside_down={vertical}"])
    with pytest.raises(ConfigError, match="augment.transforms.upside_down flips images"):
        build_datamodule(cfg)


def test_mixing_with_no_share_of_batches_is_no_mixing(make_cfg):
    assert datamodule(make_cfg, "augment.mixup_alpha=0.2", "augment.mix_prob=0").mixup is None
    assert datamodule(make_cfg, "augment.mixup_alpha=0.2").mixup is not None
