"""The encoder: aligned photos -> StyleGAN dlatents (pbaylies-style), with an estimator and a cache.

Importing this package is cheap: Keras is imported when something runs.

    from babygan.encoder import Encoder, EncoderSettings
    encoder = Encoder(G, EncoderSettings(iterations=100, perceptual="vgg16", seed=0))
    result = encoder.encode(images)          # images uint8 (N, S, S, 3)
    result.dlatents                          # (N, L, w_dim) float32, best loss
    dlatents = encoder.encode_cached(images) # the same, cached per image
"""

from babygan.encoder.encoder import Encoder, EncodeResult
from babygan.encoder.estimator import load_estimator, save_estimator, train_estimator
from babygan.encoder.settings import EncoderSettings

__all__ = [
    "EncodeResult",
    "Encoder",
    "EncoderSettings",
    "load_estimator",
    "save_estimator",
    "train_estimator",
]
