"""Multi-logo mosaics: several logos in one photo, found by `identify(photo, find_all=True)`.

Seeded n×n grids of real threadless-dev `split=test` photos (~2/3 known) on a noisy canvas, each rotated up to ±8°
and scaled to 60–100 % of its cell. A reported logo is right when its outline's centroid lies in a known tile and
names that tile's design; a wrong id names another design or lies on the background or an unknown tile; a repeat
(another outline of the tile's own design) is counted apart, since threadless photos often show several people
wearing the shirt. Targets: 2×2 recall ≥ 0.8 with ≤ 0.1 wrong ids per mosaic; 3×3 ≤ 0.1 wrong ids per mosaic. The
single-photo columns query each known tile's photo alone.
"""
