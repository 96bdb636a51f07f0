"""Contrastive samples: which images should an encoder pull together?

MuseCL's first step (Algorithm 1, lines 3-5): count each region's mobility (m^in, m^out) and POI mix (POI^1..POI^K),
turn them into region similarities λ^PM and λ^POI, and build triplets (anchor, positive, negative) of images, where the
positive comes from the region most similar to the anchor's and the negative from a random region. Remote-sensing tiles
use λ^POI, street-view images λ^PM (the authors' README; swappable by parameter). The same triplet builder serves the
baselines through other *positive rules* (H3 neighbours, their union with the POI top-k, random positives).

The package is split by role: `similarity` (POI counts, λ, positive candidates) and `triplets` (sampling,
`TripletSet`) are the algorithm; `stage` is the `pairs` stage's reading, writing and summaries; `checks` measures pair
quality; `plots` draws the figures. Every name is re-exported here.
"""
from __future__ import annotations

from musecl.pairs.checks import (
    indicator_agreement,
    indicator_agreement_table,
    pair_checks,
    positive_pair_similarities,
    similarity_of_pairs,
    written_triplet_checks,
)
from musecl.pairs.plots import (
    SIMILARITY_LABELS,
    plot_indicator_agreement,
    plot_mobility_maps,
    plot_similarity_distributions,
    plot_source_similarities,
    plot_triplet_examples,
)
from musecl.pairs.similarity import (
    SIMILARITY_METRICS,
    degenerate_cause,
    distant_pairs,
    informative_regions,
    most_similar,
    neighbour_candidates,
    poi_category_counts,
    region_similarities,
    similarity_matrix,
    union_candidates,
)
from musecl.pairs.stage import (
    FALLBACK_RULES,
    INDICATOR_SOURCES,
    ON_DEGENERATE,
    example_title,
    pairs_plan,
    resolve_spec,
    skipped_modalities,
    skipped_triplets,
    write_skipped_triplets,
    modality_rng,
    modality_triplets,
    pair_metrics,
    poi_summary,
    read_triplets,
    region_indicator_tables,
    similarity_summary,
    triplet_summary,
    triplets_from_spec,
    write_pairs,
)
from musecl.pairs.triplets import (
    POSITIVE_RULES,
    TRIPLET_COLUMNS,
    ImageGroups,
    TripletSet,
    build_triplets,
    sample_triplets,
)

__all__ = [
    "FALLBACK_RULES", "ON_DEGENERATE", "degenerate_cause", "example_title", "pairs_plan", "resolve_spec",
    "skipped_modalities", "skipped_triplets", "write_skipped_triplets",
    "INDICATOR_SOURCES", "POSITIVE_RULES", "SIMILARITY_LABELS", "SIMILARITY_METRICS", "TRIPLET_COLUMNS",
    "ImageGroups", "TripletSet", "build_triplets", "distant_pairs", "indicator_agreement", "indicator_agreement_table",
    "informative_regions", "modality_rng", "modality_triplets", "most_similar", "neighbour_candidates", "pair_checks",
    "pair_metrics", "plot_indicator_agreement", "plot_mobility_maps", "plot_similarity_distributions",
    "plot_source_similarities", "plot_triplet_examples", "poi_category_counts", "poi_summary",
    "positive_pair_similarities", "read_triplets", "region_indicator_tables", "region_similarities",
    "sample_triplets", "similarity_matrix", "similarity_of_pairs", "similarity_summary", "triplet_summary",
    "triplets_from_spec", "union_candidates", "write_pairs", "written_triplet_checks",
]
