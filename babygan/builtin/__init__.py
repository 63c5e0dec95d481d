"""Model files that ship inside the babygan package (trained by babygan itself).

``attributes.keras`` (+ ``attributes.json``): the age / gender network of
``babygan.attributes``, trained on UTKFace (non-commercial research only).
"""
