"""StyleGAN (v1) on any Keras backend: safe loading of official pickles, mapping and synthesis.

```
from babygan.stylegan import load_generator
G = load_generator("ffhq")                          # registry name, official .pkl or our .npz
w = G.mapping(z, truncation_psi=0.7, truncation_cutoff=8)   # (N, 512) -> (N, 18, 512) float32
img = G.synthesis(w, noise="const")                 # -> (N, 1024, 1024, 3) float32, ~[-1, 1]
png = to_uint8(img)                                 # -> uint8 (N, 1024, 1024, 3)
```
Importing this package does not import Keras; running a generator does.
"""

from babygan.stylegan.config import GeneratorConfig
from babygan.stylegan.generator import Generator, read_npz, to_uint8, truncate
from babygan.stylegan.loading import load_generator, random_generator

__all__ = [
    "Generator",
    "GeneratorConfig",
    "load_generator",
    "random_generator",
    "read_npz",
    "to_uint8",
    "truncate",
]
