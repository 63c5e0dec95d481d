"""``babygan learn-directions``: age and gender directions of a generator, from the attribute model."""

from __future__ import annotations

from pathlib import Path

import click

from babygan.align import Crop
from babygan.attributes import AttributeModel
from babygan.cli.options import model_option, offline_option, output_dir_option, quiet_option
from babygan.directions_fit import adapt_scorer, fit_directions, save_directions
from babygan.models import cached_sha256
from babygan.stylegan import load_generator


@click.command("learn-directions")
@model_option("Generator: registry name, official StyleGAN .pkl or babygan .npz.")
@output_dir_option("Folder for age.npy, gender.npy and directions.json.")
@click.option(
    "--samples",
    default=2000,
    show_default=True,
    type=click.IntRange(min=16),
    help="Faces sampled and scored for the fit.",
)
@click.option(
    "--truncation-psi", default=0.7, show_default=True, type=float, help="Truncation of the samples."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the samples.")
@click.option(
    "--attributes",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Attribute model (.keras); default: the one shipped with babygan.",
)
@click.option(
    "--layers",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Layers the age direction is calibrated on (babygan shifts the first 8).",
)
@click.option("--no-calibrate", is_flag=True, help="Scale the age direction by the regression alone.")
@offline_option("Never download; fail when the generator file is missing.")
@quiet_option("No progress bar.")
def learn_directions(
    model: str,
    output_dir: Path,
    samples: int,
    truncation_psi: float,
    seed: int,
    attributes: Path | None,
    layers: int,
    no_calibrate: bool,
    offline: bool,
    quiet: bool,
) -> None:
    """Learn age and gender directions of a generator (InterFaceGAN-style, in W).

    Samples faces, scores them with the attribute model, fits linear models in W and
    writes (layers, 512) float32 age.npy and gender.npy, usable with --directions.
    Units: age coeff 1 = 5 years younger (BabyGAN's --age scale); gender coeff 1 = one
    standard deviation of the samples, positive = more female.
    """
    from tqdm import tqdm

    scorer = AttributeModel.load(attributes)
    G = load_generator(model, offline=offline)
    info = getattr(G, "info", None) or {}
    gen_scale = Crop.from_dict(info.get("crop"), str(model)).scale  # none recorded: FFHQ's own crop
    attr_scale = scorer.crop.scale if scorer.crop is not None else gen_scale
    with tqdm(total=samples, desc="scoring", unit="face", disable=quiet, leave=False) as bar:
        fitted = fit_directions(
            G,
            adapt_scorer(scorer.predict, gen_scale, attr_scale),
            samples,
            truncation_psi=truncation_psi,
            seed=seed,
            calibrate=not no_calibrate,
            layers=layers,
            progress=bar.update,
        )
    attr_path = scorer.path or Path("?")
    extra = {
        "generator": {"model": model, "sha256": getattr(G, "source_sha256", None)},
        "attribute_model": {"path": str(attr_path), "sha256": cached_sha256(attr_path)},
        "crops": {"generator_scale": gen_scale, "attribute_scale": attr_scale},
    }
    written = save_directions(fitted, output_dir, extra)
    rep = fitted.report
    click.echo(
        f"age: R^2 {rep['age']['r2']:.2f}; gender: accuracy {rep['gender']['accuracy']:.2f}; "
        f"wrote {', '.join(p.name for p in written)} to {output_dir}"
    )
