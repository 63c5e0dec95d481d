"""Checks of an encoder result made independently of the code that produced it.

The encoder's own render (``EncodeResult.reconstructions``: the compiled ``G.synthesis``) and
its own bookkeeping (``best_loss`` is the history's minimum by definition) cannot judge
themselves: here the returned dlatents are rendered through the uncompiled network and
scored with a freshly built loss.
"""

from __future__ import annotations

import numpy as np


def render_uint8(G, dlatents: np.ndarray) -> np.ndarray:
    """uint8 (N, R, R, 3): ``dlatents`` through ``network.synthesis`` run eagerly on G's numpy
    parameters (stored noise), not through the Generator's compiled function."""
    from keras import ops

    from babygan.stylegan import network, to_uint8

    img = network.synthesis(G.params, np.asarray(dlatents, np.float32), G.config)
    return to_uint8(np.asarray(ops.convert_to_numpy(img), np.float32))


def assert_reconstructions_render_the_dlatents(G, result) -> None:
    got = result.reconstructions.astype(int)
    want = render_uint8(G, result.dlatents).astype(int)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1  # float rounding may move a value across a uint8 step


def loss_of(G, settings, images: np.ndarray, dlatents: np.ndarray) -> np.ndarray:
    """(N,) the encoder's loss (no VGG16, no face mask, no sharpening) of ``dlatents`` on ``images``."""
    from keras import ops

    from babygan.encoder.encoder import loss_resolution
    from babygan.encoder.images import resize_uint8
    from babygan.encoder.step import make_loss

    assert settings.perceptual == "pixel" and not settings.face_mask and not settings.sharpen_input
    size = loss_resolution(G, settings)
    target = resize_uint8(images, size).astype(np.float32)
    mask = np.ones((len(images), size, size, 1), np.float32)
    loss = make_loss(G, settings, size, None)
    _, per_image = loss(np.asarray(dlatents, np.float32), G.tensors, target, np.zeros((len(images), 1)), mask)
    return np.asarray(ops.convert_to_numpy(per_image), np.float64)


def assert_best_seen(G, settings, images: np.ndarray, result) -> None:
    """The returned dlatents are the lowest-loss iterate: the returned loss is the minimum of
    the history, below where it started, and the returned dlatents score that loss."""
    history = result.loss_history
    np.testing.assert_array_equal(result.best_loss, np.nanmin(history, axis=0))
    assert np.all(result.best_loss < history[0]), (result.best_loss, history[0])
    np.testing.assert_allclose(loss_of(G, settings, images, result.dlatents), result.best_loss, rtol=1e-4)
