"""Training babygan's own StyleGAN (v1) face model, under any Keras backend (JAX on a GPU for speed).

```
import os; os.environ["KERAS_BACKEND"] = "jax"        # before Keras is imported
from babygan.train import TrainConfig, Trainer, load_images
images = load_images("utkface200.tar", 64)           # uint8 (N, 64, 64, 3)
trainer = Trainer(TrainConfig(resolution=64, total_kimg=2000))
trainer.train(images, "runs/64", minutes=9)          # progress lines, samples, checkpoints
trainer = Trainer.resume("runs/64/checkpoint")       # ... later, in a new process
trainer.export("babygan-utkface128.npz")             # EMA generator, babygan's npz, + model card
```
``TrainConfig`` and ``load_images`` import no Keras; ``Trainer`` does (lazily, on first use here).
"""

from __future__ import annotations

from typing import Any

from babygan.train.config import TrainConfig
from babygan.train.data import load_images, pack

__all__ = ["TrainConfig", "Trainer", "load_images", "pack"]


def __getattr__(name: str) -> Any:
    if name == "Trainer":
        from babygan.train.trainer import Trainer

        return Trainer
    raise AttributeError(name)
