"""Time and memory of `babygan.align.align_photo` on a 12-megapixel and a 0.3-megapixel photo.

Both photos are made from scikit-image's astronaut (a real face), cropped to 4:3 and
resized to 4000x3000 and 640x480, saved as JPEG (quality 92). Each size runs in its
own process so that its peak RSS is its own. Prints JSON:

    python scripts/bench_align.py [--repeat 3] [--size 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {"12mp": (4000, 3000), "0.3mp": (640, 480)}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_photo(case: str, folder: Path) -> Path:
    import numpy as np
    from PIL import Image
    from skimage import data

    face = np.ascontiguousarray(data.astronaut()[:300, 56:456])  # (300, 400, 3), one face
    path = folder / f"astronaut_{case}.jpg"
    Image.fromarray(face).resize(CASES[case], Image.Resampling.LANCZOS).save(path, quality=92)
    return path


def run_case(case: str, repeat: int, size: int) -> dict:
    """In this process: load the models, then align the photo ``repeat`` times."""
    import numpy as np

    from babygan import align
    from babygan.photo import detection_pixels, load_photo

    with tempfile.TemporaryDirectory() as tmp:
        photo = make_photo(case, Path(tmp))
        rss_start = _peak_rss_mb()

        t0 = time.perf_counter()
        align.load_predictor()
        align.detect_faces(np.zeros((64, 64, 3), np.uint8))
        model_load_s = time.perf_counter() - t0
        rss_models = _peak_rss_mb()

        totals, cpu, stages = [], [], []
        for _ in range(repeat):
            c0 = time.process_time()
            t0 = time.perf_counter()
            image = load_photo(photo)
            t1 = time.perf_counter()
            pixels = detection_pixels(photo, image)
            faces = align.detect_faces(pixels)
            t2 = time.perf_counter()
            out = align.align_image(image, faces[0].landmarks, size)
            t3 = time.perf_counter()
            totals.append(t3 - t0)
            cpu.append(time.process_time() - c0)
            stages.append({"load_s": t1 - t0, "detect_s": t2 - t1, "crop_s": t3 - t2})
        assert out.shape == (size, size, 3) and len(faces) == 1

        # The same work through the public one-call API, as the encoder uses it.
        t0 = time.perf_counter()
        align.align_photo(photo, size)
        api_s = time.perf_counter() - t0

    best = min(range(repeat), key=lambda i: totals[i])
    return {
        "case": case,
        "photo": f"{image.shape[1]}x{image.shape[0]} ({image.shape[0] * image.shape[1] / 1e6:.2f} MP) JPEG",
        "output_size": size,
        "repeat": repeat,
        "model_load_s": round(model_load_s, 3),
        "per_photo_s_median": round(statistics.median(totals), 3),
        "per_photo_s_min": round(min(totals), 3),
        # CPU seconds (all threads): close to the wall time of an idle machine, as the
        # work is single-threaded; wall times above grow when other processes compete.
        "per_photo_cpu_s_median": round(statistics.median(cpu), 3),
        "align_photo_s": round(api_s, 3),
        "stages_s_of_fastest": {k: round(v, 3) for k, v in stages[best].items()},
        "peak_rss_mb_after_import": round(rss_start, 1),
        "peak_rss_mb_after_models": round(rss_models, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()

    if args.case:
        print(json.dumps(run_case(args.case, args.repeat, args.size)))
        return

    results = []
    for case in CASES:
        cmd = [
            sys.executable,
            __file__,
            "--case",
            case,
            "--repeat",
            str(args.repeat),
            "--size",
            str(args.size),
        ]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "results": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
