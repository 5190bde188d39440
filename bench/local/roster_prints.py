"""Band-logo prints through the local channel, against the band logos alone and inside the roster (issue 24).

Each of the 1,206 real band logos (../shared/data/band-logos) is printed on a shirt of a threadless-dev photo as the
text benchmark prints it (bench/_prints.py: placed by the shirt's own print, polarity as merch is printed,
perspective, fabric shading, blur, noise, JPEG; seed 0), and the print is answered by the local channel alone:
search + ratio votes + geometric verification, as for the threadless-dev photos. Its right answer is its band's
reference (``roster.BAND_ID0 + i``). The photo's shirt carried a threadless-dev design, painted over only under the
logo; where that design is enrolled (in every roster catalog), what is left of it is a real second logo in the
photo, so it is set aside when reading the answer (:func:`shirt_designs`).

- ``bands``: a descriptor index of the 1,206 band logos alone (tag ``bands``; built once, cached with the roster's
  indexes): the prints against their own references.
- Any roster catalog that holds all the band logos (1,482 references and up): the same prints among distinct
  distractors (designs, simple-icons, generated band-like logos).

The prints' query features are cached per extraction setting (``bench/work/local-cache/prints/``), made in
``workers`` processes; the rows are scored by :func:`score` in the roster's query process (``--prints``).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench._common import DATA
from bench.local import sweep
from logoid.engine.local import Features
from logoid.identify.match import LocalConfig

PRINT_SEED = 0
BANDS_TAG = "bands"


def band_rows(data: Path) -> list[dict]:
    from bench._common import read_manifest

    return read_manifest(data / "band-logos")


def cache_dir(cfg: LocalConfig, seed: int = PRINT_SEED) -> Path:
    return sweep.CACHE / "prints" / f"{cfg.extract.query_hash()}-seed{seed}"


_MAKER = None


def _make_one(args: tuple[int, str, str, str, dict, str, int]) -> int:
    """Worker: print logo ``i`` on its photo, extract its query features into the cache; its keypoint count."""
    import cv2

    from bench._prints import PrintMaker
    from logoid.engine.local import ExtractConfig, extract

    global _MAKER
    cv2.setNumThreads(1)
    i, logo_id, image, data, cfg_d, out, seed = args
    if _MAKER is None:
        _MAKER = PrintMaker(Path(data) / "band-logos", Path(data) / "threadless-dev", seed)
    img, _ = _MAKER.make(logo_id, image)
    f = extract(img, ExtractConfig.from_dict(cfg_d), "query")
    f.to_npz(Path(out) / f"{i}.npz")
    return len(f)


def make_all(cfg: LocalConfig, data: Path = DATA, workers: int = 2, seed: int = PRINT_SEED, progress=None) -> int:
    """Make and extract every print not cached yet (resumable: one file per print, written when done); how many."""
    from bench._prints import find_placements

    out = cache_dir(cfg, seed)
    out.mkdir(parents=True, exist_ok=True)
    find_placements(data / "threadless-dev")  # once, before the workers read its cache
    todo = [(i, r["id"], r["image"], str(data), cfg.extract.to_dict(), str(out), seed)
            for i, r in enumerate(band_rows(data)) if not (out / f"{i}.npz").exists()]
    if not todo:
        return 0
    bar = progress(total=len(todo)) if progress else None
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for _ in pool.map(_make_one, todo, chunksize=8):
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return len(todo)


def features(cfg: LocalConfig, data: Path = DATA, seed: int = PRINT_SEED) -> Iterator[tuple[int, Features]]:
    """``(band index, the print's query features)`` of every cached print, read one at a time."""
    d = cache_dir(cfg, seed)
    for i in range(len(band_rows(data))):
        p = d / f"{i}.npz"
        if not p.exists():
            raise RuntimeError(f"{p}: print not made; run `python -m bench.local.roster_prints` first")
        yield i, Features.from_npz(p)


def shirt_designs(data: Path = DATA, seed: int = PRINT_SEED) -> list[int | None]:
    """Per print, the enrolled threadless-dev design its photo's shirt carried (None: an unknown design). The print
    covers it only under the logo, so what is left of it is a second, real logo in the photo, and a catalog that
    holds the designs may rightly answer it."""
    from bench._prints import PrintMaker

    maker = PrintMaker(data / "band-logos", data / "threadless-dev", seed)
    enrolled = {r["id"] for r in sweep.manifest(data / "threadless-dev") if r["role"] == "enrolled"}
    return [int(pid) if (pid := maker.photo_for(r["id"])) in enrolled else None for r in band_rows(data)]


def text_reads(data: Path = DATA) -> list[list]:
    """Per print (band order), the lines the text channel reads on it: the text benchmark's OCR of the same prints
    (``python -m bench text-cache prints``; invert-if-little, as ``TextReader`` reads a photo)."""
    from types import SimpleNamespace

    from bench._ocr import RESULTS, OcrCache, strategy_lines
    from logoid.engine.ocr import OcrConfig

    cache = OcrCache(RESULTS / "ocr_cache_prints.json", OcrConfig().to_dict())
    keys = cache.data.get("_names", {})
    out = []
    for r in band_rows(data):
        if keys.get(r["id"]) not in cache:
            raise SystemExit(f"{cache.path}: print {r['id']} not read; run `python -m bench text-cache prints`")
        out.append([SimpleNamespace(text=t, conf=c) for t, c, *_ in strategy_lines(cache.get(keys[r["id"]]))])
    return out


def catalog_names(refs: list, data: Path = DATA) -> list[tuple[str, str]]:
    """(entity key, name) of every reference of a roster catalog, each its own band ``band:<roster id>``: a design
    by its home's name (``threadless <id>``), the others as bench.local.roster_fused names them."""
    from bench.local.roster_fused import distractor_names

    names = distractor_names(refs, data)
    return [(f"band:{r.image_id}", names.get(r.image_id, f"threadless {r.image_id}")) for r in refs]


def _text_verifier(dindex, refs: list, data: Path):
    """An Identifier over ``dindex`` whose text channel knows every reference's name (bench.local.roster_fused's)."""
    from bench.local.roster_fused import text_verifier
    from logoid.identify.pipeline import IdentifyConfig
    from logoid.index.names import NameIndex

    return text_verifier(dindex, [(r.image_id, f"band:{r.image_id}") for r in refs], NameIndex(catalog_names(refs, data)),
                    IdentifyConfig())


def _with_named(ident, f: Features, cfg: LocalConfig, res: list, lines: list) -> list:
    """``res`` (verified references, best first) with the references of the names read verified as the
    Identifier verifies them (``IdentifyConfig.text_verify``); each image keeps its best verification."""
    from logoid.identify.pipeline import add_local

    if not lines:
        return res
    cands: dict = {}
    add_local(cands, res, lambda i: f"band:{i}", 0.0)
    matches = [m for m in ident.store.names.match(lines, k=ident.config.shortlist)
               if m.similarity >= ident.config.text_min_sim]
    named = ident.named_images(matches, cands)
    if not named:
        return res
    best = {v.image_id: v for v in res}
    for v in ident.verify_named((f, cfg), named):
        if v.image_id not in best or v.score > best[v.image_id].score:
            best[v.image_id] = v
    return sorted(best.values(), key=lambda v: (-v.score, -v.inliers, v.image_id))


def score(dindex, cfg: LocalConfig, data: Path = DATA, votes: list[int] | None = None, refs: list | None = None
          ) -> dict:
    """Every print through the local channel of ``dindex``: top-1 (its band's reference is the best verified one,
    the shirt's own design set aside: :func:`shirt_designs`), nothing verified, and what else came out on top; with
    ``votes``, the same searches verified with each ``MatchConfig.min_votes``. ``verified``: each print's first
    three verified references (image id, score), as answered. ``refs`` (the index's references): also
    ``names_read``, the same searches with the references of the names the text channel reads on the print verified
    as well (:func:`_with_named`), as the Identifier does."""
    from bench.local.roster import BAND_ID0, _kind
    from logoid.identify.match import verify_search

    settings = [cfg] + [cfg.override(min_votes=v) for v in votes or []]
    answers: list[list[list]] = [[] for _ in settings]
    named: list[list] = []
    ident = _text_verifier(dindex, refs, data) if refs is not None else None
    reads = text_reads(data) if refs is not None else []
    k = max(2, cfg.match.neighbours)
    for i, f in features(cfg, data):
        D, own = dindex.search(f.desc, k=k) if len(f) else (None, None)
        for s, c in enumerate(settings):
            res = verify_search(f, dindex, D, own, c) if len(f) else []
            answers[s].append([[v.image_id, round(float(v.score), 3)] for v in res[:3]])
            if s == 0 and ident is not None:
                res = _with_named(ident, f, c, res, reads[i]) if len(f) else []
                named.append([[v.image_id, round(float(v.score), 3)] for v in res[:3]])
    shirts = shirt_designs(data)

    def summed(got: list[list]) -> dict:
        kinds: dict = {}
        shirt_top = 0
        for i, res in enumerate(got):
            shirt_top += bool(res) and res[0][0] == shirts[i]
            rest = [x for x, _ in res if x != shirts[i]]
            key = "right" if rest and rest[0] == BAND_ID0 + i else _kind(rest[0] if rest else None)
            kinds[key] = kinds.get(key, 0) + 1
        n = len(got)
        return {"n": n, "top1": kinds.get("right", 0) / n, "none": kinds.get("none", 0) / n, "tops": kinds,
                "shirt_design_first": shirt_top}

    out = {**summed(answers[0]), "verified": answers[0]}
    if votes:
        out["votes"] = [{"min_votes": v, **summed(a)} for v, a in zip(votes, answers[1:], strict=True)]
    if ident is not None:
        out["names_read"] = {**summed(named), "verified": named}
    return out


def build_bands(cfg: LocalConfig, data: Path = DATA) -> dict:
    """The descriptor index of the band logos alone (built once; its facts as ``roster.build`` gives them)."""
    from bench.local import roster

    n = len(band_rows(data))
    return roster.build(n, cfg, n, tag=BANDS_TAG, data=data,
                        refs=[r for r in roster.catalog(276 + n, data) if r.kind == "band"])


def markdown(res: dict) -> str:
    """A roster run with ``--prints``: the prints' top-1 against the band logos alone and in each catalog."""
    from bench._common import fmt, table
    from bench.local.roster import runs

    rows = []
    for r in runs(res):
        if "prints" not in r:
            continue
        p = r["prints"]
        named = [{"min_votes": "3 (default)", "named": True, **p["names_read"]}] if "names_read" in p else []
        for v in [{"min_votes": "3 (default)", **p}] + p.get("votes", []) + named:
            t = r.get("test") or {}
            others = {k: n for k, n in v["tops"].items() if k not in ("right", "none")}
            rows.append(["band logos alone" if r["distinct"] == r["kinds"]["band"] else r["refs"], r["distinct"],
                         r["layout"], "votes + names read" if v.get("named") else "votes", v["min_votes"], v["n"],
                         fmt(v["top1"]), fmt(v["none"]), v["shirt_design_first"],
                         ", ".join(f"{k} {n}" for k, n in sorted(others.items())) or "-",
                         fmt(t.get("top1")) if "votes" not in v and not v.get("named") else ""])
    return ("Band-logo prints through the local channel alone (bench/local/roster_prints.py): each of the 1,206 "
            "real band logos printed on a shirt of a threadless-dev photo as the text benchmark prints it "
            "(bench/_prints.py, seed 0: placed on the shirt's own print, polarity as merch is printed, "
            "perspective, fabric shading, blur, noise, JPEG), answered by search + ratio votes + verification. "
            "`band logos alone` = an index of the 1,206 band logos only (the prints' own references); the other rows"
            " are the roster's catalogs of distinct references (276 designs, the band logos, simple-icons, generated "
            "band-like logos). The photo's shirt carried a threadless-dev design, painted over only under the logo; "
            "where it is enrolled (every roster catalog holds the 276), what is left of it is a real second logo in "
            "the photo: `shirt design first` counts the prints where it was the best verified reference, and it is "
            "set aside when reading the answer. `candidates`: `votes` = the references the descriptor votes pick (the "
            "local channel alone); `votes + names read` = also the references of the names the text channel reads "
            "on the print (the text benchmark's OCR of the same prints, matched against every reference's name), "
            "verified on their own as the Identifier does (`IdentifyConfig.text_verify`). "
            "top-1 = the print's band is then the best verified reference; "
            "`nothing verified` = no other reference verified; `other on top` = what else was best, by kind (`band` = "
            "another band's logo, `design` = another threadless design). "
            "`threadless top-1` = the threadless-dev test photos against the same index (roster table).\n\n"
            + table(["catalog", "distinct refs", "layout", "candidates", "min_votes", "prints", "top-1", "nothing verified",
                     "shirt design first", "other on top", "threadless top-1"], rows))


def summary(res: dict) -> str:
    from bench._common import fmt
    from bench.local.roster import runs

    return "; ".join(("band logos alone" if r["distinct"] == r["kinds"]["band"] else f"{r['refs']} refs")
                     + f": prints top-1 {fmt(r['prints']['top1'])}"
                     + (f" ({fmt(r['prints']['names_read']['top1'])} with the names read verified)"
                        if "names_read" in r["prints"] else "") for r in runs(res) if "prints" in r)


def main(argv=None) -> int:
    import argparse

    from tqdm import tqdm

    ap = argparse.ArgumentParser(description="Make and extract the band-logo prints (cached, resumable)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, default=DATA)
    a = ap.parse_args(argv)
    n = make_all(LocalConfig(), a.data, a.workers,
                 progress=lambda total: tqdm(total=total, desc="prints", unit="print", file=sys.stderr))
    print(f"made {n} prints", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
