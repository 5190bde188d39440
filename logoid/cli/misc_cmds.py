"""models, augment preview, demo."""

from __future__ import annotations

from pathlib import Path

import click

from logoid import DEFAULT_MODEL, Identifier, answer_json, build_index, create_embedder, list_models
from logoid.cli.query_cmds import _fmt_answer, draw_answer

from ._common import emit_json, json_option, pass_state, progress, writes
from .eval_cmds import _calibrate_photos


@click.command("models")
@json_option
def models_cmd(as_json):
    """List the embedding models logoid can build."""
    names = list_models()
    if as_json:
        emit_json(names)
    else:
        click.echo("\n".join(names))
        click.echo("(also: any open_clip ARCH:TAG when this machine can download it, or a local checkpoint path)")


@click.group("augment")
def augment_group():
    """Look at the augmented variants logoid indexes."""


@augment_group.command("preview")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("variants.png"),
              show_default=True, help="Contact sheet to write.")
@click.option("--variants", type=int, default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def augment_preview(image, output, variants, seed):
    """Write a contact sheet of IMAGE's augmented variants."""
    from logoid.augment import AugmentConfig, preview

    cfg = AugmentConfig(n_variants=variants, seed=seed)
    preview(image, cfg, output)
    click.echo(f"wrote {output}")


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo logos and photos are written (default: <home>/demo).")
@json_option
@pass_state
@writes
def demo_cmd(state, workdir, as_json):
    """Build the built-in demo catalog (real CC0 brand logos), index it, identify two demo photos."""
    from logoid.demo import build_demo_catalog, calibration_manifest, demo_assets

    workdir = workdir or state.home.root / "demo"
    cat = state.catalog
    build_demo_catalog(cat, workdir)
    assets = demo_assets(workdir)
    click.echo(f"demo catalog: {len(cat.list_bands())} logos from simple-icons in {state.home.root}", err=True)
    embedder = create_embedder(DEFAULT_MODEL)
    report = build_index(state.home, cat, embedder,
                         progress=lambda desc, total, unit: progress(None, desc, total=total, unit=unit))
    click.echo(f"indexed {report.images} images → {report.vectors} vectors in {report.seconds:.1f}s", err=True)
    manifest = calibration_manifest(workdir)
    cal = _calibrate_photos(state, manifest, None, "open_set_accuracy", 0.05, embedder=embedder)
    c = cal["calibration"]
    click.echo(f"calibrated on {cal['queries']} simulated photos (known and unknown icons): rule {c['rule']}, "
               f"threshold {c['threshold']:.3f}", err=True)
    ident = Identifier(state.home, cat, embedder=embedder)
    answers = [answer_json(ident.identify(p, find_all=True), 3) for p in (assets["known_photo"], assets["unknown_photo"])]

    drawn = workdir / "found.png"
    draw_answer(assets["known_photo"], answers[0], drawn)
    truth = {"known": assets["known_name"], "unknown": assets["unknown_name"]}
    if as_json:
        emit_json({"truth": truth, "answers": answers, "drawn": str(drawn)})
        return

    click.echo(f"two simulated photos: a printed {truth['known']} logo (in the catalog), and the {truth['unknown']} "
               "logo (not in the catalog, so the right answer is unknown):")
    for a in answers:
        click.echo(_fmt_answer(a, 3))
    click.echo(f"the first photo with the found logo outlined: {drawn}")


COMMANDS = [models_cmd, augment_group, demo_cmd]
