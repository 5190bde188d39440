"""Speed: the demo catalog (24 simple-icons logos) built and queried on this machine.

`python -m bench speed` (plain `make bench` runs it too). Model load = creating the default embedder and its first
embedding. Embedding throughput: 64 decoded images → vectors (preprocessing included) against the raw forward pass
on ready tensors, same run, median of 3. build-index cold (fresh caches), then warm. Query warm: `Identifier.identify`
on the demo's known photo after a warm-up, median of 7; cold: a whole `logoid query --json` process, median of 3.
`photo-size`: the demo's Starbucks print at 800×600, 4000×3000 and 8000×6000, each a cold `logoid query --json`; wall
and CPU time and peak RSS from ``wait4``, medians, as shipped (decoded straight to the size the channels read it at)
and decoded at full size, interleaved.
"""
