"""Size presets of the synthetic city: `tiny` (tests), `default` (the whole pipeline on 2 CPU cores), `paper` (GPU).

Every field is a knob of the generator (docs/synthetic_city.md explains what each one drives).
`preset(name, **overrides)` returns a frozen config; the generator writes all of its values into the bundle's city.json.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SyntheticCityConfig:
    """All parameters of one synthetic city (with the seed given to `generate_city`, they determine it fully)."""

    preset: str = "default"
    name: str = "synthetic-default"
    # ---- geographic frame ----------------------------------------------------------------------------------------
    center_lon: float = 116.40  # any place on Earth works; only the frame (H3 cells, lon/lat) depends on it
    center_lat: float = 39.90
    target_regions: int = 300  # sets the city's area: target_regions x the H3 cell area at the centre (about)
    boundary_roughness: float = 0.18  # relative amplitude of the random harmonics that make the boundary irregular
    h3_resolution: int = 8
    raster_cell_m: float = 100.0  # resolution of the latent rasters
    river: bool = True
    river_width_m: float = 250.0
    lake: bool = True
    lake_radius_km: float = 0.7
    n_subcentres: int = 3  # secondary business centres besides the CBD
    noise_length_km: float = 0.8  # correlation length of the spatial noise in the latent fields
    noise_strength: float = 0.35  # weight of that noise relative to the structured part
    # ---- POIs ----------------------------------------------------------------------------------------------------
    pois_per_region: float = 140.0  # city-wide mean number of POIs per region (paper, New York: 71,893 / 517 = 139)
    # ---- mobility ------------------------------------------------------------------------------------------------
    n_trips: int = 80_000  # OD trips over one week (trips.parquet)
    trip_decay_km: float = 3.0  # gravity-model distance decay length
    start_date: str = "2024-03-04"  # a Monday; trips cover 7 days from it, taxi shifts start on it
    n_taxis: int = 300
    taxi_shift_hours: float = 10.0
    gps_interval_s: tuple[float, float] = (30.0, 60.0)  # a GPS fix every U(a, b) seconds
    gps_noise_m: float = 8.0
    # ---- images --------------------------------------------------------------------------------------------------
    rs_size_px: int = 64
    rs_per_region: int = 3  # remote-sensing tiles per region (paper: 3.7 Beijing, 2.1 Shanghai, 2.3 New York; mean 2.7)
    sv_size_px: int = 96
    sv_per_region: float = 10.0  # city-wide mean number of street-view images per region (>= 1 everywhere; paper:
    # 16.1 Beijing, 10.4 Shanghai, 86.3 New York; the lowest, because every image costs trunk passes on the CPU)
    street_spacing_m: float = 160.0  # spacing of the street grid the street-view cameras stand on


_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        name="synthetic-tiny",
        target_regions=32,
        n_subcentres=2,
        lake=False,
        pois_per_region=50.0,
        n_trips=3_000,
        n_taxis=12,
        taxi_shift_hours=4.0,
        rs_size_px=32,
        sv_size_px=80,
        sv_per_region=3.0,
    ),
    "default": dict(name="synthetic-default"),
    "paper": dict(
        name="synthetic-paper",
        target_regions=900,
        n_subcentres=4,
        pois_per_region=150.0,
        n_trips=400_000,
        n_taxis=2_000,
        taxi_shift_hours=12.0,
        rs_size_px=256,
        sv_size_px=299,
        sv_per_region=30.0,
    ),
}
PRESET_NAMES = tuple(_PRESETS)


def preset(name: str, **overrides: Any) -> SyntheticCityConfig:
    """The named preset (`tiny`, `default`, `paper`) with `overrides` applied to any of its fields.

    An override of None keeps the preset's value: params.yaml lists the usual keys of `data.synthetic.overrides` as
    null, so `dvc exp run -S data.synthetic.overrides.river=false` works without Hydra's `+` prefix.
    """
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if name not in _PRESETS:
        raise ValueError(f"unknown synthetic city preset '{name}' (expected one of {list(PRESET_NAMES)})")
    fields = {f.name for f in dataclasses.fields(SyntheticCityConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown synthetic city config field(s) {unknown} (valid fields: {sorted(fields)})")
    values = {**_PRESETS[name], **overrides, "preset": name}
    if "gps_interval_s" in values:
        values["gps_interval_s"] = tuple(float(v) for v in values["gps_interval_s"])
    config = SyntheticCityConfig(**values)
    check_config(config)
    return config


def check_config(config: SyntheticCityConfig) -> None:
    """Raise ValueError naming the first field whose value cannot make a city."""
    positive = ("target_regions", "raster_cell_m", "river_width_m", "lake_radius_km", "noise_length_km",
                "pois_per_region", "trip_decay_km", "taxi_shift_hours", "sv_per_region", "street_spacing_m")
    for field in positive:
        if not getattr(config, field) > 0:
            raise ValueError(f"synthetic city config: {field} must be > 0, got {getattr(config, field)!r}")
    for field in ("n_trips", "n_taxis", "n_subcentres"):
        if int(getattr(config, field)) < 0:
            raise ValueError(f"synthetic city config: {field} must be >= 0, got {getattr(config, field)!r}")
    if config.n_trips == 0 and config.n_taxis == 0:
        raise ValueError("synthetic city config: n_trips and n_taxis are both 0 (a bundle needs some mobility data)")
    if not 0 <= config.boundary_roughness < 0.5:
        raise ValueError(
            f"synthetic city config: boundary_roughness must be in [0, 0.5), got {config.boundary_roughness}"
        )
    if not 0 <= config.h3_resolution <= 15:
        raise ValueError(f"synthetic city config: h3_resolution must be in 0..15, got {config.h3_resolution}")
    if not (-180 <= config.center_lon <= 180 and -80 <= config.center_lat <= 80):
        raise ValueError(f"synthetic city config: centre ({config.center_lon}, {config.center_lat}) out of range "
                         "(lon in [-180, 180], lat in [-80, 80])")
    lo, hi = config.gps_interval_s
    if not 0 < lo <= hi:
        raise ValueError(
            f"synthetic city config: gps_interval_s must be (a, b) with 0 < a <= b, got {config.gps_interval_s}"
        )
    if isinstance(config.rs_per_region, bool) or int(config.rs_per_region) != config.rs_per_region \
            or config.rs_per_region < 1:
        raise ValueError(f"synthetic city config: rs_per_region must be an integer >= 1, got {config.rs_per_region!r}")
    if config.rs_size_px < 8:
        raise ValueError(f"synthetic city config: rs_size_px must be >= 8, got {config.rs_size_px}")
    if config.sv_size_px < 75:
        raise ValueError(
            f"synthetic city config: sv_size_px must be >= 75 (Inception-v3's minimum), got {config.sv_size_px}"
        )
