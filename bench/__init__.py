"""logoid's benchmark harness: one entry point, subjects as packages, every run recorded as data.

    python -m bench list                 # every bench, by subject
    python -m bench speed                # run one (``make bench NAME=speed [ARGS=...]``)
    python -m bench publish              # regenerate BENCHMARKS.md and docs/benchmarks-history.md

Every bench that measures something records its run by default with :func:`bench.record.save_record` (one flag in
every bench skips that: ``--no-write``, :func:`bench.record.add_no_write`): one JSON file under
``bench/results/<subject>/`` (machine, commit, command, date, numbers, rendered tables), committed with the code.
Subjects never import each other; what several share is in ``bench/_common.py`` and ``bench/_designs.py``.
BENCHMARKS.md is generated from those records (:mod:`bench.publish`), never edited by hand. Caches and work files
(homes, features, OCR, evidence) go to ``bench/work/`` (not committed). Run everything from the repository root.

This module only declares what exists; it imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Subject:
    """A subject of the benchmarks: a package ``bench/<key>/`` whose docstring is its method notes."""

    title: str  # heading on the results page
    records: dict[str, str] = field(default_factory=dict)  # record name -> title, in page order


#: Subjects in page order. The results page anchors ``#<subject>`` and ``#<subject>-<record name>`` derive from
#: these keys, so README and code can cite them; renaming a key breaks those links.
SUBJECTS: dict[str, Subject] = {
    "speed": Subject("Speed", {"demo": "Speed on the demo catalog",
                               "photo-size": "Photo size: 800×600 to 8000×6000 through `logoid query`"}),
    "accuracy": Subject("Accuracy on threadless-dev", {
        "designs": "Every channel alone and fused, before and after calibration",
        "fusion-cv": "Fusion: regularisation by grouped cross-validation",
        "roc-points": "Fusion: ROC points at the low end",
        "finetune": "Fine-tuning the global channel",
    }),
    "local": Subject("Local channel", {
        "e2e": "Local channel end to end at 1k and 10k references",
        "sweep": "Local channel: recall methods (threadless-dev sweep)",
        "channel": "Local channel alone on threadless-dev",
        "distractors": "Local channel with distractor references",
        "index": "Descriptor index at scale",
        "roster": "Local channel on a roster of distinct references: layouts, memory, accuracy",
        "roster-nprobe": "Local channel on the roster: IVF lists visited",
        "roster-votes": "Local channel on the roster: votes a candidate needs",
        "roster-prints": "Local channel on the roster: band-logo prints",
        "roster-fused": "threadless-dev fused (every channel) among the roster's distinct references",
        "milvus": "Local channel's descriptor index: FAISS vs Milvus Lite on the roster",
        "milvus-server": "Local channel's descriptor index: FAISS vs a Milvus standalone server on the roster",
        "roster-e2e": "A whole query (every channel, one warm process) among the roster, up to 180k references",
    }),
    "mosaic": Subject("Multi-logo mosaics", {"designs": "Multi-logo mosaics of threadless-dev photos"}),
    "text": Subject("Text channel", {"band-logos": "Text channel on band-logos: clean, simulated prints, 200k roster",
                                     "fused": "threadless-dev fused with and without the text channel"}),
    "albums": Subject("Albums", {"protocols": "The three albums-dev protocols",
                                 "product": "albums-dev through the product commands (`logoid eval --task`)",
                                 "precision": "albums-dev answered by the index's vectors in fp32, bf16 and the frozen "
                                              "tower"}),
    "scale": Subject("Scale", {
        "faiss": "FAISS structures at 100k-3.6M vectors",
        "milvus": "Global vectors: FAISS vs Milvus Lite",
    }),
    "build": Subject("Building the index", {
        "stages": "Build stages: embedding and local features, extrapolated to 180k references",
        "whole": "A whole build of 10k distinct references, stage by stage, extrapolated to 180k",
    }),
    "concurrency": Subject("Concurrency and crashes", {
        "processes": "8 readers beside 2 writers; a write killed at every step",
    }),
    "serve": Subject("Server", {
        "warm": "logoid serve: ready time, warm latency at 1, 4 and 16 clients, cold query vs --server",
    }),
}


@dataclass(frozen=True)
class Command:
    """One ``python -m bench NAME``: the module whose ``main(argv)`` runs it."""

    module: str
    subject: str  # "" for the harness's own commands
    help: str
    records: bool = True  # records its run by default (``--no-write`` skips it); False: fills a cache, measures nothing


COMMANDS: dict[str, Command] = {
    "run": Command("bench.run", "", "speed + threadless-dev accuracy: what plain `make bench` runs"),
    "speed": Command("bench.speed.demo", "speed", "embedding throughput, build-index, warm/cold query on the demo"),
    "photo-size": Command("bench.speed.photo_size", "speed",
                          "one scene at 800×600, 4000×3000, 8000×6000: `logoid query` time and peak memory"),
    "accuracy": Command("bench.accuracy.designs", "accuracy",
                        "threadless-dev: every channel alone and fused, before/after calibration"),
    "fusion-cv": Command("bench.accuracy.fusion_cv", "accuracy", "fusion settings on saved threadless-dev evidence"),
    "roc-points": Command("bench.accuracy.roc_points", "accuracy", "ROC points at the low end, saved evidence"),
    "finetune": Command("bench.accuracy.finetune", "accuracy", "global channel before/after fine-tuning"),
    "local": Command("bench.local.channel", "local", "local channel alone on threadless-dev, features extracted fresh"),
    "local-sweep": Command("bench.local.sweep", "local", "sweep local-channel settings with cached features"),
    "local-scale": Command("bench.local.scale", "local",
                           "distractors, descriptor index at scale, end to end, roster, Milvus Lite"),
    "mosaic": Command("bench.mosaic.mosaics", "mosaic", "several logos per photo: n×n mosaics, find_all"),
    "text": Command("bench.text.channel", "text", "text channel on band-logos: clean, prints, 200k roster"),
    "text-cache": Command("bench.text.cache", "text", "fill the OCR caches the text bench reads (no record)",
                          records=False),
    "text-fused": Command("bench.text.fused_check", "text", "threadless-dev fused with and without text"),
    "albums": Command("bench.albums.run", "albums", "the three albums-dev protocols (+ the product commands)"),
    "albums-ocr": Command("bench.albums.ocr", "albums", "OCR every albums-dev cover once (a cache, no record)",
                          records=False),
    "albums-product": Command("bench.albums.product", "albums", "albums-dev through `logoid eval --task`"),
    "albums-precision": Command("bench.albums.precision", "albums",
                                "albums-dev answered by the vectors a build makes in fp32, bf16, the frozen tower"),
    "scale": Command("bench.scale.structures", "scale", "FAISS structures at 100k, 1M, 3.6M synthetic vectors"),
    "milvus": Command("bench.scale.milvus", "scale", "FAISS vs Milvus Lite on the same vectors"),
    "build-whole": Command("bench.local.build_whole", "build",
                           "a whole build-index of 10k distinct references, stage by stage, extrapolated to 180k"),
    "build": Command("bench.build.stages", "build",
                     "embedding stage vs raw forward (fp32, bf16), feature stage at 1..N workers, 180k build time"),
    "concurrency": Command("bench.concurrency.run", "concurrency",
                           "8 readers beside 2 writers for a minute; every write killed (SIGKILL) at every step"),
    "serve": Command("bench.serve.run", "serve",
                     "logoid serve: ready time, RSS, warm latency at 1/4/16 clients, cores' limit, cold vs --server"),
    "publish": Command("bench.publish", "", "regenerate BENCHMARKS.md and docs/benchmarks-history.md", records=False),
    "import-legacy": Command("bench.legacy", "", "one-off: turn the old dated BENCHMARKS.md log into records",
                             records=False),
}


def anchor(subject: str, name: str | None = None) -> str:
    """The stable anchor of a subject (``local``) or of one of its records (``local-e2e``) on BENCHMARKS.md."""
    return subject if name is None else f"{subject}-{name}"
