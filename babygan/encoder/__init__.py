"""The encoder: aligned photos -> StyleGAN dlatents (pbaylies-style), with an estimator and a cache.

Importing this package is cheap: TensorFlow and Keras are imported when a function runs.

    from babygan.encoder import EncoderSettings, encode, encode_images
    settings = EncoderSettings(iterations=100, perceptual="vgg16", seed=0)
    result = encode(G, images, settings)              # images uint8 (N, S, S, 3)
    result.dlatents                                   # (N, L, w_dim) float32, best loss
    dlatents = encode_images(G, images, settings)     # the same, cached per image
"""

from babygan.encoder.cache import encode_images
from babygan.encoder.estimator import load_estimator, save_estimator, train_estimator
from babygan.encoder.projector import EncodeResult, encode
from babygan.encoder.settings import EncoderSettings

__all__ = [
    "EncodeResult",
    "EncoderSettings",
    "encode",
    "encode_images",
    "load_estimator",
    "save_estimator",
    "train_estimator",
]
