"""The same photos through the library, no HTTP: ``Identifier.identify`` in N threads over one home, for a fixed time.

    python -m bench.serve.direct --home HOME --threads 2 --seconds 20 PHOTO...   # prints one JSON dict

Run by :mod:`bench.serve.run` in a process of its own (after the server is stopped) to measure what the cores can
do: the throughput the server's own is compared with. Threads share what the server shares (the model, the loaded
index) and keep their own catalog connection, OCR reader and Identifier, as ``logoid serve``'s threads do; each
photo is identified from its bytes, as an upload is. With ``--go FILE`` several such processes start together:
each, once warm, writes ``FILE.ready-<pid>`` and waits for ``FILE`` (which holds the start time, ``time.time()``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path


def measure(home_dir: Path, photos: list[Path], threads: int, seconds: float, *, torch_threads: int | None = None,
            go: Path | None = None) -> dict:
    t0 = time.perf_counter()
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    from logoid import Catalog, Identifier, create_embedder, open_home
    from logoid.engine.ocr import TextReader
    from logoid.index.store import IndexStore

    home = open_home(home_dir)
    store = IndexStore.load(home.index_dir)
    _ = store.descriptors, store.names  # loaded now, not lazily by two threads at once
    embedder = create_embedder(store.model_name)
    data = [(p.name, p.read_bytes()) for p in photos]
    load_s = time.perf_counter() - t0

    warmed, begin = threading.Barrier(threads + 1), threading.Barrier(threads + 1)
    lat: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    state = {"deadline": float("inf")}  # set once every thread is warm

    def worker(i: int) -> None:
        cat = Catalog.open(home)
        ident = Identifier(home, cat, embedder=embedder, store=store, reader=TextReader())
        try:
            with cat.snapshot():  # warm: every lazily built part built before the clock starts
                ident.identify(data[i % len(data)][1], path=data[i % len(data)][0])
        except Exception as e:  # noqa: BLE001 - counted, reported
            errors.append(f"warm-up: {e}")
        warmed.wait()
        begin.wait()
        k = i
        while time.time() < state["deadline"]:
            name, blob = data[k % len(data)]
            k += threads
            t = time.perf_counter()
            try:
                with cat.snapshot():
                    ident.identify(blob, path=name)
            except Exception as e:  # noqa: BLE001 - counted, reported
                errors.append(f"{name}: {e}")
                continue
            lat[i].append(time.perf_counter() - t)

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    warmed.wait()
    if go is not None:  # every thread is warm: say so, wait for the start time
        Path(f"{go}.ready-{os.getpid()}").write_text("")
        while not go.exists():
            time.sleep(0.02)
        time.sleep(0.05)
        start = float(go.read_text())
        time.sleep(max(0.0, start - time.time()))
    else:
        start = time.time()
    state["deadline"] = start + seconds
    begin.wait()
    for t in pool:
        t.join()
    end = time.time()
    wall = end - start
    flat = sorted(x for per in lat for x in per)
    return {"threads": threads, "seconds": seconds, "wall_s": round(wall, 3), "photos": len(flat),
            "photos_per_s": round(len(flat) / wall, 3) if wall > 0 else None,
            "p50_s": round(statistics.median(flat), 4) if flat else None,
            "p95_s": round(_quantile(flat, 0.95), 4) if flat else None,
            "load_s": round(load_s, 2), "errors": len(errors), "error_samples": errors[:5],
            "start": start, "end": end, "latencies": [round(x, 4) for x in flat]}


def _quantile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--torch-threads", type=int, default=None, help="torch's threads (default: torch's choice)")
    ap.add_argument("--go", type=Path, default=None, help="start with other processes: see the module's docstring")
    ap.add_argument("photos", nargs="+", type=Path)
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.home, args.photos, args.threads, args.seconds, torch_threads=args.torch_threads,
                             go=args.go)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
