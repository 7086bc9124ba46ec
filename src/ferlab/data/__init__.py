"""Data: readers for every FER format, cleaning, splits, preprocessing, batched augmentation, balance."""

from ferlab.data.augment import BatchAugment, alternating_flips, cutmix, mixup
from ferlab.data.balance import class_weights, make_sampler
from ferlab.data.cleaning import clean_training_split, find_duplicates, near_blank
from ferlab.data.dataset import SPLITS, FaceDataset
from ferlab.data.preprocess import Preprocessing, equalize_histogram
from ferlab.data.readers import (
    default_data_root,
    load_dataset,
    load_fer_csv,
    load_image_folder,
    load_utkface,
    read_image,
)

__all__ = [
    "SPLITS", "BatchAugment", "FaceDataset", "Preprocessing", "alternating_flips", "class_weights",
    "clean_training_split", "cutmix", "default_data_root", "equalize_histogram", "find_duplicates", "load_dataset",
    "load_fer_csv", "load_image_folder", "load_utkface", "make_sampler", "mixup", "near_blank", "read_image",
]
