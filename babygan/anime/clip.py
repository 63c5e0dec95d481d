"""A clip (video or GIF) as anime, frame by frame, without flicker.

    result = anime_clip("talk.mp4", session)            # one face per frame, tracked
    files = result.files()                               # {"talk_anime.mp4": writer}

Per frame: dlib's landmarks of the face (the first frame's largest face, then in each frame the
one nearest the last), the model's crop, E's feed-forward code (no per-frame optimisation: the
encoder's steps cost seconds a frame), the anime model's render. Two things flicker in a clip
and are smoothed over time: the landmarks (the crop would shake by a pixel or two a frame) and
E's codes (it reads each frame alone). Both get a centred Gaussian moving average
(``SMOOTH_SECONDS``): the clip is whole, not live, so the filter can look ahead as much as
back and lags nothing (an EMA would trail a face that moves, and the crop with it); at the
clip's ends the weights are renormalised over the frames there are. A frame with no face keeps
the previous frame's code (faceless frames at the start take the first one found), before the
codes are smoothed, so the face holds still through the gap and returns without a jump.

Frames are read twice (landmarks first, then crops), never all held; the rendered frames are
held (uint8 (T, S, S, 3)) until written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageSequence

from babygan import render
from babygan.errors import BabyganError, first_line

if TYPE_CHECKING:
    from babygan.align import Face
    from babygan.session import Session

#: suffixes read through imageio's ffmpeg plugin; GIFs through Pillow
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".avi", ".mkv")
CLIP_SUFFIXES = (*VIDEO_SUFFIXES, ".gif")
#: sigma of the temporal smoothing of landmarks and codes, in seconds (2 frames at 25 fps)
SMOOTH_SECONDS = 0.08
#: frames aligned / encoded / rendered together
BATCH = 16
#: a GIF frame without a delay is shown for 100 ms by browsers
GIF_DEFAULT_MS = 100.0


def is_clip(path: str | Path) -> bool:
    """Whether ``path`` names a clip (by its suffix) rather than a photo."""
    return Path(path).suffix.lower() in CLIP_SUFFIXES


def output_name(path: str | Path) -> str:
    """``<stem>_anime.gif`` for a GIF, ``<stem>_anime.mp4`` for any video."""
    path = Path(path)
    return f"{path.stem}_anime{'.gif' if path.suffix.lower() == '.gif' else '.mp4'}"


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Clip:
    """A readable clip: its frames on demand (read again on each call) and its frame rate."""

    path: Path
    fps: float
    frame_hint: int | None  # the frame count the file announces (a guess for videos), for progress

    @property
    def is_gif(self) -> bool:
        return self.path.suffix.lower() == ".gif"

    def frames(self) -> Iterator[np.ndarray]:
        """Each frame, uint8 (H, W, 3) RGB; a read error is a one-line BabyganError naming the file."""
        try:
            if self.is_gif:
                with Image.open(self.path) as im:
                    for frame in ImageSequence.Iterator(im):
                        yield np.asarray(frame.convert("RGB"))
            else:
                import imageio.v2 as iio

                reader = iio.get_reader(self.path, format="FFMPEG")
                try:
                    for frame in reader:
                        yield np.ascontiguousarray(np.asarray(frame)[..., :3], np.uint8)
                finally:
                    reader.close()
        except BabyganError:
            raise
        except Exception as exc:  # a decoder's error of any kind: the file, one line
            raise BabyganError(f"{self.path}: cannot read the clip ({first_line(exc)})") from exc


def open_clip(path: str | Path) -> Clip:
    """The clip at ``path`` with its fps (the video's metadata; a GIF's mean frame delay), or a
    one-line BabyganError naming the file when it cannot be opened."""
    path = Path(path)
    if not path.is_file():
        raise BabyganError(f"{path}: no such file")
    if path.suffix.lower() not in CLIP_SUFFIXES:
        raise BabyganError(f"{path}: not a clip (babygan reads {', '.join(CLIP_SUFFIXES)})")
    try:
        if path.suffix.lower() == ".gif":
            with Image.open(path) as im:
                if im.format != "GIF":
                    raise BabyganError(f"{path}: not a GIF file ({im.format})")
                delays = [float(f.info.get("duration") or GIF_DEFAULT_MS) for f in ImageSequence.Iterator(im)]
            return Clip(path, 1000.0 / float(np.mean(delays)), len(delays))
        if not render.mp4_available():
            raise BabyganError(
                f"{path}: reading video needs imageio-ffmpeg, which is not installed; "
                "run: pip install 'babygan[mp4]'"
            )
        import imageio.v2 as iio

        reader = iio.get_reader(path, format="FFMPEG")
        try:
            meta = reader.get_meta_data()
        finally:
            reader.close()
    except BabyganError:
        raise
    except Exception as exc:  # not a video, truncated, unknown codec...
        raise BabyganError(f"{path}: cannot read the clip ({first_line(exc)})") from exc
    fps = float(meta.get("fps") or 0)
    if not (math.isfinite(fps) and fps > 0):
        raise BabyganError(f"{path}: the clip records no frame rate")
    count = meta.get("nframes")
    hint = int(count) if isinstance(count, int | float) and math.isfinite(count) else None
    return Clip(path, fps, hint)


# --------------------------------------------------------------------------- smoothing


def smooth(values: np.ndarray, sigma: float, present: np.ndarray | None = None) -> np.ndarray:
    """A centred Gaussian moving average over the first axis: (T, ...) -> float64 (T, ...).

    sigma: in frames (<= 0: none). present: (T,) bool, the frames that hold a value: only they
    are averaged (each over the present frames within 3 sigma, weights renormalised), the
    others are returned as they were.
    """
    values = np.asarray(values, np.float64)
    T = len(values)
    present = np.ones(T, bool) if present is None else np.asarray(present, bool)
    out = values.copy()
    if sigma <= 0 or T == 0:
        return out
    radius = max(1, math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    clean = np.where(present.reshape((T,) + (1,) * (values.ndim - 1)), values, 0.0)
    for t in np.flatnonzero(present):
        lo, hi = max(0, t - radius), min(T, t + radius + 1)
        weights = kernel[lo - t + radius : hi - t + radius] * present[lo:hi]
        out[t] = np.tensordot(weights, clean[lo:hi], axes=1) / weights.sum()
    return out


def fill_gaps(codes: np.ndarray, found: np.ndarray) -> np.ndarray:
    """(T, ...) with each frame not ``found`` given the previous found frame's value (leading
    ones the first found value). ``found``: (T,) bool, at least one True."""
    found = np.asarray(found, bool)
    first = int(np.argmax(found))
    source = np.maximum.accumulate(np.where(found, np.arange(len(found)), first))
    return codes[source]


# --------------------------------------------------------------------------- the clip as anime


@dataclass
class AnimeClip:
    """A clip drawn as anime, ready to write (:meth:`files`)."""

    source: Path
    frames: np.ndarray  # uint8 (T, size, size, 3), T = the clip's frame count
    fps: float
    faces_found: int  # frames where a face was found
    kept: int  # frames without a face, which kept the previous code
    dlatents: np.ndarray  # (T, L, w_dim) float32, the smoothed codes (before any style)
    style_seed: int | None  # None: the face's own code in the fine layers too

    @property
    def name(self) -> str:
        return output_name(self.source)

    def files(self) -> dict[str, Callable[[Path], Any]]:
        """``{file name: write(path)}``: the anime clip, with the input's frame count and fps
        (a GIF: Pillow merges identical consecutive frames, their delays added)."""
        if self.source.suffix.lower() == ".gif":
            return {self.name: lambda path: render.save_gif(path, list(self.frames), self.fps)}
        return {self.name: lambda path: render.save_mp4(path, list(self.frames), self.fps)}

    def summary(self, path: str | Path | None = None) -> str:
        where = f" -> {path}" if path is not None else ""
        return (
            f"{self.source}: {len(self.frames)} frames, a face in {self.faces_found}, "
            f"{self.kept} kept the previous code, {self.fps:g} fps{where}"
        )


def _centre(face: Face) -> np.ndarray:
    left, top, right, bottom = face.box
    return np.array([(left + right) / 2, (top + bottom) / 2], np.float64)


def _track(faces: list[Face], last: Face | None) -> Face | None:
    """The face to follow: the largest at first, then the one nearest the last one followed."""
    if not faces:
        return None
    if last is None:
        return max(faces, key=lambda f: f.area)
    return min(faces, key=lambda f: float(np.hypot(*(_centre(f) - _centre(last)))))


def _bar(progress: bool, total: int | None, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False)


def find_landmarks(clip: Clip, *, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pass one: ((T, 68, 2) float64 landmarks in frame pixels, NaN where no face; (T,) bool found)."""
    from babygan.align import detect_faces

    marks: list[np.ndarray] = []
    last = None
    with _bar(progress, clip.frame_hint, "finding faces") as bar:
        for frame in clip.frames():
            face = _track(detect_faces(frame, 1), last)
            last = face or last
            marks.append(np.full((68, 2), np.nan) if face is None else face.landmarks)
            bar.update()
    found = np.array([np.isfinite(m).all() for m in marks], bool)
    return (np.stack(marks) if marks else np.zeros((0, 68, 2))), found


