"""query, batch: one photo or a folder, answered here or by a running server (``--server``).

Only what a command needs is imported when it runs, so ``logoid query --server`` starts without torch, FAISS
or the pipeline: the answer comes back as JSON, and both paths format that same JSON.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click

from logoid.core.atomic import atomic_path
from logoid.core.errors import ImageError, LogoidError
from logoid.serve.client import ENV_SERVER

from ._common import EXIT_USER, emit_json, json_option, pass_state, progress, shown, warn


def _channels(value: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in value.split(",") if c.strip())


def identifier(state, *, model=None, threshold=None, channels="global,local,text"):
    from logoid import Identifier, IdentifyConfig

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
    from logoid.build.sync import index_health

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


def _fmt_answer(r: dict, k: int) -> str:
    """The human form of one answer JSON (local or from a server): the verdict, the candidates, the logos, the
    album extras."""
    from logoid.albums.answer import album_line

    lines = []
    cands = r["candidates"]
    best = cands[0] if cands else None
    if r["accepted"] and best:
        name = album_line(best["meta"]) if best["entity"].startswith("album:") else best["name"]
        lines.append(f"{r['path']}: {name}  (score {best['score']:.3f} ≥ {r['threshold']:.3f}; via "
                     f"{', '.join(best['channels'])})")
    else:
        guess = f"best guess {best['name']} {best['score']:.3f}" if best else "no candidates"
        lines.append(f"{r['path']}: unknown  ({guess} < threshold {r['threshold']:.3f})")
    for i, c in enumerate(cands[:k], 1):
        f = c["features"]
        meta = ", ".join(str(v) for key, v in c["meta"].items() if key in ("genre", "country", "artist", "year") and v)
        lines.append(
            f"  {i}. {c['name']:<32} score {c['score']:.3f}  cos {f['cos']:.3f}  inliers {c['inliers']:>3}"
            f"  text {f['text_sim']:.2f}" + (f"  [{meta}]" if meta else "")
        )
    for logo in r["logos"]:
        lines.append(f"  logo: {logo['name']} score {logo['score']:.3f} at {logo['polygon']}")
    g = r["artist_guess"]
    if g:
        if g["accepted"]:
            lines.append(f"  album not in the catalog; artist probably {g['artist']} (score {g['rejection_score']:.3f}"
                         f" ≥ {g['threshold']:.3f})")
        else:
            lines.append(f"  artist: unknown (closest {g['best']} {g['rejection_score']:.3f} < {g['threshold']:.3f})")
    if r["genre"]:
        lines.append(f"  genre: {r['genre']['genre']} ({r['genre']['probability']:.2f})")
    return "\n".join(map(shown, lines))  # names and read text with control characters escaped, one line each


def draw_answer(photo: Path, r: dict, out: Path) -> None:
    """Draw each found logo's outline and name onto the photo (polygons are in the photo's own pixels)."""
    from PIL import ImageDraw

    from logoid.core.imageio import load_image

    img = load_image(photo)
    d = ImageDraw.Draw(img)
    width = max(2, img.width // 300)
    best = r["candidates"][0] if r["candidates"] else None
    found = r["logos"] or ([best] if r["accepted"] and best else [])
    for c in found:
        if c["polygon"]:
            pts = [tuple(p) for p in c["polygon"]]
            d.line(pts + [pts[0]], fill=(255, 40, 40), width=width)
            d.text((min(p[0] for p in pts), max(0, min(p[1] for p in pts) - 14 * width)), c["name"], fill=(255, 40, 40))
        else:
            d.text((10, 10), c["name"], fill=(255, 40, 40))
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)


class _Notes:
    """Warn each distinct note of the album step once per command."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, r: dict) -> None:
        for note in r["notes"]:
            if note not in self.seen:
                self.seen.add(note)
                warn(note)


def _server_option(f):
    return click.option("--server", envvar=ENV_SERVER, default=None, metavar="URL",
                        help=f"Ask a running `logoid serve` at URL (or ${ENV_SERVER}) instead of loading the models "
                             "here: the same answers, warm.")(f)


def _remote_only(server: str, model, threshold) -> None:
    if model or threshold is not None:
        raise click.UsageError(f"--model and --threshold are the server's choice; drop them or --server {server}")


@click.command("query")
@click.argument("photo", type=click.Path(path_type=Path))
@_query_options
@click.option("--explain", is_flag=True, help="Show what each channel said.")
@click.option("--draw", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the photo with every found logo outlined (implies --all).")
@_server_option
@json_option
@pass_state
def query_cmd(state, photo, k, find_all, model, threshold, channels, explain, draw, server, as_json):
    """Identify the band or album in PHOTO (answers "unknown" under the threshold)."""
    find_all = find_all or bool(draw)
    if server:
        from logoid.serve.client import Client

        _remote_only(server, model, threshold)
        result = Client(server).identify(photo, find_all=find_all, k=k, channels=channels, explain=explain)
    else:
        from logoid import answer_json

        with state.catalog.snapshot():
            ident = identifier(state, model=model, threshold=threshold, channels=channels)
            result = answer_json(ident.identify(photo, find_all=find_all), k, explain=explain)
    _Notes()(result)
    if draw:
        draw_answer(photo, result, draw)
    if as_json:
        emit_json(result)
    else:
        click.echo(_fmt_answer(result, k))
        if explain:
            click.echo("\n".join(map(shown, result["explain"])))
        if draw:
            click.echo(f"drawn: {draw}")


@click.command("batch")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every input to a .csv file (one row each, one per logo with --all) or a .jsonl file "
                   "(each input's answer JSON, as `query --json` prints it).")
@_query_options
@_server_option
@json_option
@pass_state
def batch_cmd(state, folder, output, k, find_all, model, threshold, channels, server, as_json):
    """Identify every image under FOLDER (recursive); bad files are skipped, reported and get an error row."""
    from logoid import answer_json, error_json
    from logoid.core.imageio import scan_images
    from logoid.identify.answer import batch_summary

    if output and output.suffix.lower() not in (".csv", ".jsonl"):
        raise LogoidError(f"{output}: unsupported output format", "use a .csv or .jsonl file name")
    files, passed_over = scan_images(folder)
    if not files and not passed_over:
        raise LogoidError(f"no images under {folder}", "point at a folder of .jpg/.png/.webp photos")
    results = [error_json(str(path), reason) for path, reason in passed_over]
    for r in results:
        warn(f"skipping {r['path']}: {r['error']}")
    notes = _Notes()
    if server and files:
        from logoid.serve.client import Client

        _remote_only(server, model, threshold)
        answers = Client(server).identify_many(files, find_all=find_all, k=k, channels=channels)
        for r in progress(answers, "identifying", total=len(files)):
            if r["status"] == "error":
                warn(f"skipping {r['path']}: {r['error']}")
            else:
                notes(r)
            results.append(r)
    elif files:
        with state.catalog.snapshot():  # every photo is answered against one committed catalog state
            ident = identifier(state, model=model, threshold=threshold, channels=channels)
            for path in progress(files, "identifying", total=len(files)):
                try:
                    r = answer_json(ident.identify(path, find_all=find_all), k)
                except ImageError as e:
                    warn(f"skipping {path}: {e.reason}")
                    results.append(error_json(str(path), e.reason))
                    continue
                notes(r)
                results.append(r)
    results.sort(key=lambda r: r["path"])
    summary = batch_summary(results)
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
    if summary["skipped"] and summary["skipped"] == len(results):
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


COMMANDS = [query_cmd, batch_cmd]
