"""The embedded synthetic city: a deterministic generator of complete city bundles (docs/synthetic_city.md)."""
from musecl.synthetic.generate import city_latent_field, generate_city
from musecl.synthetic.latents import LATENT_NAMES, LatentField
from musecl.synthetic.presets import PRESET_NAMES, SyntheticCityConfig, preset

__all__ = [
    "LATENT_NAMES",
    "LatentField",
    "PRESET_NAMES",
    "SyntheticCityConfig",
    "city_latent_field",
    "generate_city",
    "preset",
]
