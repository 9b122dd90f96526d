import io
import tarfile
from types import SimpleNamespace

import pytest
import torch

from cnnlab import registry
from cnnlab.data.datamodule import ImageDataModule
from cnnlab.data.split import stratified_split
from cnnlab.errors import ConfigError
from cnnlab.run.assemble import build_datamodule

import disk_formats
from conftest import CONF
from disk_formats import write_cifar10_archive

NO_AUGMENT = {"transforms": {}, "mixup_alpha": 0.0}


def test_cifar10_reads_the_pickled_batches(cifar_dir):
    arrays = registry.create("data", "cifar10", root=str(cifar_dir), verify=False, download=False)
    assert arrays.train_images.shape == (100, 3, 32, 32)  # 5 batches of 20
    assert arrays.train_images.dtype == torch.uint8
    assert arrays.test_images.shape == (50, 3, 32, 32)
    assert arrays.train_labels.dtype == torch.long and arrays.train_labels.max() < 10


def test_cifar10_checks_md5_by_default(cifar_dir):
    with pytest.raises(ConfigError, match="fails the md5 check"):
        registry.create("data", "cifar10", root=str(cifar_dir), download=False)


def test_cifar10_unpacks_a_local_archive(tmp_path):
    write_cifar10_archive(tmp_path)
    arrays = registry.create("data", "cifar10", root=str(tmp_path), verify=False, download=False)
    assert len(arrays.train_labels) == 100
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_5").is_file()


@pytest.mark.parametrize("filters", [True, False], ids=["tar-filters", "python-3.11.2"])
def test_cifar10_unpacks_with_or_without_tarfiles_filters(filters, tmp_path, monkeypatch):
    if not filters:  # as on Python before 3.11.4 (Debian 12's 3.11.2)
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    write_cifar10_archive(tmp_path)
    arrays = registry.create("data", "cifar10", root=str(tmp_path), verify=False, download=False)
    assert len(arrays.train_labels) == 100


@pytest.mark.parametrize("filters", [True, False], ids=["tar-filters", "python-3.11.2"])
def test_an_archive_that_writes_outside_its_folder_is_refused(filters, tmp_path, monkeypatch):
    if not filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        evil = tarfile.TarInfo("../escaped")
        tar.addfile(evil, io.BytesIO(b""))
    with pytest.raises(ConfigError, match="cannot be unpacked.*escaped"):
        registry.create("data", "cifar10", root=str(tmp_path), verify=False, download=False)
    assert not (tmp_path.parent / "escaped").exists()
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not a gzip file")
    with pytest.raises(ConfigError, match="cannot be unpacked"):
        registry.create("data", "cifar10", root=str(tmp_path), verify=False, download=False)


def test_cifar10_archive_with_a_wrong_md5_is_refused(tmp_path):
    write_cifar10_archive(tmp_path)
    with pytest.raises(ConfigError, match="does not have the official md5 sum"):
        registry.create("data", "cifar10", root=str(tmp_path), download=False)


def test_missing_cifar10_says_where_to_put_it(tmp_path):
    with pytest.raises(ConfigError) as err:
        registry.create("data", "cifar10", root=str(tmp_path), download=False)
    message = str(err.value)
    assert "cifar-10-python.tar.gz" in message and "data=fashion_mnist" in message
    assert "\n" not in message


def test_fashion_mnist_reads_idx_gz_files(fashion_dir):
    arrays = registry.create("data", "fashion_mnist", root=str(fashion_dir))
    assert arrays.train_images.shape == (200, 1, 28, 28)
    assert arrays.test_labels.shape == (50,)


def test_missing_fashion_mnist_names_the_package(tmp_path):
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist"):
        registry.create("data", "fashion_mnist", root=str(tmp_path))


DATA_SETS = sorted(p.stem for p in (CONF / "data").glob("*.yaml") if p.stem != "fake")


