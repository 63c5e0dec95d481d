"""dlib's face descriptor ResNet (150 px chip -> 128-D; one person within 0.6) in keras.ops.

An identity loss that needs no download: the network file ships in face_recognition_models.
Importing this package is cheap; Keras and dlib are imported when something runs.

    from babygan.identity import IdentityNet, describe
    net = IdentityNet()
    d = net.describe(chips)           # uint8 (N, 150, 150, 3) -> float32 (N, 128)
"""

from babygan.identity.net import IdentityNet, default_model_path, describe

__all__ = ["IdentityNet", "default_model_path", "describe"]
