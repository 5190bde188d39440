"""Albums: genre from a cover, artist of an unseen album, text search by genre, on albums-dev (1,237 real covers).

The data set's protocols: genre by 5-fold cross-validation over artist-disjoint `genre_fold`; artist with gallery,
query and unknown artists and a calib / test split by artist (80 enrolled artists); text search with "a {genre}
album cover", before and after fine-tuning the projections on the other folds' captions. The product rows run
`logoid eval --task genre|artist` and the `catalog import` → `artist fit` path as subprocesses (the numbers users
get); the research ablation runs the same protocols on cached arrays to show what each step adds. `albums-ocr` reads
every cover once (cached). `albums-precision` answers the protocols from the vectors a build makes in each precision.
"""
