"""Building the index: the two stages that grow with the catalog, on generated logos, extrapolated to 180k.

`python -m bench build` takes N distinct generated logos (`bench/_logos.py`, as the large-catalog benches) as one
catalog and measures in one run: the image tower's raw forward pass (inputs already made, fp32 and bf16 autocast,
eager and frozen, at several batch sizes; the best is the reference), the embedding stage as a build runs it (worker
processes augmenting in turns with the model, and the reader thread; every vector cached) with its rate as a share
of the raw pass of the same precision, paired runs between two raw passes (the median share), and each variant's
cosine to its fp32 vector; then the local-feature stage (RootSIFT into the feature cache) at 1 and more processes.
Every stage starts from empty caches. 180k = references × variants / embedding rate + references / feature rate
(both linear in the catalog); the index structures built after them are in the 1k-180k scale table instead.
`build-whole` (bench/local/build_whole.py, beside the roster catalog it builds) runs a whole `build-index` of 10k
distinct roster references stage by stage and scales it to 180k, the index structures as the straight build measured.
"""
