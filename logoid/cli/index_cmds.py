"""build-index, query, batch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click

from logoid import (
    DEFAULT_MODEL,
    BuildOptions,
    Identifier,
    IdentifyConfig,
    ImageError,
    LogoidError,
    answer_json,
    build_index,
    create_embedder,
    error_json,
)
from logoid.albums.answer import album_line
from logoid.build.steps import current_backend
from logoid.build.sync import index_health
from logoid.core.atomic import atomic_path
from logoid.core.imageio import load_image, scan_images
from logoid.index.milvus import MilvusConfig
from logoid.index.vectors import IndexConfig

from ._common import EXIT_USER, emit_json, json_option, pass_state, progress, reads, shown, warn, writes


def _channels(value: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in value.split(",") if c.strip())


def identifier(state, *, model=None, threshold=None, channels="global,local,text"):
    embedder = None
    if model:
        from logoid import create_embedder

        embedder = create_embedder(model)
    ident = Identifier(state.home, state.catalog, config=IdentifyConfig(channels=_channels(channels)),
                       embedder=embedder, threshold=threshold)
    _warn_unindexed(state, ident)
    return ident


def _warn_unindexed(state, ident) -> None:
    """One warning when catalog images are missing from the index (an interrupted write, an import)."""
    note = index_health(state.home, state.catalog, ident.store).warning()
    if note:
        warn(note)


def _query_options(f):
    f = click.option("--channels", default="global,local,text", show_default=True,
                     help="Evidence to use: any of global, local, text (comma-separated).")(f)
    f = click.option("--threshold", type=float, default=None,
                     help="Accept answers scoring at least this (default: the index's calibrated threshold).")(f)
    f = click.option("--model", default=None, help="Embedding model (default: the one that built the index).")(f)
    f = click.option("--all", "find_all", is_flag=True, help="Report every logo found in the photo.")(f)
    f = click.option("-k", "k", type=int, default=5, show_default=True, help="Candidates to show.")(f)
    return f


@click.command("build-index")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Model name (see `logoid models`) or checkpoint.")
@click.option("--variants", type=int, default=None, help="Augmented variants per image, original included (default 20).")
@click.option("--seed", type=int, default=None, help="Augmentation seed (default 0).")
@click.option("--no-local", is_flag=True, help="Skip local features (global embedding and text only).")
@click.option("--no-names", is_flag=True, help="Skip the name index used by the text channel.")
@click.option("--prototypes", is_flag=True, help="Index one mean vector per image instead of every variant.")
@click.option("--factory", default=None, help='FAISS index_factory string, e.g. "IVF4096,Flat" (default: by size).')
@click.option("--nprobe", type=int, default=None, help="IVF lists visited per query (default 32; more = better recall).")
@click.option("--ef-search", type=int, default=None, help="HNSW efSearch of the IVF coarse quantiser (default 64).")
@click.option("--memory-budget-mb", type=float, default=None,
              help="RAM for the vector index; over it the index is compressed (IVF-PQ, re-ranked from disk).")
@click.option("--backend", type=click.Choice(["faiss", "milvus"]), default=None,
              help="Where the global vectors live (default: the current index's backend, else faiss).")
@click.option("--uri", default=None,
              help="Milvus: a Milvus Lite file (*.db) or http://host:19530 (default: the current index's, else "
                   "milvus.db in the home). A server token is read from LOGOID_MILVUS_TOKEN.")
@click.option("--milvus-index", type=click.Choice(["auto", "FLAT", "HNSW", "IVF_FLAT"], case_sensitive=False),
              default="auto", show_default=True, help="Milvus index type (auto: FLAT on Milvus Lite, HNSW on a server).")
@json_option
@pass_state
@writes
def build_index_cmd(state, model, variants, seed, no_local, no_names, prototypes, factory, backend, uri, milvus_index,
                    as_json, nprobe, ef_search, memory_budget_mb):
    """Augment, embed and index every catalog image (cached: a rebuild only embeds what changed)."""
    from logoid.augment import AugmentConfig

    cat = state.catalog
    if not cat.images() and not cat.list_bands() and not cat.list_albums():
        raise LogoidError(f"the catalog in {state.home.root} is empty",
                          "add bands with `logoid add-band` or `logoid catalog import`; try `make demo`")
    aug = AugmentConfig()
    if variants is not None:
        aug.n_variants = variants
    if seed is not None:
        aug.seed = seed
    opts = BuildOptions(augment=aug, with_local=not no_local, with_names=not no_names, prototypes=prototypes,
                        index=IndexConfig(factory=factory, **{k: v for k, v in (("nprobe", nprobe), (
                            "ef_search", ef_search), ("memory_budget_mb", memory_budget_mb)) if v is not None}),
                        milvus=_milvus_config(state, backend, uri, milvus_index))
    embedder = create_embedder(model)
    n = len(cat.images())
    report = build_index(
        state.home, cat, embedder, opts,
        progress=lambda it: progress(it, "indexing", total=n),
        on_skip=lambda p, r: warn(f"skipping {p}: {r}"),
    )
    if as_json:
        emit_json(report.to_dict())
        return
    for w in report.warnings:
        warn(w)
    click.echo(
        f"indexed {report.images} images → {report.vectors} vectors "
        f"({report.embedded} embedded, {report.cached} from cache), {report.descriptors} local descriptors, "
        f"{report.names} names in {report.seconds:.1f}s; skipped {len(report.skipped)}"
    )
    where = report.backend
    click.echo(f"index: {state.home.index_dir}" + (f" (global vectors: Milvus {where.get('uri')}, collection "
                                                   f"{where.get('collection')})" if where.get("kind") == "milvus" else ""))


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


def _fmt_answer(ans, k: int) -> str:
    """The human form of one answer: the verdict, the candidates, the logos, the album extras."""
    lines = []
    if ans.accepted:
        b = ans.best
        name = album_line(b.meta) if b.entity_key.startswith("album:") else b.name
        lines.append(f"{ans.path}: {name}  (score {b.score:.3f} ≥ {ans.threshold:.3f}; via {', '.join(b.channels)})")
    else:
        best = f"best guess {ans.best.name} {ans.best.score:.3f}" if ans.best else "no candidates"
        lines.append(f"{ans.path}: unknown  ({best} < threshold {ans.threshold:.3f})")
    for i, c in enumerate(ans.candidates[:k], 1):
        f = c.features
        meta = ", ".join(str(v) for key, v in c.meta.items() if key in ("genre", "country", "artist", "year") and v)
        lines.append(
            f"  {i}. {c.name:<32} score {c.score:.3f}  cos {f['cos']:.3f}  inliers {c.inliers:>3}"
            f"  text {f['text_sim']:.2f}" + (f"  [{meta}]" if meta else "")
        )
    for logo in ans.logos:
        lines.append(f"  logo: {logo.name} score {logo.score:.3f} at {logo.polygon}")
    g = ans.artist_guess
    if g:
        if g["accepted"]:
            lines.append(f"  album not in the catalog; artist probably {g['artist']} (score {g['rejection_score']:.3f}"
                         f" ≥ {g['threshold']:.3f})")
        else:
            lines.append(f"  artist: unknown (closest {g['best']} {g['rejection_score']:.3f} < {g['threshold']:.3f})")
    if ans.genre:
        lines.append(f"  genre: {ans.genre['genre']} ({ans.genre['probability']:.2f})")
    return "\n".join(map(shown, lines))  # names and read text with control characters escaped, one line each


def _explain(ans) -> str:
    out = ["channels:"]
    for c in ans.candidates[:5]:
        f = c.features
        out.append(f"  {c.name}: global cos {f['cos']:.3f} (rank {int(f['rank_global'])}, margin {f['cos_margin']:+.3f});"
                   f" local log-inliers {f['log_inliers']:.2f} (ratio {f['inlier_ratio']:.2f});"
                   f" text {f['text_sim']:.2f}" + (f" '{c.text}'" if c.text else ""))
        if c.polygon:
            out.append(f"    outline in photo: {c.polygon}")
    out.append("read: " + (", ".join(f"'{r['text']}' ({r['conf']:.2f})" for r in ans.read) or "nothing"))
    out.append("timings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in ans.timings.items()))
    return "\n".join(map(shown, out))


def draw_answer(photo: Path, ans, out: Path) -> None:
    """Draw each found logo's outline and name onto the photo."""
    from PIL import ImageDraw

    img = load_image(photo)
    d = ImageDraw.Draw(img)
    width = max(2, img.width // 300)
    shown = ans.logos or ([ans.best] if ans.accepted and ans.best else [])
    for c in shown:
        if c.polygon:
            pts = [tuple(p) for p in c.polygon]
            d.line(pts + [pts[0]], fill=(255, 40, 40), width=width)
            d.text((min(p[0] for p in pts), max(0, min(p[1] for p in pts) - 14 * width)), c.name, fill=(255, 40, 40))
        else:
            d.text((10, 10), c.name, fill=(255, 40, 40))
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)


