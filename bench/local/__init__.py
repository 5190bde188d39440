"""Local channel: RootSIFT keypoints, the descriptor index and RANSAC verification, alone, on threadless-dev photos.

Threshold for open-set accuracy chosen on `split=calib`, reported on `split=test`; settings chosen on calib.
`local-sweep` compares matching and verification settings on cached features and searches. `local-scale
distractors` enrols simple-icons brand logos beside the 276 designs; `local-scale index` times descriptor-index
variants (IVF lists, PQ / fast-scan / float codes, HNSW quantiser, nprobe) with recall against exact search, larger
catalogs repeating real codes under new ids; `local-scale e2e` measures decode + SIFT + search + verification per
photo at 1k references (real) and 10k (designs, 3,000 icons, synthetic noisy joins of icons), with accuracy and
memory. Wall times on a machine other jobs may share (load averages in the tables): compare rows of one run.
`local`: the channel alone on every photo, features extracted fresh (no cache).
"""
