"""The local channel's descriptor index in Milvus Lite beside FAISS, on the roster catalog (issue 24).

    python -m bench local-scale milvus [--refs 1000 --refs 10000] [--milvus-index auto --milvus-index IVF_SQ8]

For each size, the FAISS index of ``bench.local.roster`` (built or reused) and a Milvus Lite collection of the same
references' descriptors (``MilvusDescriptorIndex``, normal variants, inverted prints by flipped photo descriptors as
FAISS does; ``auto`` = what ``build-index --backend milvus`` makes on Lite: IVF_FLAT, ~4·sqrt(n) lists, 16 probed;
others with the same lists) are each opened in a fresh process and answer the first ``--timed`` threadless-dev test photos end to
end through the local channel alone (decode + SIFT + search + verification, both cores). Milvus Lite 3 runs in the
process (a gRPC server on Python threads), so the process's memory is all of it. Same top answer as FAISS is
counted photo by photo. ``--milvus-server``: the same in a Milvus standalone server started for the run on this
machine (``bench._milvus_server``; ``auto`` = HNSW there, as on any server), its own process's memory beside the
client's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import DATA, WORK, fmt, table
from bench.local import roster, sweep
from logoid.identify.match import LocalConfig

DIR = WORK / "roster-milvus"


def _path(n: int, index_type: str, server: bool = False) -> Path:
    return DIR / f"{n}refs-{index_type}{'-server' if server else ''}" / "descriptors"


def build(n: int, index_type: str, data: Path = DATA, uri: str | None = None, server_data: Path | None = None) -> dict:
    """Insert the ``n``-reference roster's descriptors into a Milvus Lite file (or reuse it), or into the server at
    ``uri`` (always anew: a bench run starts its own server, ``server_data`` its data folder); the build facts."""
    import shutil

    from bench._milvus_server import disk_mb
    from logoid.index.descriptor_structure import DescriptorConfig
    from logoid.index.milvus import MilvusConfig
    from logoid.index.milvus_descriptors import SUFFIX, MilvusDescriptorIndex

    path = _path(n, index_type, server=uri is not None)
    facts = path.with_name("build.json")
    if uri is None and facts.exists():
        return json.loads(facts.read_text())
    shutil.rmtree(path.parent, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = LocalConfig()
    items = roster.LazyItems(roster.catalog(n, data), cfg)
    rows = sum(len(f[0]) for _, f in items)  # the stored rows (normal variants), to size the lists as auto does
    nlist = DescriptorConfig().auto_nlist(rows)
    mcfg = MilvusConfig(uri=uri or str(path.parent / "milvus.db"),
                        index_type=None if index_type == "auto" else index_type, nlist=nlist, nprobe=16)
    # one server holds every size and type of a run: a collection each
    name = f"roster_{n}_{index_type.lower()}{SUFFIX}" if uri else mcfg.collection_for(1) + SUFFIX
    t = time.perf_counter()
    dindex = MilvusDescriptorIndex.build(items, mcfg, name, feature_config=cfg.extract)
    build_s = time.perf_counter() - t
    dindex.save(path)
    c = dindex.rows.config
    params = f"M {c.hnsw_m}, ef {c.ef_search}" if c.chosen_index() == "HNSW" else f"nlist {c.nlist}, nprobe {c.nprobe}"
    out = {"refs": n, "descriptors": dindex.ntotal, "structure": f"{dindex.structure()}, {params}", "build_s": build_s,
           "disk_mb": disk_mb(server_data) if server_data else disk_mb(path.parent), "server": bool(uri)}
    facts.write_text(json.dumps(out, indent=1))
    return out


def query(path: Path, backend: str, timed: int, threads: int = 2, data: Path = DATA,
          server_pid: int | None = None) -> dict:
    """Open the index at ``path`` (``faiss``: SQ8 codes in RAM, as the roster's ``ram`` layout; ``milvus``) and
    answer the first ``timed`` test photos end to end; per-stage medians, the top answer of each, memory."""
    import cv2
    import faiss

    cfg = LocalConfig()
    mem0 = roster._status_mb()
    t = time.perf_counter()
    if backend == "faiss":
        from logoid.index.descriptors import DescriptorIndex

        dindex = DescriptorIndex.load(path, mmap=False)
    else:
        from logoid.index.milvus_descriptors import MilvusDescriptorIndex

        dindex = MilvusDescriptorIndex.load(path)
    load_s = time.perf_counter() - t
    faiss.omp_set_num_threads(threads)
    cv2.setNumThreads(threads)
    designs = data / "threadless-dev"
    rows = [r for r in sweep.manifest(designs) if r["split"] == "test"][:timed]
    stages, tops = roster.time_photos(dindex, rows, designs, cfg)
    right = [top == int(r["id"]) for r, top in zip(rows, tops, strict=True) if r["role"] == "enrolled"]
    out = {"backend": backend, "load_s": load_s, "mem_before_load": mem0, **stages, "tops": tops,
           "known": len(right), "right": int(sum(right)), "mem_after": roster._status_mb()}
    if server_pid:
        from bench._milvus_server import memory_mb

        out["server_mem"] = memory_mb(server_pid)
    return out


def _fresh(path: Path, backend: str, timed: int, server=None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        subprocess.run([sys.executable, "-m", "bench.local.roster_milvus", "query", str(path), "--backend", backend,
                        "--timed", str(timed), "--out", tmp.name,
                        *(["--server-pid", str(server.pid)] if server else [])], check=True)
        return json.loads(Path(tmp.name).read_text())


def run(sizes: list[int], index_types: list[str], timed: int = 10, data: Path = DATA, server: bool = False) -> dict:
    """FAISS, then each Milvus index type, per size; ``server``: in a Milvus standalone server started for the run
    (``bench._milvus_server``) instead of Milvus Lite files."""
    if server:
        from bench._milvus_server import running

        with running(WORK / "milvus-server") as srv:
            return _run(sizes, index_types, timed, data, srv)
    return _run(sizes, index_types, timed, data, None)


def _run(sizes: list[int], index_types: list[str], timed: int, data: Path, srv) -> dict:
    cfg = LocalConfig()
    out: dict = {"_meta": {"timed": timed, "versions": _versions(srv), "server": bool(srv)}}
    for n in sizes:
        facts = roster.build(n, cfg, n, data=data)
        got = _fresh(roster.index_path(n, cfg), "faiss", timed)
        out[f"{n} faiss"] = {**facts, **got, "same_top": timed}
        print(n, "faiss", {k: v for k, v in got.items() if k not in ("tops",) and not k.startswith("mem")},
              file=sys.stderr, flush=True)
        for kind in index_types:
            # built in a process of its own: Milvus Lite serves one process at a time, and the query's is fresh
            subprocess.run([sys.executable, "-m", "bench.local.roster_milvus", "build", str(n), kind,
                            *(["--uri", srv.uri, "--server-data", str(srv.data)] if srv else [])], check=True)
            mf = json.loads(_path(n, kind, bool(srv)).with_name("build.json").read_text())
            mg = _fresh(_path(n, kind, bool(srv)), "milvus", timed, srv)
            same = sum(a == b for a, b in zip(got["tops"], mg["tops"], strict=True))
            out[f"{n} milvus {kind}"] = {**mf, **mg, "same_top": same}
            print(n, kind, {k: v for k, v in mg.items() if k not in ("tops",) and not k.startswith("mem")},
                  "same top", same, file=sys.stderr, flush=True)
    out["_meta"]["load_avg"] = Path("/proc/loadavg").read_text().split()[:3]
    return out


def _versions(srv=None) -> str:
    import faiss
    import pymilvus

    where = f"Milvus standalone server {srv.version} (PyPI `milvus`)" if srv else \
        f"milvus-lite {__import__('milvus_lite').__version__}"
    return f"faiss {faiss.__version__}, pymilvus {pymilvus.__version__}, {where}"


def markdown(res: dict) -> str:
    meta = res["_meta"]
    rows = []
    for r in roster.runs(res):
        m, sm = r["mem_after"], r.get("server_mem") or {}
        rows.append([r["refs"], r["descriptors"], r["structure"], fmt(r["build_s"], 0), fmt(r["disk_mb"], 0),
                     fmt(r["load_s"], 1), fmt(m["VmRSS"], 0), fmt(m["RssAnon"], 0), fmt(m["VmHWM"], 0)]
                    + ([fmt(sm["VmRSS"], 0) if sm else "", fmt(sm["RssAnon"], 0) if sm else ""] if meta.get("server")
                       else [])
                    + [r["e2e_p50_s"], r["e2e_p90_s"], r["search_s"], f"{r['right']}/{r['known']}",
                       f"{r['same_top']}/{r['timed']}"])
    where = ("a Milvus standalone server started for the run on this machine (its own process: its memory in "
             "the server columns; disk = its data folder after the build)") if meta.get("server") else \
        "Milvus Lite 3, which runs inside the process, so that is all of it"
    return (f"The local channel's descriptor index in FAISS and in {'a Milvus server' if meta.get('server') else 'Milvus Lite'}, the same roster references "
            f"(bench/local/roster_milvus.py; {meta['versions']}). Each opened in a fresh process; the first "
            f"{meta['timed']} threadless-dev test photos end to end on both cores (decode + SIFT + search + "
            "verification; p50/p90 of the sum, search a median). Memory from /proc/self/status after them: resident, "
            f"anonymous, peak; Milvus: {where}. `right` = known photos "
            "whose top answer is their design; `same top` = photos with FAISS's top answer (FAISS: SQ8 re-ranking in "
            f"RAM). Load average at the end {' '.join(meta.get('load_avg', []))}.\n\n"
            + table(["refs", "descriptors", "index", "build s", "disk MB", "open s", "resident MB", "anon MB",
                     "peak MB"] + (["server resident MB", "server anon MB"] if meta.get("server") else [])
                    + ["p50 s", "p90 s", "search s", "right", "same top"], rows))


def summary(res: dict) -> str:
    parts = [f"{r['refs']} refs {r['structure']}: p50 {fmt(r['e2e_p50_s'])} s, resident "
             f"{fmt(r['mem_after']['VmRSS'], 0)} MB"
             + (f" + server {fmt(r['server_mem']['VmRSS'], 0)} MB" if r.get("server_mem") else "")
             for r in roster.runs(res)]
    return "; ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Query a FAISS or Milvus Lite roster index in this process (run by "
                                             "`python -m bench local-scale milvus`).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("query")
    q.add_argument("index", type=Path)
    q.add_argument("--backend", choices=["faiss", "milvus"], required=True)
    q.add_argument("--timed", type=int, default=20)
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--server-pid", type=int, default=None, help="also read this Milvus server process's memory")
    b = sub.add_parser("build")
    b.add_argument("n", type=int)
    b.add_argument("kind")
    b.add_argument("--uri", default=None, help="a Milvus server (default: a Milvus Lite file)")
    b.add_argument("--server-data", type=Path, default=None, help="the server's data folder (its disk use)")
    a = ap.parse_args(argv)
    if a.cmd == "build":
        build(a.n, a.kind, uri=a.uri, server_data=a.server_data)
        return 0
    a.out.write_text(json.dumps(query(a.index, a.backend, a.timed, server_pid=a.server_pid)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
