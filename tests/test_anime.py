"""babygan anime (babygan/anime): photos and clips drawn by an anime model, on tiny models.

The base is a tiny 32 px generator with E; its anime model is the same weights with the fine
layers (>= SWAP) and ToRGB perturbed, written with save_anime_model, so the two differ where an
anime model would. The clips are made here from a real face photo, small.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_path
from PIL import Image
from pipeline_fixtures import FAST_ENCODER, make_photos
from tiny_generator import tiny_generator

from babygan.cli import main

SWAP = 4  # of the tiny model's 8 W+ layers


def _fine(name: str) -> bool:
    if name.startswith("synthesis.torgb"):
        return True
    if name.startswith("synthesis.layer"):
        return int(name.split(".")[1].removeprefix("layer")) >= SWAP
    return False


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from babygan.anime.model import save_anime_model
    from babygan.models import sha256_file

    folder = tmp_path_factory.mktemp("anime")
    found = {"folder": folder}
    for name, seed in (("base", 0), ("other", 1)):
        G = tiny_generator(seed, image_encoder=True)
        found[name] = G.save(folder / f"{name}.npz")
        G.source_sha256 = sha256_file(found[name])  # as load_generator reads it from the file
        rng = np.random.default_rng(seed + 10)
        params = {
            n: a + rng.standard_normal(a.shape).astype(np.float32) * 0.5 if _fine(n) else a
            for n, a in G.params.items()
        }
        found[f"{name}_anime"] = save_anime_model(folder / f"{name}_anime.npz", G, params, swap_layer=SWAP)
    found["photo"], _ = make_photos(folder)
    return found


def _run(args, ok=True):
    result = CliRunner().invoke(main, ["anime", *(str(a) for a in args)])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _models(tiny, anime="base_anime"):
    return ["--model", tiny["base"], "--anime-model", tiny[anime], *FAST_ENCODER]


def _rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def _face_clip(count: int, blank: tuple[int, ...] = ()) -> list[np.ndarray]:
    """uint8 (224, 224, 3) frames: a real face sliding 2 px a frame; ``blank`` frames are grey."""
    face = Image.open(shared_path("faces", "family_father.jpg")).convert("RGB").resize((192, 192))
    frames = []
    for k in range(count):
        canvas = Image.new("RGB", (224, 224), (90, 90, 90))
        if k not in blank:
            canvas.paste(face, (2 * k, 16))
        frames.append(np.asarray(canvas))
    return frames


# --------------------------------------------------------------------------- the library


def test_stylizer_swaps_the_fine_layers_and_takes_keep_their_order(tiny):
    from babygan.anime.model import load_anime_model
    from babygan.anime.stylize import AnimeStylizer
    from babygan.errors import ModelFileError
    from babygan.stylegan import load_generator, to_uint8

    base = load_generator(tiny["base"])
    stylizer = AnimeStylizer(base, load_anime_model(tiny["base_anime"], base))
    L, D = stylizer.shape
    w = base.mapping(np.random.default_rng(0).standard_normal((2, base.z_dim)).astype(np.float32))
    codes = stylizer.style_codes(3, seed=7)
    assert codes.shape == (3, L, D) and codes.dtype == np.float32
    # code k: (seed, k) only; float rounding apart, as the mapping's matrix product may block a
    # batch of 2 and one of 3 differently (an AVX2 CPU: one ulp)
    np.testing.assert_allclose(stylizer.style_codes(2, seed=7), codes[:2], rtol=1e-6, atol=1e-7)
    mixed = stylizer.mix(w, codes[:2])
    assert np.array_equal(mixed[:, :SWAP], w[:, :SWAP]) and np.array_equal(mixed[:, SWAP:], codes[:2, SWAP:])
    own = stylizer.render(w)
    assert own.dtype == np.uint8 and own.shape == (2, 32, 32, 3)
    assert np.array_equal(own, stylizer.render(w))  # stored noise: repeatable
    assert not np.array_equal(own, to_uint8(base.synthesis(w)))  # the anime weights draw it
    takes = stylizer.takes(w[0], 3, seed=7)
    assert takes.shape == (3, 32, 32, 3)
    assert np.array_equal(stylizer.takes(w[0], 2, seed=7), takes[:2])
    assert not np.array_equal(takes[0], takes[1])
    other = load_generator(tiny["other"])
    with pytest.raises(ModelFileError, match="tuned from another model"):
        AnimeStylizer(other, load_anime_model(tiny["base_anime"], base))


def test_the_default_take_pulls_only_the_fine_layers_toward_the_average(tiny):
    from babygan.anime.model import load_anime_model
    from babygan.anime.stylize import AnimeStylizer
    from babygan.stylegan import load_generator

    base = load_generator(tiny["base"])
    anime = load_anime_model(tiny["base_anime"], base)
    w = base.mapping(np.random.default_rng(3).standard_normal((2, base.z_dim)).astype(np.float32))
    as_is = AnimeStylizer(base, anime, own_psi=1.0)
    assert np.array_equal(as_is.render(w), as_is.render(w, w))  # psi 1: the face's own code
    flat = AnimeStylizer(base, anime, own_psi=0.0)
    styles = flat.own_styles(w)
    assert np.allclose(styles, np.broadcast_to(base.dlatent_avg, w.shape))
    assert np.array_equal(flat.render(w), flat.render(w, styles))
    half = AnimeStylizer(base, anime, own_psi=0.5).render(w)
    assert not np.array_equal(half, as_is.render(w)) and not np.array_equal(half, flat.render(w))
    with pytest.raises(ValueError, match="own_psi"):
        AnimeStylizer(base, anime, own_psi=1.5)


def test_smoothing_is_centred_and_gaps_keep_the_previous_code():
    from babygan.anime.clip import fill_gaps, smooth

    x = np.arange(20, dtype=np.float64)[:, None]
    assert np.allclose(smooth(x, 1.5)[5:15], x[5:15])  # a steady motion is not delayed (no lag)
    noisy = x + np.random.default_rng(0).standard_normal(x.shape)
    assert np.abs(smooth(noisy, 1.5) - x).mean() < np.abs(noisy - x).mean()
    found = np.array([False, True, True, False, False, True])
    codes = np.arange(6, dtype=np.float64)
    assert fill_gaps(codes, found).tolist() == [1, 1, 2, 2, 2, 5]


# --------------------------------------------------------------------------- the command


def test_a_photo_and_a_gif_clip(tiny, tmp_path):
    import imageio.v2 as iio  # noqa: F401  (the mp4 extra is installed where these tests run)

    frames = _face_clip(12)
    gif = tmp_path / "talk.gif"
    pils = [Image.fromarray(f) for f in frames]
    pils[0].save(gif, save_all=True, append_images=pils[1:], duration=100, loop=0)  # 10 fps
    out = tmp_path / "out"
    res = _run([tiny["photo"], gif, "-o", out, *_models(tiny)])
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_anime.png", "talk_anime.gif"]
    image = _rgb(out / "astronaut_anime.png")
    assert image.shape == (256, 256, 3)
    with Image.open(out / "talk_anime.gif") as im:
        assert im.n_frames == 12 and im.size == (256, 256)
        assert im.info["duration"] == 100
    assert "talk.gif: 12 frames, a face in 12, 0 kept the previous code, 10 fps" in res.output


def test_styles_are_repeatable_by_seed(tiny, tmp_path):
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        _run([tiny["photo"], "--styles", 3, "--seed", seed, "-o", tmp_path / name, *_models(tiny)])
        runs[name] = tmp_path / name
    takes_names = [f"astronaut_anime_{k}.png" for k in (1, 2, 3)]
    names = ["astronaut_anime.png", *takes_names, "astronaut_anime_sheet.png"]
    assert sorted(p.name for p in runs["a"].iterdir()) == sorted(names)
    takes = [_rgb(runs["a"] / f"astronaut_anime_{k}.png") for k in (1, 2, 3)]
    assert all(t.shape == (256, 256, 3) for t in takes)
    assert not np.array_equal(takes[0], takes[1]) and not np.array_equal(takes[1], takes[2])
    for name in names:  # same seed: the same files, byte for byte
        assert (runs["a"] / name).read_bytes() == (runs["b"] / name).read_bytes(), name
    assert np.array_equal(_rgb(runs["a"] / names[0]), _rgb(runs["c"] / names[0]))  # own code: no seed
    assert not np.array_equal(takes[0], _rgb(runs["c"] / "astronaut_anime_1.png"))
    assert _rgb(runs["a"] / "astronaut_anime_sheet.png").shape[1] > 256 * 5


def test_an_mp4_with_faceless_frames_keeps_its_length_and_counts_them(tiny, tmp_path):
    import imageio.v2 as iio

    from babygan.render import save_mp4

    clip = save_mp4(tmp_path / "walk.mp4", _face_clip(12, blank=(0, 6, 7)), fps=12)
    out = tmp_path / "out"
    res = _run([clip, "--seed", 3, "-o", out, *_models(tiny)])
    assert "walk.mp4: 12 frames, a face in 9, 3 kept the previous code, 12 fps" in res.output
    reader = iio.get_reader(out / "walk_anime.mp4", format="FFMPEG")
    try:
        assert reader.get_meta_data()["fps"] == 12
        assert sum(1 for _ in reader) == 12
    finally:
        reader.close()


# --------------------------------------------------------------------------- errors


def _fails(res, *words):
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert res.exit_code == 1 and len(errors) == 1, res.output + repr(res.exception)
    assert "Traceback" not in res.output
    for word in words:
        assert word in errors[0], errors[0]


def test_errors_are_one_line_and_leave_nothing(tiny, tmp_path):
    out = tmp_path / "out"
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is no video " * 64)
    cases = [
        ([bad, *_models(tiny)], ["broken.mp4", "cannot read the clip"]),
        ([tiny["photo"], "--styles", 0, *_models(tiny)], ["--styles 0"]),
        ([tiny["photo"], "--styles", 17, *_models(tiny)], ["--styles 17"]),
        ([bad, "--styles", 2, *_models(tiny)], ["broken.mp4", "one style"]),
        ([tiny["photo"], *_models(tiny, "other_anime")], ["other_anime.npz", "tuned from another model"]),
        ([tiny["photo"], "--model", tiny["base"], *FAST_ENCODER], [f"no anime model for {tiny['base']}"]),
    ]
    for args, words in cases:
        _fails(_run([*args, "-o", out], ok=False), *words)
        assert not out.exists(), args


def test_a_photo_with_no_face_after_one_that_worked_leaves_nothing(tiny, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dogs = shared_path("faces", "no_face_dogs.jpg")
    _fails(_run([tiny["photo"], dogs, "-o", out, *_models(tiny)], ok=False), "no face found")
    assert list(out.iterdir()) == []


def test_the_builtin_model_without_its_anime_file_says_so(tmp_path, monkeypatch):
    from babygan import builtin
    from babygan.errors import ModelFileError
    from babygan.session import Session

    missing = tmp_path / "babygan-anime.npz"
    monkeypatch.setattr(builtin, "builtin_anime_path", lambda: missing)
    if not builtin.builtin_present():
        pytest.skip("this build has no built-in model")
    with pytest.raises(ModelFileError, match="babygan's anime model is not in this build"):
        _ = Session("builtin").anime
