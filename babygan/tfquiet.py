"""Import TensorFlow without its C++ start-up chatter on the terminal.

TensorFlow 2.2x prints oneDNN notes, CPU-instruction notes and "no CUDA driver"
lines straight to file descriptor 2 while it loads, before its own log settings
apply (TF_CPP_MIN_LOG_LEVEL no longer silences them). We capture descriptor 2
during the import and replay every line that is not such a note, so real errors
still show. Set BABYGAN_TF_VERBOSE=1 to see everything.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

# Informational start-up lines: absl's preamble, I/W-level C++ logs, the CPU-feature
# hint, and the CUDA probe failing on a machine that simply has no GPU.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} "
    r"|E\d{4} .*(cuInit|cuda_platform|cuda_dnn|cuda_fft|cuda_blas|Unable to register)"
    r"|To enable the following instructions:"
    r"|\s*$)"
)


def import_tensorflow_quietly() -> None:
    """Import tensorflow and keras and probe the devices once, hiding the start-up notes.

    Logs (logger "babygan") whether a GPU was found.
    """
    if "tensorflow" in sys.modules or os.environ.get("BABYGAN_TF_VERBOSE"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401  (loads more native libraries, which print too)
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")  # the CUDA probe prints too
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                if not _NOISE.match(line):
                    print(line, file=sys.stderr)
    names = ", ".join(g.name for g in gpus)
    logging.getLogger("babygan").info(f"TensorFlow: running on {'GPU ' + names if gpus else 'the CPU'}")
