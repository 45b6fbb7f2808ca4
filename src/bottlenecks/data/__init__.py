"""Data sets: Fashion-MNIST (IDX files), scikit-learn's digits, and the IDX reader they share;
user data: embeddings in ``.npz`` / ``.safetensors`` (:func:`load_embeddings`), image folders
(:func:`load_image_folder`), CIFAR-10/100 through torchvision (:func:`load_cifar`); generated
concept images with a spurious concept (:func:`make_concept_shapes`), CUB-200-2011 with its
attributes (:func:`load_cub`), the 12-bit information-plane set (:func:`load_twelve_bit`).

>>> ds = load_image_dataset("fashion-mnist", split="test")   # falls back to digits if missing
>>> ds.images.shape, ds.labels.shape                          # (n, 28, 28) float32, (n,) int64
"""

from .concept_shapes import CONCEPT_NAMES, ConceptShapes, make_concept_shapes
from .cub import CUBDataset, describe_cub, load_cub, write_tiny_cub
from .digits import DIGITS_CLASSES, load_digits_images
from .embeddings import EMBEDDING_SUFFIXES, EmbeddingDataset, load_arrays, load_embeddings, stratified_split
from .fashion_mnist import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ENV,
    load_fashion_mnist,
)
from .folder import IMAGE_SUFFIXES, load_image_folder
from .idx import IDXFormatError, read_idx, write_idx
from .images import DATASETS, DatasetFallbackWarning, ImageDataset, load_image_dataset
from .torchvision_sets import CIFAR_SETS, TORCHVISION_ENV, default_torchvision_dir, load_cifar
from .toy2d import make_toy2d, uniform_unit_square, unit_square_grid
from .twelve_bit import TWELVE_BIT_N_POSITIVE, load_twelve_bit, twelve_bit_inputs

__all__ = [
    "CONCEPT_NAMES",
    "ConceptShapes",
    "make_concept_shapes",
    "CUBDataset",
    "describe_cub",
    "load_cub",
    "write_tiny_cub",
    "TWELVE_BIT_N_POSITIVE",
    "load_twelve_bit",
    "twelve_bit_inputs",
    "CIFAR_SETS",
    "DATASETS",
    "DEFAULT_FASHION_MNIST_DIR",
    "DIGITS_CLASSES",
    "EMBEDDING_SUFFIXES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ENV",
    "IMAGE_SUFFIXES",
    "TORCHVISION_ENV",
    "DatasetFallbackWarning",
    "EmbeddingDataset",
    "IDXFormatError",
    "ImageDataset",
    "default_torchvision_dir",
    "load_cifar",
    "load_digits_images",
    "load_arrays",
    "load_embeddings",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_image_folder",
    "make_toy2d",
    "read_idx",
    "stratified_split",
    "uniform_unit_square",
    "unit_square_grid",
    "write_idx",
]
