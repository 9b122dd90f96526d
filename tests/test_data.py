import pytest
import torch

from cnnlab import registry
from cnnlab.data import ImageDataModule
from cnnlab.data.split import stratified_split
from cnnlab.errors import ConfigError

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
        num_workers=0,
    )
    dm = ImageDataModule(**{**options, **kwargs})
    dm.setup()
    return dm


def test_val_split_zero_means_no_validation():
    dm = datamodule(val_split=0.0)
    assert len(dm.train_set) == 100 and not dm.has_validation and dm.val_dataloader() == []


def test_val_split_must_be_a_fraction():
    with pytest.raises(ConfigError, match=r"val_split must be in \[0, 1\)"):
        datamodule(val_split=1.5)


def test_images_are_normalised_with_the_given_statistics():
    dm = datamodule()
    raw = dm.arrays.test_images[0].float() / 255
    x, _ = dm.test_set[0]
    assert torch.allclose(x, (raw - 0.5) / 0.25, atol=1e-6)


def test_standard_augment_crops_and_flips_each_image_differently():
    crop_flip = {
        "transforms": {
            "crop": {"_target_": "torchvision.transforms.v2.RandomCrop", "size": 32, "padding": 4},
            "flip": {"_target_": "torchvision.transforms.v2.RandomHorizontalFlip"},
        },
        "mixup_alpha": 0.0,
    }
    dm = datamodule(augment=crop_flip)
    torch.manual_seed(0)
    views = torch.stack([dm.train_set[0][0] for _ in range(8)])
    assert len({v.sum().item() for v in views}) > 1  # random per draw
    assert views.shape == (8, 3, 32, 32)