@pytest.mark.parametrize("name", DATA_SETS)
def test_every_data_set_reads_files_in_its_real_format(name, make_cfg, tmp_path):
    """A data set is a loader function and a YAML; its tiny files come from
    ``disk_formats.write_<name>``, which a new data set must add."""
    root = tmp_path / name
    getattr(disk_formats, f"write_{name}")(root)
    overrides = [f"data={name}", f"data.dataset.root={root}", "data.val_split=0.2"]
    options = make_cfg(overrides).data.dataset
    overrides += [f"data.dataset.{key}=false" for key in ("verify", "download") if key in options]
    cfg = make_cfg(overrides)
    dm = build_datamodule(cfg)
    dm.setup()
    images, labels = dm.arrays.train_images, dm.arrays.train_labels
    assert images.dtype == torch.uint8 and labels.dtype == torch.long
    assert images.shape[1:] == (cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size)
    assert 0 <= labels.min() and labels.max() < cfg.data.num_classes and len(dm.test_set) >= 30
    batches = [dm.on_after_batch_transfer(b, 0)[0] for b in dm.train_dataloader()]
    x = dm.normalize(torch.cat(batches))  # the model's first step
    assert x.mean().abs() < 1e-3 and (x.std(dim=(0, 2, 3)) - 1).abs().max() < 0.01  # own stats
    assert dm.class_names is None or len(dm.class_names) == cfg.data.num_classes
    if name in ("svhn", "mnist"):  # a mirrored digit is no digit
        assert cfg.data.hflip == 0 and cfg.augment.transforms.crop_flip.flip == 0


