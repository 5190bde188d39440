"""Local channel: RootSIFT keypoints, the descriptor index and RANSAC verification, on threadless-dev photos.

Threshold on `split=calib`, reported on `split=test`. `local-sweep`: matching settings on cached searches;
`local-scale distractors|index|e2e`: icons beside the designs, index variants, a photo at 1k-10k; `roster`: distinct
logo-like references up to 180k; `roster-fused`: every channel fused among them; `roster-e2e`: a whole query there.
Wall times on a shared machine: compare rows of one run.
"""