class _Notes:
    """Warn each distinct note of the album step once per command."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, ans) -> None:
        for note in ans.notes:
            if note not in self.seen:
                self.seen.add(note)
                warn(note)


@click.command("query")
@click.argument("photo", type=click.Path(path_type=Path))
@_query_options
@click.option("--explain", is_flag=True, help="Show what each channel said.")
@click.option("--draw", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the photo with every found logo outlined (implies --all).")
@json_option
@pass_state
@reads
def query_cmd(state, photo, k, find_all, model, threshold, channels, explain, draw, as_json):
    """Identify the band or album in PHOTO (answers "unknown" under the threshold)."""
    ident = identifier(state, model=model, threshold=threshold, channels=channels)
    ans = ident.identify(photo, find_all=find_all or bool(draw))
    _Notes()(ans)
    if draw:
        draw_answer(photo, ans, draw)
    if as_json:
        emit_json(answer_json(ans, k))
    else:
        click.echo(_fmt_answer(ans, k))
        if explain:
            click.echo(_explain(ans))
        if draw:
            click.echo(f"drawn: {draw}")


@click.command("batch")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every input to a .csv file (one row each, one per logo with --all) or a .jsonl file "
                   "(each input's answer JSON, as `query --json` prints it).")
@_query_options
@json_option
@pass_state
@reads
def batch_cmd(state, folder, output, k, find_all, model, threshold, channels, as_json):
    """Identify every image under FOLDER (recursive); bad files are skipped, reported and get an error row."""
    if output and output.suffix.lower() not in (".csv", ".jsonl"):
        raise LogoidError(f"{output}: unsupported output format", "use a .csv or .jsonl file name")
    files, passed_over = scan_images(folder)
    if not files and not passed_over:
        raise LogoidError(f"no images under {folder}", "point at a folder of .jpg/.png/.webp photos")
    results = [error_json(str(path), reason) for path, reason in passed_over]
    for r in results:
        warn(f"skipping {r['path']}: {r['error']}")
    ident = identifier(state, model=model, threshold=threshold, channels=channels) if files else None
    notes = _Notes()
    for path in progress(files, "identifying", total=len(files)):
        try:
            ans = ident.identify(path, find_all=find_all)
        except ImageError as e:
            warn(f"skipping {path}: {e.reason}")
            results.append(error_json(str(path), e.reason))
            continue
        notes(ans)
        results.append(answer_json(ans, k))
    results.sort(key=lambda r: r["path"])
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("ok", "unknown", "error")}
    summary = {
        "photos": len(results), "identified": counts["ok"], "unknown": counts["unknown"], "skipped": counts["error"],
        "skipped_files": [{"path": r["path"], "reason": r["error"]} for r in results if r["status"] == "error"],
    }
    if output:
        _write_output(output, results, find_all)
    if as_json:
        emit_json({"summary": summary, "results": results})
    else:
        for r in results:
            cells = ([r["path"], "-", "-", "error", r["error"]] if r["status"] == "error"
                     else [r["path"], r["answer"], f"{r['score']:.3f}", r["status"]])
            click.echo("\t".join(map(shown, cells)))
        click.echo(f"{summary['photos']} files: {summary['identified']} identified, {summary['unknown']} unknown, "
                   f"{summary['skipped']} skipped" + (f"; wrote {output}" if output else ""))
    if counts["error"] and counts["error"] == len(results):
        raise click.exceptions.Exit(EXIT_USER)


#: The columns of `logoid batch -o out.csv` (and the keys of each .jsonl row).
BATCH_FIELDS = ["path", "status", "answer", "entity", "score", "accepted", "channels", "polygon", "topk", "artist",
                "genre", "error"]


def batch_rows(result: dict, find_all: bool = False) -> list[dict]:
    """The flat output rows of one answer's JSON: one row, or one per logo found with ``--all``."""
    guess = result.get("artist_guess") or {}
    common = {
        "path": result["path"], "status": result["status"], "error": result["error"] or "",
        "artist": result["artist"] or (guess.get("artist") if guess.get("accepted") else None) or "",
        "genre": (result["genre"] or {}).get("genre", ""),
        "topk": json.dumps([[c["name"], c["score"]] for c in result["candidates"]]),
    }

    if result["status"] == "error":  # not an answer: no name, no score, the reason in `error`
        return [{**common, "answer": "", "entity": "", "score": "", "accepted": False, "channels": "", "polygon": ""}]

    def row(c: dict | None, accepted: bool) -> dict:
        return {**common, "answer": c["name"] if (c and accepted) else "unknown",
                "entity": c["entity"] if (c and accepted) else "", "score": c["score"] if c else 0.0,
                "accepted": bool(accepted), "channels": ",".join(c["channels"]) if c else "",
                "polygon": json.dumps(c["polygon"]) if (c and c["polygon"]) else ""}

    if find_all and result["logos"]:
        return [row(c, True) for c in result["logos"]]
    best = result["candidates"][0] if result["candidates"] else None
    return [row(best, result["accepted"])]


def _write_output(output: Path, results: list[dict], find_all: bool) -> None:
    """``.jsonl``: each input's answer JSON on its own line (docs/answer.schema.json); ``.csv``: the flat rows."""
    with atomic_path(output, suffix=output.suffix) as tmp:
        if output.suffix.lower() == ".jsonl":
            tmp.write_text("".join(json.dumps(r) + "\n" for r in results))
        else:
            rows = [row for r in results for row in batch_rows(r, find_all)]
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=BATCH_FIELDS)
                w.writeheader()
                w.writerows(rows)


COMMANDS = [build_index_cmd, query_cmd, batch_cmd]
