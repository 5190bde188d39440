"""The threadless-dev home several subjects' benches query (accuracy, mosaic, text): built once, shared.

Every enrolled design of the manifest becomes a band ``threadless <id>`` with that design as its image; the index is
(re)built with the given model. Subjects import this module, never each other.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench._common import WORK, read_manifest


def home_path(model: str) -> Path:
    """The logoid home the threadless-dev benches build for ``model`` (under bench/work/)."""
    return WORK / f"threadless-home-{model.replace('/', '_')}"


def setup_home(data: Path, home_dir: Path, model: str, *, progress=None, variants: int | None = None,
               precision: str = "fp32", augment_size: int | None = None, bw_float64: bool | None = None) -> tuple:
    """Enrol threadless-dev's designs in ``home_dir`` and build its index (``variants`` per design, default the
    build's 20, made at ``augment_size`` px, default ``AugmentConfig.size``; black-and-white light maps in float64 or
    not by ``bw_float64``, default the home's index's; the image tower in ``precision``, as ``build-index --precision``).

    Returns ``(home, catalog, embedder, manifest rows, design id -> entity key, build report, build seconds)``.
    """
    from logoid.augment import AugmentConfig
    from logoid.build.steps import BuildOptions, build_index
    from logoid.catalog import Catalog
    from logoid.core.paths import Home
    from logoid.engine import create_embedder

    home = Home(home_dir).ensure()
    cat = Catalog.open(home)
    rows = read_manifest(data)
    key_of = {}
    with cat.transaction():
        for r in rows:
            if r["role"] != "enrolled":
                continue
            band = cat.add_band(f"threadless {r['id']}", external_ids={"threadless": r["id"]})
            if not cat.images("band", band.id):
                cat.add_image("band", band.id, data / r["design"])
            key_of[r["id"]] = f"band:{band.id}"
    embedder = create_embedder(model)
    t = time.perf_counter()
    aug = {k: v for k, v in (("n_variants", variants), ("size", augment_size)) if v}
    if bw_float64 is not None:
        aug["bw_float64"] = bw_float64
    opts = BuildOptions(augment=AugmentConfig(**aug) if aug else None, precision=precision)
    report = build_index(home, cat, embedder, opts, progress=progress)
    return home, cat, embedder, rows, key_of, report, time.perf_counter() - t


def save_evidence(collected, path: Path) -> None:
    """Keep every photo's raw evidence, so fusion settings can be compared without querying again."""
    import pickle

    path.write_bytes(pickle.dumps([(c.query, c.evidence) for c in collected]))


def evidence_path(model: str) -> Path:
    home = home_path(model)
    return home.with_name(home.name + "-evidence.pkl")


def load_evidence(model: str) -> tuple:
    """What `python -m bench accuracy` saved (:func:`save_evidence`): ``(identifier, catalog, calib, test)``, the last two lists of ``Collected``.

    Raises FileNotFoundError naming the file and the command that writes it.
    """
    import pickle

    from logoid.catalog import Catalog
    from logoid.core.paths import Home
    from logoid.eval.run import Collected
    from logoid.identify import Identifier

    path = evidence_path(model)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `python -m bench accuracy` first")
    home = Home(home_path(model))
    cat = Catalog.open(home)
    collected = [Collected(q, ev) for q, ev in pickle.loads(path.read_bytes())]
    return (Identifier(home, cat), cat, [c for c in collected if c.query.split == "calib"],
            [c for c in collected if c.query.split == "test"])


def subset_metrics(ident, cat, calib: list, test: list, subsets) -> dict:
    """Test metrics of each channel subset (``("global", "local")``…) from collected evidence: ``before`` (the index's
    own fusion and threshold) and ``after`` (fusion fitted and rejection calibrated on ``calib``), by ``"+".join``."""
    from logoid.eval.metrics import evaluate
    from logoid.eval.run import apply_calibration, fit, fusion_scorer, to_results

    out = {}
    for subset in subsets:
        before = evaluate(to_results(ident, test, cat, subset), ident.threshold)
        try:
            model_, cal = fit(ident, calib, cat, channels=subset)
            after = evaluate(apply_calibration(to_results(ident, test, cat, subset, scorer=fusion_scorer(model_)),
                                               cal), cal.threshold)
            cal_d = cal.to_dict()
        except Exception as e:  # noqa: BLE001 - a channel with no right candidates cannot be fitted; say so
            after, cal_d = {"error": str(e)}, {}
        out["+".join(subset)] = {"before": before, "after": after, "calibration": cal_d}
    return out
