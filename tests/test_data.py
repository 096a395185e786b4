from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ablate.config import DatasetConfig
from ablate.data import (DATASETS, DeviceImages, Read, check_dataset, crop_flip, crop_flip_draws, load_images,
                         split_indices)
from ablate.errors import ConfigError, DataError


def test_digits_load_as_uint8_rgb_at_the_asked_size(tmp_path):
    data = load_images(DatasetConfig(name="digits", image_size=16), tmp_path)
    assert data.images.shape == (1797, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.num_classes == 10 and int(data.labels.max()) == 9
    assert torch.equal(data.images[:, 0], data.images[:, 1])  # grey copied to RGB
    again = load_images(DatasetConfig(name="digits", image_size=16), tmp_path)  # from the disk cache
    assert torch.equal(again.images, data.images)


def test_split_is_disjoint_stratified_and_fixed_by_split_seed(tmp_path):
    labels = load_images(DatasetConfig(name="digits", image_size=8), tmp_path).labels
    cfg = DatasetConfig(val_fraction=0.2, test_fraction=0.25)
    s = split_indices(labels, cfg)
    train, val, test = set(s.train), set(s.val), set(s.test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train) + len(val) + len(test) == len(labels)
    assert len(test) == pytest.approx(0.25 * len(labels), abs=1)
    assert len(val) == pytest.approx(0.2 * len(labels), abs=2)
    for part in (s.train, s.val, s.test):  # every class in every split
        assert len(np.unique(labels.numpy()[part])) == 10
    same = split_indices(labels, cfg)
    assert all(np.array_equal(a, b) for a, b in zip((s.train, s.val, s.test), (same.train, same.val, same.test)))
    other = split_indices(labels, cfg.model_copy(update={"split_seed": 1}))
    assert not np.array_equal(s.test, other.test)


def test_the_partition_seed_redraws_train_and_validation_but_never_the_test_split(tmp_path):
    labels = load_images(DatasetConfig(name="digits", image_size=8), tmp_path).labels
    cfg = DatasetConfig(subset=300)
    base = split_indices(labels, cfg)
    # unset, the partition is split_seed's: the split every run drew before partition seeds existed
    same = split_indices(labels, cfg.model_copy(update={"partition_seed": cfg.split_seed}))
    assert all(np.array_equal(a, b) for a, b in zip((base.train, base.val, base.test), (same.train, same.val, same.test)))
    other = split_indices(labels, cfg.model_copy(update={"partition_seed": 7}))
    assert np.array_equal(other.test, base.test)  # the test split is the study's, whatever the partition
    assert not np.array_equal(other.train, base.train)
    assert np.array_equal(np.sort(np.concatenate([other.train, other.val])),
                          np.sort(np.concatenate([base.train, base.val])))  # the same rest, partitioned again
    assert (len(other.train), len(other.val)) == (len(base.train), len(base.val))
    for part in (other.train, other.val):  # stratified
        assert len(np.unique(labels.numpy()[part])) == 10


@pytest.fixture
def official_split_dataset(monkeypatch):
    """A registered data set of 60 images whose reader marks the last 20 as its official test set."""
    labels = [i % 4 for i in range(60)]

    def reader(cfg, root):
        images = [np.full((8, 8, 3), i, dtype=np.uint8) for i in range(60)]
        return Read(zip(images, labels), 60, ("a", "b", "c", "d"), official_test=np.arange(40, 60))

    monkeypatch.setitem(DATASETS, "fake-official", (reader, False))
    return "fake-official"


def test_the_test_split_is_the_official_one_where_the_data_set_has_one(tmp_path, official_split_dataset):
    cfg = DatasetConfig(name=official_split_dataset, image_size=8, val_fraction=0.2, test_fraction=0.2)
    data = load_images(cfg, tmp_path)
    assert data.official_test.tolist() == list(range(40, 60))
    assert load_images(cfg, tmp_path).official_test.tolist() == list(range(40, 60))  # from the disk cache
    splits = {(seed, part): split_indices(data.labels, cfg.model_copy(update={"split_seed": seed, "partition_seed": part}),
                                          data.official_test)
              for seed in (0, 1) for part in (None, 5)}
    for s in splits.values():
        assert s.test.tolist() == list(range(40, 60))  # whatever split_seed and the partition seed
        assert sorted(np.concatenate([s.train, s.val]).tolist()) == list(range(40))
        assert len(s.val) == 10  # val_fraction / (1 - test_fraction) of the 40 others
    assert not np.array_equal(splits[0, None].train, splits[0, 5].train)
    # a subset keeps the official test images it draws
    sub = split_indices(data.labels, cfg.model_copy(update={"subset": 30}), data.official_test)
    assert set(sub.test) <= set(range(40, 60)) and not set(sub.train) & set(range(40, 60))
    assert len(sub.train) + len(sub.val) + len(sub.test) == 30


def test_subset_draws_a_stratified_subset(tmp_path):
    labels = load_images(DatasetConfig(name="digits", image_size=8), tmp_path).labels
    s = split_indices(labels, DatasetConfig(subset=100))
    assert len(s.train) + len(s.val) + len(s.test) == 100


def test_crop_flip_keeps_pixels_and_is_seeded():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).reshape(2, 3, 8, 8)
    a = crop_flip(x, crop_flip_draws(2, 8, torch.Generator().manual_seed(0)))
    b = crop_flip(x, crop_flip_draws(2, 8, torch.Generator().manual_seed(0)))
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    no_shift = crop_flip(x, crop_flip_draws(2, 8, torch.Generator().manual_seed(0), pad=0), pad=0)
    for i in range(2):  # with no translation each image is itself or its mirror
        assert torch.equal(no_shift[i], x[i]) or torch.equal(no_shift[i], x[i].flip(-1))


