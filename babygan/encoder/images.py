"""Aligned images on their way into the encoder: checks, resizing, preprocessing, per-image seeds."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from babygan.errors import BabyganError


def check_images(images: Any, name: str = "images") -> np.ndarray:
    """The images as a uint8 (N, S, S, 3) array, or a BabyganError saying what is wrong."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[1] != arr.shape[2] or arr.shape[0] < 1:
        raise BabyganError(
            f"{name}: expected square aligned RGB images, uint8 (N, S, S, 3), got shape {arr.shape}"
        )
    if arr.dtype != np.uint8:
        raise BabyganError(f"{name}: expected uint8 pixels (0..255), got {arr.dtype}")
    if arr.shape[1] < 16:
        raise BabyganError(f"{name}: images of {arr.shape[1]} px are too small to encode (at least 16 px)")
    return arr


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, S, S, 3) -> uint8 (N, size, size, 3) with Lanczos (as pbaylies loads targets)."""
    if images.shape[1] == size:
        return images
    from babygan.render import resize

    return np.stack([resize(img, size) for img in images])


def caffe_preprocess(images: Any) -> Any:
    """float RGB 0..255 (N, H, W, 3), numpy or backend tensor -> BGR minus the ImageNet means.

    The input VGG16 and ResNet50 (and pbaylies' finetuned_resnet.h5) were trained on.
    """
    from keras.applications import imagenet_utils

    return imagenet_utils.preprocess_input(images, mode="caffe")


def image_seed(image: np.ndarray, seed: int) -> int:
    """A per-image RNG seed from the settings' seed and the image's pixels.

    Stochastic clipping draws from it, so an image's result does not depend on which
    other image shares its batch (the cache stores results per image).
    """
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes() + str(seed).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def sharpen(images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 3) -> the same sharpened with PIL's DETAIL filter (pbaylies' sharpen_input,
    applied, as there, after the resize to the loss resolution)."""
    from PIL import Image, ImageFilter

    return np.stack([np.asarray(Image.fromarray(img).filter(ImageFilter.DETAIL)) for img in images])
