import cv2
import numpy as np
import pytest
import torch

from ferlab.data import (
    BatchAugment,
    Preprocessing,
    alternating_flips,
    class_weights,
    cutmix,
    equalize_histogram,
    make_sampler,
    mixup,
)
from ferlab.data.augment import random_erase
from ferlab.errors import ConfigError

from conftest import synthetic_faces


def test_equalize_matches_opencv():
    images, _ = synthetic_faces(6)
    images[0] = (images[0] // 4) + 60  # low contrast
    ours = equalize_histogram(torch.from_numpy(images)[:, None])[:, 0].numpy()
    for mine, img in zip(ours, images, strict=True):
        assert np.abs(mine.astype(int) - cv2.equalizeHist(img).astype(int)).max() <= 1


def test_equalize_flat_image_is_unchanged():
    flat = torch.full((1, 1, 8, 8), 77, dtype=torch.uint8)
    assert torch.equal(equalize_histogram(flat), flat)


def test_per_image_normalisation_and_resize():
    x = torch.from_numpy(synthetic_faces(4)[0])[:, None]
    out = Preprocessing(input_size=64, normalize="per_image")(x)
    assert out.shape == (4, 1, 64, 64)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)
    half = torch.zeros(1, 1, 48, 48, dtype=torch.uint8)
    half[..., 24:] = 255
    sym = Preprocessing(normalize="symmetric")(half)
    assert sym.min() == -1.0 and sym.max() == 1.0
    with pytest.raises(ConfigError):
        Preprocessing(normalize="zscore")


def test_dataset_normalisation_fits_statistics():
    x = torch.from_numpy(synthetic_faces(50)[0])[:, None]
    pp = Preprocessing(normalize="dataset").fit(x)
    out = pp(x)
    assert abs(float(out.mean())) < 1e-3 and abs(float(out.std()) - 1) < 1e-3


def test_augment_identity_and_flip():
    x = torch.rand(8, 1, 48, 48)
    assert torch.equal(BatchAugment()(x), x)
    g = torch.Generator().manual_seed(0)
    flipped = BatchAugment(hflip=True)(x, generator=g)
    for a, b in zip(flipped, x, strict=True):  # each image is either itself or its mirror image
        assert torch.allclose(a, b, atol=1e-5) or torch.allclose(a, b.flip(-1), atol=1e-5)


def test_augment_mirrors_exactly_the_faces_it_is_told_to():
    x = torch.rand(6, 1, 48, 48)
    flip = torch.tensor([True, False, True, True, False, False])
    out = BatchAugment(zoom=0.0, hflip=True)(x, flip=flip)
    torch.testing.assert_close(out[flip], x[flip].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[~flip], x[~flip], atol=1e-5, rtol=0)


def test_alternating_flips_mirror_each_face_once_every_two_epochs():
    index = torch.arange(10_000)
    even, odd = alternating_flips(index, 0, seed=0), alternating_flips(index, 1, seed=0)
    assert torch.equal(odd, ~even)  # every face is seen both ways in each pair of epochs
    assert torch.equal(alternating_flips(index, 2, seed=0), even)
    assert abs(even.float().mean().item() - 0.5) < 0.02  # about half, not a fixed pattern of rows
    assert torch.equal(alternating_flips(index.flip(0), 0, seed=0), even.flip(0))  # by row, not position
    assert (alternating_flips(index, 0, seed=1) != even).float().mean().item() > 0.4  # another seed, another half
    assert not torch.equal(even[:100:2], even[1:100:2])


def test_augment_geometric_batch_has_no_nan_and_varies():
    x = torch.rand(16, 1, 48, 48)
    out = BatchAugment(rotate=15, shift=0.1, shear=10, zoom=0.2, hflip=True, erasing=0.5)(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out[0], x[0])


def test_augment_samples_output_at_a_smaller_side():
    x = torch.rand(4, 1, 48, 48)
    warped = BatchAugment(rotate=10, hflip=True)(x, size=32)
    resized = BatchAugment()(x, size=32)  # no warp: an antialiased resize
    assert warped.shape == resized.shape == (4, 1, 32, 32)
    assert torch.allclose(resized.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-2)
    assert BatchAugment()(x, size=48) is x


def test_random_erasing_changes_chosen_images_only():
    x = torch.rand(32, 1, 48, 48)
    out = random_erase(x, p=1.0)
    changed = (out != x).flatten(1).any(1)
    assert changed.all()
    assert torch.equal(random_erase(x, p=0.0), x)


def test_mixup_cutmix_keep_distributions():
    x = torch.rand(8, 1, 48, 48)
    t = torch.nn.functional.one_hot(torch.arange(8) % 7, 7).float()
    for fn in (mixup, cutmix):
        xm, tm = fn(x, t, 1.0)
        assert xm.shape == x.shape
        torch.testing.assert_close(tm.sum(1), torch.ones(8))


def test_class_weights():
    labels = np.array([0] * 80 + [1] * 20)
    torch.testing.assert_close(class_weights(labels, 2, "inverse"), torch.tensor([100 / 80, 100 / 20]))
    torch.testing.assert_close(class_weights(labels, 2, "balanced"), torch.tensor([100 / 160, 100 / 40]))
    eff = class_weights(labels, 2, "effective")
    assert eff[1] > eff[0] and float(eff.mean()) == pytest.approx(1.0)


def test_oversample_sampler_repeats_class():
    labels = np.array([0] * 90 + [1] * 10)
    sampler = make_sampler(labels, 2, "oversample", {1: 5.0}, generator=torch.Generator().manual_seed(0))
    drawn = labels[list(sampler)]
    assert len(drawn) == 140
    assert 0.25 < (drawn == 1).mean() < 0.47  # 50 / 140 expected
    weighted = labels[list(make_sampler(labels, 2, "weighted", generator=torch.Generator().manual_seed(0)))]
    assert 0.4 < (weighted == 1).mean() < 0.6
