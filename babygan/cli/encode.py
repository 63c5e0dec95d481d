"""``babygan encode``: photos -> StyleGAN dlatents (<stem>.npy) and renders (<stem>_reconstruction.png)."""

from __future__ import annotations

from pathlib import Path

import click

from babygan.cli.options import model_option, offline_option, quiet_option
from babygan.errors import BabyganError


@click.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path))
@model_option()
@click.option(
    "--output-dir",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write <stem>.npy and <stem>_reconstruction.png (created if needed).",
)
@click.option(
    "--iterations",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Optimisation steps per batch.",
)
@click.option(
    "--lr",
    default=0.25,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Initial learning rate (x0.9 every 4% of the iterations).",
)
@click.option(
    "--perceptual",
    default="vgg16",
    show_default=True,
    type=click.Choice(["vgg16", "pixel"]),
    help="vgg16: VGG16 features + pixel + MS-SSIM (needs the VGG16 weights file); "
    "pixel: pixel + MS-SSIM only.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the stochastic clipping.")
@click.option(
    "--batch-size",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images optimised together.",
)
@click.option(
    "--aligned",
    is_flag=True,
    help="The photos are aligned crops already: only resize them to the model's resolution.",
)
@click.option(
    "--estimator", help="Estimator file (.keras from `babygan train-estimator`) for the first guess."
)
@click.option(
    "--init",
    "init",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "estimator", "dlatent_avg"]),
    help="Start from the estimator's guess (auto: when one is available) or dlatent_avg.",
)
@click.option("--no-cache", is_flag=True, help="Encode again even when the latent cache has the result.")
@offline_option("Never download; fail when a model file is missing.")
@quiet_option("No progress bar.")
def encode(
    photos: tuple[Path, ...],
    model: str,
    output_dir: Path,
    iterations: int,
    lr: float,
    perceptual: str,
    seed: int,
    batch_size: int,
    aligned: bool,
    estimator: str | None,
    init: str,
    no_cache: bool,
    offline: bool,
    quiet: bool,
) -> None:
    """Encode aligned faces of PHOTOS into the generator's dlatents (L, 512).

    Writes OUTPUT_DIR/<stem>.npy (float32) and OUTPUT_DIR/<stem>_reconstruction.png.
    All photos are optimised together in batches; results are cached per aligned image.
    """
    stems = [p.stem for p in photos]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise BabyganError(
            f"{dupes[0]}: two photos share this name; their outputs would overwrite each other"
        )

    import numpy as np

    from babygan.atomic import atomic_path
    from babygan.encoder.files import encode_photos
    from babygan.encoder.settings import EncoderSettings
    from babygan.stylegan import load_generator

    settings = EncoderSettings(
        iterations=iterations,
        lr=lr,
        perceptual=perceptual,
        seed=seed,
        batch_size=batch_size,
        init=init,
        estimator=estimator,
    )
    G = load_generator(model, offline=offline)
    results = encode_photos(
        list(photos),
        G,
        settings,
        aligned=aligned,
        use_cache=not no_cache,
        offline=offline,
        progress=not quiet,
    )

    from PIL import Image

    output_dir.mkdir(parents=True, exist_ok=True)
    for item in results:
        npy = output_dir / f"{item.path.stem}.npy"
        png = output_dir / f"{item.path.stem}_reconstruction.png"
        with atomic_path(npy) as tmp:
            np.save(tmp, item.dlatents.astype(np.float32))
        with atomic_path(png) as tmp:
            Image.fromarray(item.reconstruction).save(tmp)
        click.echo(f"{item.path}: {npy} {png}")
