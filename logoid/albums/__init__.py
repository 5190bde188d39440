"""Album covers: style features, genre from a cover, the artist of an unseen album (see ``features``)."""

from .features import (
    ArtistFusion,
    ArtistScorer,
    CoverFeatureConfig,
    GenreClassifier,
    artist_name_index,
    colour_stats,
    cover_features,
    genre_features,
    ocr_text,
    text_amount,
    text_artist_scores,
    text_features,
)

__all__ = [
    "ArtistFusion", "ArtistScorer", "CoverFeatureConfig", "GenreClassifier",
    "artist_name_index", "colour_stats", "cover_features", "genre_features", "ocr_text", "text_amount",
    "text_artist_scores", "text_features",
]
