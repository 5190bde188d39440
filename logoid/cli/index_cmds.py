"""build-index."""

from __future__ import annotations

from pathlib import Path

import click

from logoid import DEFAULT_MODEL, BuildOptions, LogoidError, build_index, create_embedder
from logoid.build.precision import build_precision, built_precision, eager_unless_it_freezes, frozen_by_default
from logoid.build.steps import augment_defaults, current_backend
from logoid.core.errors import ConfigError
from logoid.engine.embedder import resolve_precision, split_precision
from logoid.index.descriptor_structure import DescriptorConfig
from logoid.index.milvus import MilvusConfig
from logoid.index.vectors import IndexConfig

from ._common import emit_json, json_option, pass_state, progress, warn, writes


@click.command("build-index")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Model name (see `logoid models`) or checkpoint.")
@click.option("--variants", type=int, default=None, help="Augmented variants per image, original included (default 20).")
@click.option("--seed", type=int, default=None, help="Augmentation seed (default 0).")
@click.option("--augment-size", type=click.IntRange(min=16), default=None,
              help="Long side of the augmented variants in px (default: the size the home's index was built with, "
                   "else 224, the default model's input side).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default=None,
              help="Image tower arithmetic while embedding the references (default: the home's index's, else auto). "
                   "auto = bf16 autocast on a CPU that computes bf16 natively (~2.5x fp32 there; a vector's cosine "
                   "to its fp32 twin averages 0.998) or on a GPU, fp32 elsewhere. Queries are embedded in fp32.")
@click.option("--frozen-tower/--eager-tower", default=None,
              help="Run the image tower traced and frozen by TorchScript (default: the home's index's, else frozen "
                   "on a CPU): 1.44-1.51x the eager bf16 forward pass on this project's CPU (a 180k build 6.4-7.7 h "
                   "against 9.2-9.9 h). fp32: the eager vectors to rounding; bf16: a mean cosine of 0.9956 to fp32 against "
                   "eager bf16's 0.9982. Its own cache; the index records it and add-band embeds alike. "
                   "--eager-tower: for a model TorchScript cannot trace.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes augmenting the references and extracting their local features (default: the cores; "
                   "1 = in this process).")
@click.option("--no-local", is_flag=True, help="Skip local features (global embedding and text only).")
@click.option("--no-names", is_flag=True, help="Skip the name index used by the text channel.")
@click.option("--prototypes", is_flag=True, help="Index one mean vector per image instead of every variant.")
@click.option("--factory", default=None, help='FAISS index_factory string, e.g. "IVF4096,Flat" (default: by size).')
@click.option("--nprobe", type=int, default=None, help="IVF lists visited per query (default 32; more = better recall).")
@click.option("--ef-search", type=int, default=None, help="HNSW efSearch of the IVF coarse quantiser (default 64).")
@click.option("--memory-budget-mb", type=float, default=None,
              help="RAM for the vector index; over it the index is compressed (IVF-PQ, re-ranked from disk).")
@click.option("--rerank-budget-mb", type=click.FloatRange(min=0), default=None,
              help="Local features (FAISS): re-rank descriptor hits by their SQ8 copies only while they fit this many "
                   "MB (default 4096: re-ranked up to ~60k references, not at the 180k roster; 0 = never).")
@click.option("--backend", type=click.Choice(["faiss", "milvus"]), default=None,
              help="Where the global vectors and local descriptors live (default: the current index's backend, else faiss).")
@click.option("--uri", default=None,
              help="Milvus: a Milvus Lite file (*.db) or http://host:19530 (default: the current index's, else "
                   "milvus.db in the home). A server token is read from LOGOID_MILVUS_TOKEN.")
@click.option("--milvus-index", type=click.Choice(["auto", "FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8"], case_sensitive=False),
              default="auto", show_default=True, help="Milvus index type (auto: FLAT on Milvus Lite, HNSW on a server).")