def anime_clip(
    path: str | Path,
    session: Session | None = None,
    *,
    style_seed: int | None = None,
    size: int | None = None,
) -> AnimeClip:
    """Draw every frame's face of the clip at ``path`` as anime (see the module's notes).

    style_seed: one style for the whole clip, ``session.anime.style_codes(1, style_seed)``;
    None: the face's own code (the plain anime rendering). size: side of the written frames
    (default: the model's resolution, at least 256, as a child's image). Progress bars follow
    ``session.progress``. One-line BabyganErrors: the clip cannot be read or has no frames, no
    face in any frame, a model without E or without an anime model.
    """
    from babygan.align import align_image
    from babygan.pipeline import SHOWN_MIN
    from babygan.session import Session

    session = session or Session()
    clip = open_clip(path)
    if not clip.is_gif:
        render.require_mp4(output_name(clip.path))  # before the slow part
    stylizer = session.anime  # the anime model, or why there is none, before reading a frame
    G = session.generator
    if not G.has_encoder:
        raise BabyganError(
            f"{session.model}: the model carries no image encoder (E); a clip's frames are coded by E"
        )
    res, scale = int(G.resolution), session.crop.scale
    size = size or max(res, SHOWN_MIN)
    sigma = SMOOTH_SECONDS * clip.fps

    marks, found = find_landmarks(clip, progress=session.progress)
    T = len(found)
    if T == 0:
        raise BabyganError(f"{clip.path}: the clip has no frames")
    if not found.any():
        raise BabyganError(f"{clip.path}: no face found in any of its {T} frames")
    marks = smooth(marks, sigma, found)  # (T, 68, 2): the crop moves smoothly

    codes = np.zeros((T, G.num_layers, G.w_dim), np.float32)
    batch: list[tuple[int, np.ndarray]] = []

    def encode() -> None:
        faces = np.stack([face for _, face in batch])  # uint8 (B, res, res, 3)
        codes[[t for t, _ in batch]] = G.encode_faces(faces)
        batch.clear()

    read = 0
    with _bar(session.progress, T, "coding faces") as bar:
        for t, frame in enumerate(clip.frames()):
            read = t + 1
            if t >= T:
                break
            if found[t]:
                batch.append((t, align_image(frame, marks[t], res, crop_scale=scale)))
                if len(batch) == BATCH:
                    encode()
            bar.update()
    if read != T:  # a file that changed, or a decoder that does not give the same frames twice
        raise BabyganError(f"{clip.path}: read {T} frames, then {read}; the clip changed while read")
    if batch:
        encode()
    codes = smooth(fill_gaps(codes, found), sigma).astype(np.float32)  # (T, L, w_dim)

    styles = None if style_seed is None else stylizer.style_codes(1, style_seed)[0]
    frames = np.zeros((T, size, size, 3), np.uint8)
    with _bar(session.progress, T, "drawing") as bar:
        for start in range(0, T, BATCH):
            drawn = stylizer.render(codes[start : start + BATCH], styles)  # uint8 (B, res, res, 3)
            frames[start : start + len(drawn)] = [render.resize(im, size) for im in drawn]
            bar.update(len(drawn))
    return AnimeClip(clip.path, frames, clip.fps, int(found.sum()), int(T - found.sum()), codes, style_seed)
