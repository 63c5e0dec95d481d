"""Anime faces after GANs N' Roses, on babygan's own generator (Toonify-style layer swapping).

A copy of the photo model's synthesis is fine-tuned on anime faces with its mapping and its
coarse layers frozen, so that both models draw the same layout (pose, face shape, hair outline)
from one code. A photo's (or a predicted child's) code then goes through the anime model: the
coarse layers keep where things are; the fine layers, from ``swap_layer`` on, take the photo's
own code (the default take) or random codes of the mapping (the other styles).

- ``babygan.anime.model``: the anime model file (which base it belongs to, where the swap is);
- ``babygan.anime.stylize``: ``AnimeStylizer``, codes -> anime images, the takes
  (``Session.anime`` holds one, loaded once);
- ``babygan.anime.photo``: ``anime_photo`` (a photo's face and its styles), ``write_anime``
  (photo and clip results written all or nothing);
- ``babygan.anime.clip``: ``anime_clip``, a video clip or GIF frame by frame, without flicker.
"""