def test_device_batches_are_normalised_and_cover_the_split():
    images = torch.full((10, 3, 4, 4), 255, dtype=torch.uint8)
    data = DeviceImages(images, torch.arange(10), torch.device("cpu"))
    batches = list(data.batches(4, order=torch.Generator().manual_seed(0)))
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(10))
    x = batches[0][0]
    assert torch.allclose(x[0, 0], torch.full((4, 4), (1 - 0.485) / 0.229))
    assert len(list(data.batches(4, drop_last=True))) == 2


def test_an_epoch_draws_its_order_and_augmentation_up_front_from_their_own_generators():
    """The permutation comes from the order generator, every shift and flip of the epoch from the
    augmentation generator, drawn before the first batch: changing one stream leaves the other."""
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    data = DeviceImages(images, torch.arange(10) + 100, torch.device("cpu"))
    batches = data.batches(4, order=torch.Generator().manual_seed(3), augment=torch.Generator().manual_seed(4),
                           drop_last=True)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    draws = crop_flip_draws(10, 8, torch.Generator().manual_seed(4))
    got = list(batches)
    assert len(got) == 2
    for i, (x, y) in enumerate(got):
        rows = perm[4 * i : 4 * i + 4]
        assert torch.equal(y, rows + 100)
        expected = crop_flip(images[rows], draws[:, 4 * i : 4 * i + 4])
        torch.testing.assert_close(x, (expected.float() - data.mean) / data.std)
    other_augment = list(data.batches(4, order=torch.Generator().manual_seed(3),
                                      augment=torch.Generator().manual_seed(5), drop_last=True))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(got, other_augment))  # same order
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(got, other_augment))  # other shifts


def test_a_view_is_some_rows_of_the_uploaded_images():
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 3, 2, 2).contiguous()
    data = DeviceImages(images, torch.arange(6) % 2, torch.device("cpu"), examples=np.array([10, 11, 12, 13, 14, 15]))
    view = data.rows(np.array([4, 1]))
    assert len(view) == 2 and view.images is data.images  # shared, not copied
    assert view.examples.tolist() == [14, 11] and view.example_labels.tolist() == [0, 1]
    [(x, y)] = list(view.batches(8))
    assert x[:, 0, 0, 0].tolist() == pytest.approx([(4 - 0.485 * 255) / (0.229 * 255), (1 - 0.485 * 255) / (0.229 * 255)])
    assert y.tolist() == [0, 1]


def _image_folder(root, broken: bool = False):
    for c, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20 + i, 12), colour).save(folder / f"{i}.png")
    if broken:
        (root / "class0" / "broken.png").write_bytes(b"not a png")


def test_imagefolder_reads_a_users_images(tmp_path):
    _image_folder(tmp_path / "imgs")
    data = load_images(DatasetConfig(name="imagefolder", root=str(tmp_path / "imgs"), image_size=8), tmp_path)
    assert data.classes == ("class0", "class1") and data.images.shape == (12, 3, 8, 8)
    assert data.images[0, 0].float().mean() > 250 and data.images[0, 2].float().mean() < 5  # red
    assert data.images[-1, 2].float().mean() > 250  # blue


def test_broken_image_names_the_file(tmp_path):
    _image_folder(tmp_path / "imgs", broken=True)
    with pytest.raises(DataError, match="broken.png"):
        load_images(DatasetConfig(name="imagefolder", root=str(tmp_path / "imgs"), image_size=8), tmp_path)


def test_unknown_dataset_lists_valid_names(tmp_path):
    with pytest.raises(ConfigError) as info:
        check_dataset(DatasetConfig(name="cifar100"), tmp_path)
    assert "cifar10" in str(info.value) and "digits" in str(info.value)


@pytest.mark.parametrize("name", ["cifar10", "caltech101", "flowers102"])
def test_missing_data_root_names_root_and_switch(tmp_path, name):
    with pytest.raises(DataError) as info:
        check_dataset(DatasetConfig(name=name, root="nowhere"), tmp_path)
    assert str(tmp_path / "nowhere") in str(info.value) and "dataset.download: true" in str(info.value)


@pytest.mark.parametrize("name", ["cifar10", "caltech101", "flowers102"])
def test_empty_data_root_without_download_is_a_clear_error(tmp_path, name):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="no files found under data root"):
        load_images(DatasetConfig(name=name, root="data"), tmp_path)
