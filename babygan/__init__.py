"""babygan: predict a child's face from two parents' photos with StyleGAN."""

__version__ = "0.1.0"
