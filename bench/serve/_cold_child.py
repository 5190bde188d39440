"""One cold `logoid query`, step by step, in this fresh process: prints a JSON dict of seconds per step.

    python bench/serve/_cold_child.py HOME PHOTO

Run by ``bench/serve/cold.py`` (with ``PYTHONPATH`` pointing at another source tree for a baseline), so it imports
nothing from ``bench`` and only the public API from logoid. The steps are those `logoid query` goes through, forced
one after the other so each can be timed; the lazy loads a query triggers happen in the step that names them.
"""

from __future__ import annotations

import json
import sys
import time


def main(home_dir: str, photo: str) -> dict:
    steps: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps[name] = round(now - t, 4)
        t = now

    import logoid.cli  # noqa: F401 - what `logoid` imports before it parses a command

    lap("cli_import")
    import logoid

    home = logoid.open_home(home_dir)
    catalog = logoid.Catalog.open(home)
    ident = logoid.Identifier(home, catalog)
    store = ident.store  # sidecar + global vectors
    _ = (store.descriptors, store.names)  # the local channel's descriptor index, the text channel's names
    lap("index_load")
    import torch  # noqa: F401

    lap("torch_import")
    from PIL import Image

    emb = ident.embedder  # checked against the index: the weights hash
    emb.embed_images([Image.new("RGB", (64, 48), (90, 120, 150))])  # whatever the first image needs built
    lap("model_build")
    _ = ident.reader.available  # RapidOCR's ONNX sessions
    lap("ocr_load")
    answer = ident.identify(photo)
    lap("query")
    steps["total_in_process"] = round(sum(steps.values()), 4)
    steps["answer"] = answer.best.name if answer.accepted and answer.best else None
    return steps


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