@json_option
@pass_state
@writes
def build_index_cmd(state, model, variants, seed, augment_size, precision, frozen_tower, workers, no_local, no_names,
                    prototypes, factory, rerank_budget_mb, backend, uri, milvus_index, as_json, nprobe, ef_search,
                    memory_budget_mb):
    """Augment, embed and index every catalog image (cached: a rebuild only embeds what changed)."""
    cat = state.catalog
    if not cat.images() and not cat.list_bands() and not cat.list_albums():
        raise LogoidError(f"the catalog in {state.home.root} is empty",
                          "add bands with `logoid add-band` or `logoid catalog import`; try `make demo`")
    embedder = create_embedder(model)
    run_in = build_precision(state.home, embedder.device, precision, frozen_tower)
    aug = augment_defaults(state.home)
    aug.size = augment_size or aug.size
    if variants is not None:
        aug.n_variants = variants
    if seed is not None:
        aug.seed = seed
    opts = BuildOptions(augment=aug, with_local=not no_local, with_names=not no_names, prototypes=prototypes,
                        index=IndexConfig(factory=factory, **{k: v for k, v in (("nprobe", nprobe), (
                            "ef_search", ef_search), ("memory_budget_mb", memory_budget_mb)) if v is not None}),
                        milvus=_milvus_config(state, backend, uri, milvus_index),
                        precision=run_in,
                        workers=workers, descriptors=None if rerank_budget_mb is None else
                        DescriptorConfig(rerank_budget_mb=rerank_budget_mb))
    # After every flag is checked (a bad --uri fails before the model loads): the frozen tower by default, if it traces.
    if frozen_by_default(state.home, embedder.device, frozen_tower):
        run_in, why = eager_unless_it_freezes(embedder, resolve_precision(run_in, embedder.device))
        opts.precision = run_in
        if why:
            warn(f"{why} (--eager-tower skips this check)")
    _warn_precision_change(state.home, run_in, embedder.device, precision, frozen_tower)
    report = build_index(state.home, cat, embedder, opts, progress=stage_bar,
                         on_skip=lambda p, r: warn(f"skipping {p}: {r}"))
    if as_json:
        emit_json(report.to_dict())
        return
    for w in report.warnings:
        warn(w)
    click.echo(
        f"indexed {report.images} images → {report.vectors} vectors "
        f"({report.embedded} embedded, {report.cached} from cache), {report.descriptors} local descriptors "
        f"({report.features_extracted} images extracted, {report.features_cached} from cache), "
        f"{report.names} names in {report.seconds:.1f}s; skipped {len(report.skipped)}"
    )
    where = report.backend
    click.echo(f"index: {state.home.index_dir}" + (f" (global vectors: Milvus {where.get('uri')}, collection "
                                                   f"{where.get('collection')})" if where.get("kind") == "milvus" else ""))


def stage_bar(desc: str, total: int, unit: str):
    """A tqdm bar on stderr for one stage of a build (rate and ETA: the stage's total is known)."""
    return progress(None, desc, total=total, unit=unit)


def _milvus_config(state, backend: str | None, uri: str | None, index_type: str):
    """The Milvus config to build with, or None for FAISS; unset flags keep the current index's choice."""
    current = current_backend(state.home)
    if backend is None:
        backend = "milvus" if (current is not None or uri) else "faiss"
    if backend == "faiss":
        if uri:
            raise click.UsageError("--uri is for --backend milvus")
        return None
    cfg = MilvusConfig.from_dict(current.to_dict()) if current is not None else MilvusConfig()
    uri = _lite_path(uri, state.home.root) if uri and "://" not in uri else uri
    if uri and uri != cfg.uri:
        cfg.uri, cfg.index_type = uri, None  # another place: choose its index type afresh
    if index_type.lower() != "auto":
        cfg.index_type = index_type.upper()
    resolved = cfg.resolved_uri(state.home.root)  # a bad Lite file name fails before any embedding
    if "://" in resolved:  # so does an unreachable server (a Lite file is opened by the build itself)
        from logoid.index.milvus import connect

        connect(resolved)
    return cfg


def _lite_path(uri: str, home: Path) -> str:
    """A Milvus Lite file given on the command line: relative to the working folder, kept relative to the home
    when inside it (so a moved home still finds it)."""
    p = Path(uri).expanduser().resolve()
    try:
        return str(p.relative_to(home.expanduser().resolve()))
    except ValueError:
        return str(p)


def _warn_precision_change(home, precision: str, device: str, base: str | None, frozen: bool | None) -> None:
    """Say before it starts that a build in another precision or tower than the home's index (the flags ``base`` and
    ``frozen`` asked for it, or the index's cannot run here) embeds every reference again."""
    old, new = built_precision(home), resolve_precision(precision, device)
    if old is None or old == new:
        return
    try:
        resolve_precision(old, device)
    except ConfigError:
        why = f"{old} does not run on {device}"
    else:
        flags = []
        if base is not None and split_precision(new)[0] != split_precision(old)[0]:
            flags.append("--precision")
        if frozen is not None and frozen != split_precision(old)[1]:
            flags.append("--frozen-tower" if frozen else "--eager-tower")
        why = f"leave out {' and '.join(flags)} to keep it" if flags else f"it cannot run as {old} here"
    warn(f"the index in {home.root} was built in {old}; this build runs in {new}, so every reference is embedded "
         f"again ({why})")


COMMANDS = [build_index_cmd]
