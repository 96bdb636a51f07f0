"""Visual encoders (MuseCL step 2): image caches, backbones, the trainer (shared with the baselines) and region
embeddings. Importable with torch, torchvision, numpy, pandas, pyarrow and Pillow only; see docs/encoders.md."""
from musecl.encoders.checkpoints import load_encoder
from musecl.encoders.config import LossSpec, TrainConfig, TrainResult
from musecl.encoders.data import sample_rows
from musecl.encoders.embed import embed_images, region_embeddings
from musecl.encoders.image_cache import ImageCache, build_image_cache, cache_from_arrays, image_table
from musecl.encoders.loop import train_encoder
from musecl.encoders.models import ImageEncoder, ModelSpec, build_encoder, imagenet_checkpoint

__all__ = [
    "ImageCache",
    "ImageEncoder",
    "LossSpec",
    "ModelSpec",
    "TrainConfig",
    "TrainResult",
    "build_encoder",
    "build_image_cache",
    "cache_from_arrays",
    "embed_images",
    "image_table",
    "imagenet_checkpoint",
    "load_encoder",
    "region_embeddings",
    "sample_rows",
    "train_encoder",
]
