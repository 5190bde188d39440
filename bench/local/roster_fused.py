"""threadless-dev through every channel, fused and calibrated, among the roster's distinct references (issue 24).

``python -m bench accuracy`` answers every threadless-dev photo in a home of the 276 designs and keeps each photo's
evidence (``bench/work/threadless-home-<model>-evidence.pkl``). Here each photo's evidence is gathered again with
the first ``n`` references of the roster catalog (bench/local/roster.py: the 276 designs, the 1,206 band logos,
simple-icons, generated band-like logos) in the catalog:

- **local**: the photo's query features (the roster benches' cache) searched and verified in the roster's descriptor
  index of ``n`` distinct references, the global shortlist's designs verified as well, as the Identifier does
  (``logoid.identify.match.match_local``);
- **text**: the lines the photo's OCR read then, matched against the home's names plus every distractor's name (the
  band-logos manifest's band names, icon slugs, the generated logos' band names), as the Identifier matches them;
- **global**: as answered in the home. The distractors' variants are not embedded (20 × 50k = 1M vectors, about 2 h
  of build at the record of 2026-12-06 07:41), so the global channel sees the designs only; the default model's
  global channel is at chance on threadless-dev (AUROC 0.50, record of 08:06), so it adds no signal either way.

Then, as the accuracy bench does: the fusion fitted and the rejection calibrated on split=calib, reported on
split=test, every photo (known and unknown). ``n = 276`` (the designs alone, through this same path) is the baseline
the 50k catalog is compared with; the stored evidence itself is reported beside it.

    python -m bench accuracy --precision fp32                  # the home and its evidence (once)
    python -m bench local-scale roster-fused [--refs 276 --refs 50000]

The roster's references are extracted (cached, a bar with ETA) and its indexes built here where the roster bench
has not already done so (``bench.local.roster.build`` reuses a built one).
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

from bench._common import DATA
from bench.local import roster, sweep
from logoid.identify.match import LocalConfig

SUBSETS = [("local",), ("global", "local", "text")]


def distractor_names(refs: list, data: Path = DATA) -> dict[int, str]:
    """The name of every roster reference that is not a threadless-dev design: what its text channel could read."""
    from bench._common import read_manifest
    from bench.local.catalog import ICON_ID0, icon_slugs

    bands = [r["band"] for r in read_manifest(data / "band-logos")]
    n_icons = sum(r.kind == "icon" for r in refs)
    slugs = icon_slugs(n_icons) if n_icons else []
    generated = [r["name"] for r in read_manifest(roster.GEN_DIR)] if any(r.kind == "generated" for r in refs) else []
    out = {}
    for r in refs:
        if r.kind == "band":
            out[r.image_id] = bands[r.image_id - roster.BAND_ID0]
        elif r.kind == "icon":
            out[r.image_id] = slugs[r.image_id - ICON_ID0]
        elif r.kind == "generated":
            out[r.image_id] = generated[r.image_id - roster.GEN_ID0]
    return out


def design_maps(cat, rows: list[dict]) -> tuple[dict[int, str], dict[int, int]]:
    """A design's roster id is its manifest id; the home holds it as a band with that external id:
    ``(roster id -> entity key, home image id -> roster id)``."""
    row_of_image, key_of_row = {}, {}
    for r in rows:
        if r["role"] == "enrolled" and int(r["id"]) not in key_of_row:
            band = cat.find_band(f"threadless:{r['id']}")
            key_of_row[int(r["id"])] = f"band:{band.id}"
            row_of_image.update({im.id: int(r["id"]) for im in cat.images("band", band.id)})
    return key_of_row, row_of_image


class WithDistractors:
    """The home's catalog with the roster's distractors as bands ``band:<roster id>`` (names only, no metadata)."""

    def __init__(self, catalog, names: dict[int, str]):
        self._catalog, self._names = catalog, names

    def __getattr__(self, name: str):
        return getattr(self._catalog, name)

    def entity_name(self, entity_type: str, entity_id: int) -> str:
        if entity_type == "band" and entity_id in self._names:
            return self._names[entity_id]
        return self._catalog.entity_name(entity_type, entity_id)

    def entity_meta(self, entity_type: str, entity_id: int) -> dict:
        if entity_type == "band" and entity_id in self._names:
            return {}
        return self._catalog.entity_meta(entity_type, entity_id)


def regather(n: int, ident, cat, collected: list, data: Path = DATA, extras_until: tuple[int, ...] | None = None
             ) -> dict[int, tuple[list, dict]]:
    """Every photo's evidence with the roster's first ``n`` references in the catalog (see the module's docstring),
    once for each ``MatchConfig.extras_until_inliers`` in ``extras_until`` (default: the default alone) from the same
    descriptor search: for each, the new ``Collected`` list (same order) and the run's facts."""
    import cv2
    import faiss

    from logoid.eval.run import Collected
    from logoid.identify.match import match_local
    from logoid.identify.pipeline import Evidence, add_local, add_text
    from logoid.index.descriptors import DescriptorIndex
    from logoid.index.names import NameIndex

    base = LocalConfig()
    if LocalConfig.from_dict(ident.store.meta.get("local") or {}).extract.to_dict() != base.extract.to_dict():
        raise SystemExit("the threadless-dev home was built with other local-feature settings; rerun "
                         "`python -m bench accuracy`")
    faiss.omp_set_num_threads(2)
    cv2.setNumThreads(2)
    designs = data / "threadless-dev"
    rows = sweep.manifest(designs)
    # by the photo's path inside the data set (the evidence may come from a checkout elsewhere)
    feats = {r["photo"]: f for r, f in zip(rows, sweep.query_features(designs, rows, base), strict=True)}
    key_of_row, row_of_image = design_maps(cat, rows)
    refs = roster.catalog(n, data)
    names = distractor_names(refs, data)
    text_index = copy.deepcopy(ident.store.names) if ident.store.names is not None else NameIndex()
    text_index.add([(f"band:{i}", name) for i, name in names.items()])

    def entity_of(roster_id: int) -> str | None:
        return key_of_row.get(roster_id) or (f"band:{roster_id}" if roster_id in names else None)

    t = time.perf_counter()
    dindex = DescriptorIndex.load(roster.index_path(n, base), mmap=False)
    load_s = time.perf_counter() - t
    dindex.check_features(base.extract)
    verifier = text_verifier(dindex, [(r.image_id, entity_of(r.image_id)) for r in refs], text_index,
                              ident.config)
    cfgs = {u: LocalConfig.of(extras_until_inliers=u) for u in (extras_until or (base.match.extras_until_inliers,))}
    runs = {u: {"out": [], "local_s": [], "text_distractor": 0, "named_verified": 0, "verified": [], "skipped": 0}
            for u in cfgs}
    k = max(2, base.match.neighbours)
    for c in collected:
        ev = c.evidence
        qf = feats[Path(c.query.path).relative_to(Path(c.query.path).parents[1]).as_posix()]
        t = time.perf_counter()
        search = dindex.search(qf.desc, k=k) if len(qf) else None
        search_s = time.perf_counter() - t
        lines = [SimpleNamespace(text=r["text"], conf=r["conf"]) for r in ev.read]
        matches = text_index.match(lines, k=ident.config.shortlist) if lines else []
        kept = [m for m in matches if m.similarity >= ident.config.text_min_sim]
        # the votes' own verifications (untimed): whether a setting skips this photo's extra candidates
        voted = match_local(qf, dindex, base, search=search) if len(qf) and len(cfgs) > 1 else []
        for u, cfg in cfgs.items():
            run = runs[u]
            cands = {key: dict(v) for key, v in ev.restrict(("global",)).cands.items()}
            t = time.perf_counter()
            verifs = []
            if len(qf):
                extra = [row_of_image[v["image_id"]] for v in cands.values() if v.get("image_id") in row_of_image]
                verifs = match_local(qf, dindex, cfg, extra_candidates=extra, search=search)
                add_local(cands, verifs, entity_of, ev.floor)
                run["skipped"] += bool(u and set(extra) - {v.image_id for v in voted}
                                       and any(v.inliers >= u for v in voted))
            run["local_s"].append(search_s + time.perf_counter() - t)
            run["verified"].append({v.image_id: v.inliers for v in verifs})
            if lines:
                add_text(cands, kept, ev.floor)
                run["text_distractor"] += any(m.entity_key not in key_of_row.values() for m in kept)
                named = verifier.named_images(kept, cands) if len(qf) else []
                if named:  # as Identifier.collect: the names read, verified on their own references
                    nv = verifier.verify_named((qf, cfg), named)
                    add_local(cands, nv, entity_of, ev.floor)
                    run["named_verified"] += bool(nv)
            run["out"].append(Collected(c.query, Evidence(path=ev.path, cands=cands, floor=ev.floor, read=ev.read,
                                                          logos=[], timings={}, channels=ev.channels)))
    always = runs.get(0)
    out = {}
    for u, run in runs.items():
        facts = {"refs": n, "kinds": {k_: sum(r.kind == k_ for r in refs) for k_ in ("design", "band", "icon", "generated")},
                 "descriptors": dindex.ntotal, "structure": dindex.structure(), "names": len(text_index),
                 "load_s": load_s, "extras_until_inliers": u, "median_local_match_s": statistics.median(run["local_s"]),
                 "text_distractor_photos": run["text_distractor"], "named_verified_photos": run["named_verified"]}
        if always is not None and u != 0:
            # what the skip left out: images the always-searched run verified and this one did not
            missed = [{i: m for i, m in a.items() if i not in b} for a, b in zip(always["verified"], run["verified"],
                                                                                   strict=True)]
            facts.update(extras_skipped_photos=run["skipped"],
                         extras_missed_photos=sum(bool(m) for m in missed),
                         extras_missed_max_inliers=max((x for m in missed for x in m.values()), default=0))
        out[u] = (run["out"], facts)
    return out


def text_verifier(dindex, images: list[tuple[int, str | None]], names, config):
    """An Identifier over the roster's descriptor index whose catalog holds ``images`` ((roster id, entity key))
    and whose text channel knows ``names``: its ``named_images`` and ``verify_named`` are the product's own."""
    from logoid.identify.pipeline import Identifier

    class _Catalog:
        def images(self, *_):
            return [SimpleNamespace(id=i, entity_type=key.split(":")[0], entity_id=int(key.split(":")[1]))
                    for i, key in images if key is not None]

    return Identifier(home=None, catalog=_Catalog(), config=config,
                      store=SimpleNamespace(descriptors=dindex, names=names, meta={}))


def run(sizes: list[int], model: str | None = None, data: Path = DATA, extras_until: tuple[int, ...] | None = None
        ) -> dict:
    """The stored evidence's metrics, then each roster size's (see the module's docstring): for each setting of
    ``MatchConfig.extras_until_inliers`` in ``extras_until`` (default: the default only), keyed ``n`` for the first
    and ``n@u`` for the others."""
    from bench._designs import load_evidence, subset_metrics
    from logoid import DEFAULT_MODEL
    from logoid.identify.match import MatchConfig

    extras_until = tuple(dict.fromkeys(extras_until or (MatchConfig().extras_until_inliers,)))  # each once, in order
    ident, cat, calib, test = load_evidence(model or DEFAULT_MODEL)
    res: dict = {"photos": {"calib": len(calib), "test": len(test)}, "extras_until": list(extras_until),
                 "stored": {"subsets": subset_metrics(ident, cat, calib, test, SUBSETS)}}
    for n in sizes:
        _ensure_index(n, data)
        by_setting = regather(n, ident, cat, calib + test, data, extras_until)
        roster_names = distractor_names(roster.catalog(n, data), data)
        wide = WithDistractors(cat, roster_names)
        ident.catalog = wide
        for j, (u, (both, facts)) in enumerate(by_setting.items()):
            res[str(n) if j == 0 else f"{n}@{u}"] = {
                **facts, "subsets": subset_metrics(ident, wide, both[:len(calib)], both[len(calib):], SUBSETS),
                "distractor_first": _distractor_first(ident, both, roster_names)}
        ident.catalog = cat
    return res


def _sizes(res: dict) -> list[tuple[str, dict]]:
    """The roster rows of a result: ``n`` and ``n@u`` keys."""
    return [(k, r) for k, r in res.items() if k.split("@")[0].isdigit()]


def _ensure_index(n: int, data: Path) -> None:
    """The roster's first ``n`` references extracted into the feature cache and indexed, unless already done."""
    import sys

    from tqdm import tqdm

    cfg = LocalConfig()
    if not roster.index_path(n, cfg).with_name("build.json").exists():
        roster.extract_all(roster.catalog(n, data), cfg, progress=lambda total: tqdm(
            total=total, desc=f"roster {n} reference features", unit="img", file=sys.stderr))
        roster.build(n, cfg, n, data=data)


def _distractor_first(ident, collected: list, names: dict[int, str]) -> int:
    """Photos (both splits) whose best candidate after the index's own fusion is a distractor."""
    keys = {f"band:{i}" for i in names}
    return sum(1 for c in collected if (a := ident.decide(c.evidence)).best is not None and a.best.entity_key in keys)


def markdown(res: dict) -> str:
    from bench._common import fmt, table

    rows = []
    for name, r in [("stored evidence (home of the 276 designs)", res["stored"])] + \
            [(f"roster {int(n.split('@')[0]):,}", r) for n, r in _sizes(res)]:
        until = r.get("extras_until_inliers")
        for sub in ("local", "global+local+text"):
            m = r["subsets"][sub]["after"]
            rows.append([name, "" if until is None else str(until), sub, fmt(m.get("top1")), fmt(m.get("auroc")),
                         fmt(m.get("open_set_accuracy")),
                         r.get("distractor_first", "") if sub == "global+local+text" else "",
                         r.get("text_distractor_photos", "") if sub == "global+local+text" else "",
                         r.get("named_verified_photos", "") if sub == "global+local+text" else "",
                         fmt(r.get("median_local_match_s")) if sub == "local" else "",
                         _skipped(r) if sub == "local" else ""])
    return ("threadless-dev, split=test, fusion fitted and rejection calibrated on split=calib "
            "(bench/local/roster_fused.py): each photo's evidence from `python -m bench accuracy` gathered again "
            "with the roster's first N distinct references in the catalog: local channel from the roster's "
            "descriptor index of N references, text channel matching the lines read against the designs' names plus "
            "every distractor's name, global channel as answered among the designs (distractors not embedded; it is "
            "at chance on threadless-dev). `roster 276` is the designs alone through the same path. `distractor "
            "first` = photos (both splits) whose best candidate before calibration is a distractor. Match s = median "
            "descriptor search + verification per photo, features precomputed. `text reads a distractor` = photos (both "
            "splits) where a distractor's name is among the text channel's matches; `name read verified` = photos where a "
            "reference of a name read was then verified on its own (`IdentifyConfig.text_verify`, as the Identifier "
            "does). `extras until` = `MatchConfig.extras_until_inliers`: the global shortlist's images the votes did "
            "not verify are searched and verified only while no reference verified with this many inliers (0 = "
            "always); each setting from the same search. `extras skipped` = photos (both splits) that had extra "
            "candidates left and whose votes verified a reference with that many inliers, so none was searched; "
            "`missed` = photos where the always-searched run verified an image this one did not (the most inliers "
            "such an image had).\n\n"
            + table(["catalog", "extras until", "channels", "top-1", "AUROC", "open-set acc", "distractor first",
                     "text reads a distractor", "name read verified", "match s", "extras skipped (missed, max inliers)"],
                    rows))


def _skipped(r: dict) -> str:
    if "extras_skipped_photos" not in r:
        return ""
    return f"{r['extras_skipped_photos']} ({r['extras_missed_photos']}, {r['extras_missed_max_inliers']})"


def summary(res: dict) -> str:
    from bench._common import fmt

    def trio(r: dict) -> str:
        m = r["subsets"]["global+local+text"]["after"]
        return " / ".join(fmt(m.get(k)) for k in ("top1", "auroc", "open_set_accuracy"))

    def until(r: dict) -> str:
        return f" (extras until {r['extras_until_inliers']})" if len(res.get("extras_until", [])) > 1 else ""

    return "fused calibrated test top-1 / AUROC / open-set: " + "; ".join(
        f"{int(n.split('@')[0]):,} refs{until(r)} {trio(r)}" for n, r in _sizes(res))