@pytest.mark.parametrize(
    ("name", "named"),
    [("cifar100", "cifar-100-python.tar.gz"), ("svhn", "train_32x32.mat"), ("mnist", "MNIST")],
)
def test_a_missing_data_set_without_download_says_what_to_put_where(name, named, tmp_path):
    with pytest.raises(ConfigError, match=named) as err:
        registry.create("data", name, root=str(tmp_path), download=False)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_split_is_stratified_and_seeded():
    labels = torch.arange(10).repeat_interleave(100)
    train, val = stratified_split(labels, 0.1, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert torch.equal(labels[val].bincount(), torch.full((10,), 10))
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.equal(val, stratified_split(labels, 0.1, seed=3)[1])
    assert not torch.equal(val, stratified_split(labels, 0.1, seed=4)[1])


def datamodule(augment=NO_AUGMENT, **kwargs):
    options = dict(
        dataset={"name": "fake", "train_size": 100, "test_size": 20},
        augment=augment,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        num_classes=10,
        batch_size=10,
    )
    dm = ImageDataModule(**{**options, **kwargs})
    dm.setup()
    return dm


def test_val_split_zero_means_no_validation():
    dm = datamodule(val_split=0.0)
    assert len(dm.train_set) == 100 and not dm.has_validation and dm.val_dataloader() == []


def test_val_split_must_be_a_fraction():
    with pytest.raises(ConfigError, match=r"data.val_split=1.5: expected a number in \[0, 1\)"):
        datamodule(val_split=1.5)


class _Stage:
    """The little of a Trainer that the data module asks: the stage and the device."""

    strategy = SimpleNamespace(root_device=torch.device("cpu"))

    def __init__(self, training: bool):
        self.training = training


def batches(dm, loader, training: bool) -> list[torch.Tensor]:
    dm.trainer = _Stage(training)
    return [dm.on_after_batch_transfer(batch, 0)[0] for batch in loader]


def test_loaders_give_uint8_batches_and_the_given_statistics():
    dm = datamodule(eval_batch_size=7)
    images, labels = next(iter(dm.test_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (7, 3, 32, 32) and len(labels) == 7
    assert [len(b) for b in batches(dm, dm.test_dataloader(), False)] == [7, 7, 6]
    x = batches(dm, dm.test_dataloader(), False)[0]  # [0, 1]: the model normalises
    assert torch.equal(x, dm.arrays.test_images[:7].float() / 255)
    expected = (dm.arrays.test_images[:7].float() / 255 - 0.5) / 0.25
    assert torch.allclose(dm.normalize(x), expected, atol=1e-6)
    assert len(next(iter(dm.train_dataloader()))[0]) == 10  # batch_size


CROP_FLIP = {
    "transforms": {"crop_flip": {"_target_": "cnnlab.data.augment.CropFlip", "padding": 4}},
    "mixup_alpha": 0.0,
}


def test_train_and_validation_images_never_overlap():
    dm = datamodule(val_split=0.2, dataset={"name": "fake", "train_size": 500, "test_size": 20})
    train = {img.numpy().tobytes() for img in dm.train_set.images}
    val = {img.numpy().tobytes() for img in dm.val_set.images}
    assert len(train) + len(val) == 500  # random images: all distinct
    assert abs(len(val) - 100) <= 5  # 20% of each class, rounded per class
    assert not train & val
    assert train | val == {img.numpy().tobytes() for img in dm.arrays.train_images}


def test_validation_and_test_images_are_not_augmented():
    dm = datamodule(augment=CROP_FLIP, val_split=0.2)
    for dataset, loader in ((dm.val_set, dm.val_dataloader()), (dm.test_set, dm.test_dataloader())):
        expected = dataset.images.float() / 255
        torch.manual_seed(0)
        first = torch.cat(batches(dm, loader, training=False))
        torch.manual_seed(1)
        second = torch.cat(batches(dm, loader, training=False))
        assert torch.equal(first, expected) and torch.equal(first, second)
    plain = dm.train_set.images[:1].expand(8, -1, -1, -1).contiguous()
    dm.trainer = _Stage(training=True)
    augmented, _ = dm.on_after_batch_transfer((plain, torch.zeros(8, dtype=torch.long)), 0)
    assert len({v.sum().item() for v in augmented}) > 1  # while training images are


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"in_channels": 1, "mean": [0.5], "std": [0.25]}, r"data.in_channels is 1 but fake's"),
        ({"image_size": 28}, "data.image_size is 28 but fake's images are 32x32"),
        ({"num_classes": 5}, r"data.num_classes is 5 but fake has labels 0\.\.9"),
        ({"test_subset": 0}, r"data.test_subset=0: expected an integer >= 1 or null"),
        ({"val_split": 0.001}, "data.val_split=0.001 leaves no validation image"),
        ({"mean": [0.5], "std": [0.25]}, "one value per channel"),
    ],
)
def test_data_that_disagrees_with_the_config_is_refused(options, message):
    fixed = {"name": "fake", "train_size": 100, "test_size": 20, "num_classes": 10}
    with pytest.raises(ConfigError, match=message):
        datamodule(dataset=fixed, **options)


def test_grey_images_with_three_channel_statistics_are_refused(fashion_dir):
    with pytest.raises(ConfigError, match="data.in_channels is 3 but fashion_mnist's images"):
        datamodule(dataset={"name": "fashion_mnist", "root": str(fashion_dir)})


def test_validating_on_the_test_set_needs_no_held_out_split():
    dm = datamodule(val_split=0.0, val_on_test=True)
    assert not dm.has_validation and dm.val_set is dm.test_set
    assert len(dm.val_dataloader().dataset) == 20
    with pytest.raises(ConfigError, match="val_on_test=true needs data.val_split=0"):
        datamodule(val_split=0.1, val_on_test=True)


@pytest.mark.parametrize("shuffle", [True, False])
def test_under_ddp_only_evaluation_shares_images_out_without_repeats(tmp_path, shuffle):
    """Training keeps Lightning's DistributedSampler (equal shares, so every process takes
    the same number of steps, also with data.shuffle=false); validation and test take each
    image once, in unequal shares."""
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        dm = datamodule(shuffle=shuffle)
        assert not isinstance(dm.train_dataloader().sampler, UnrepeatedDistributedSampler)
        assert isinstance(dm.val_dataloader().sampler, UnrepeatedDistributedSampler)
        assert isinstance(dm.test_dataloader().sampler, UnrepeatedDistributedSampler)
    finally:
        dist.destroy_process_group()
