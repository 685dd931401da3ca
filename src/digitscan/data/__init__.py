"""Datasets: the MNIST IDX files, other datasets and image folders, and training-time augmentation."""
