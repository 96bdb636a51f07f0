"""Representation methods: one shape (:class:`RegionEmbedder`: fit / transform / fit_transform / save / load) for
everything that turns a city into region embeddings, and a registry from a method kind to its class.

| kind                | class              | rows of the tables it makes                                           |
|---------------------|--------------------|-----------------------------------------------------------------------|
| `triplet_encoder`   | TripletEncoder     | MuseCL's RS / SV encoders, Tile2Vec, PG-SimCLR, Urban2Vec (visual), ablations |
| `backbone_features` | BackboneFeatures   | ResNet-18, Inception v3 (no contrastive training)                      |
| `pixel_stats`       | PixelStats         | Pixel stats RS / SV: colour and edge statistics, the floor (no learning) |
| `word2vec_poi_text` | PoiText            | POI-text (MuseCL eq. 7)                                               |
| `attentive_fusion`  | FusedRegions       | MuseCL, Fusion-svrv, MuseCL-InfoNCE, the pair ablations               |
| `image_text`        | ImageTextEmbedder  | UrbanCLIP, UrbanLN+SI / +SV and UrbanLN's ablations                   |

The stage modules (:mod:`musecl.stages`) build these from params.yaml and write their tables where the evaluation
reads them (`<paths.work>/embeddings/<name>.parquet`). How to add a method: docs/architecture.md.
"""
from musecl.methods.base import METHODS, City, RegionEmbedder, method_class, register_method
from musecl.methods.fusion import FusedRegions
from musecl.methods.image import BackboneFeatures, TripletEncoder, config_from_spec, resolve_weights
from musecl.methods.imagetext import ImageTextEmbedder, ImageTextRun
from musecl.methods.pixels import PixelStats
from musecl.methods.text import PoiText

__all__ = [
    "METHODS", "BackboneFeatures", "City", "FusedRegions", "ImageTextEmbedder", "ImageTextRun", "PixelStats", "PoiText", "RegionEmbedder", "TripletEncoder",
    "config_from_spec", "method_class", "register_method", "resolve_weights",
]
