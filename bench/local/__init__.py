"""Local channel: RootSIFT keypoints, the descriptor index and RANSAC verification, on threadless-dev photos.

Threshold on `split=calib`, reported on `split=test`. `local-sweep`: matching and verification settings on cached
searches; `local-scale distractors|index|e2e`: icons beside the 276 designs, index variants against exact search,
photo end to end at 1k and 10k; `local-scale roster`: distinct logo-like references up to 180k (memory, latency,
accuracy, band-logo prints); `roster-fused`: every channel fused among them. Wall times on a shared machine (load
averages in the tables): compare rows of one run. `local`: the channel alone, features extracted fresh.
"""
