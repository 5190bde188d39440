"""Building the index: the two stages that grow with the catalog, on generated logos, extrapolated to 180k.

`python -m bench build` takes N distinct generated logos (`bench/_logos.py`, the same ones the large-catalog benches
use) as one catalog and measures, in one run on one machine: the image tower's raw forward pass (model inputs
already made, fp32 and bf16 autocast, at several batch sizes; the best is the reference), the embedding stage as a
build runs it (read, augment, preprocess in a thread beside the model, cache every image's vectors) at fp32 and
bf16, with the stage's rate as a share of the raw forward pass of the same precision, and the cosine between each
variant's fp32 and bf16 vectors; then the local-feature stage (RootSIFT, normal and inverted, into the feature
cache) at 1 and more worker processes. Every stage starts from empty caches. The 180k extrapolation is
references × variants / embedding rate + references / feature rate: both stages are linear in the catalog; the
index structures built after them (FAISS, the descriptor index, the gallery calibration) are not in it — the
1k-180k scale table measures those. On a CPU shared with other work the wall-clock rates are lower bounds and the
stage's share of the raw pass is noisy; the same share per CPU-second of the process (the model's threads and the
reader's together) says what the reader costs beside the model however busy the machine is.
"""
