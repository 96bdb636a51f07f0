"""Image renderers of the synthetic city: remote-sensing tiles (from above) and street-view photos (at street level).

Both draw a cartoon city from the latent fields (`residential`, `commercial`, `green`, `water`, `affluence`,
`nightlife`, each in [0, 1]) at the image's location; docs/synthetic_images.md states how each latent shows up.

* `render_remote_sensing` (`remote_sensing`, `city_blocks`): a north-up tile of `extent_m` x `extent_m` metres. Per
  pixel: water (threshold on the sampled water field, so shorelines are sharp), tree canopy and grass (green), a
  quadtree street grid whose blocks shrink where the area is built up, buildings on lots (density from residential +
  commercial, footprint size from commercial, roof colours from type and affluence, pools from affluence), shadows,
  clouds and sensor effects.
* `render_street_view` (`street_view`, `facades`, `sprites`): a camera on a street looking along `heading_deg`
  (compass degrees). A per-pixel ray caster intersects the ground, the two rows of facades (or, in a view across the
  street, the facing row), an optional street end and a distant skyline; facades come from the field sampled 5-150 m
  ahead and 20-60 m to the sides, so the heading matters wherever the field varies in space. Sprites add trees,
  vehicles and pedestrians.

Every image gets acquisition noise (`acquisition`: exposure, white balance, gamma, haze, blur, pixel noise, JPEG
artefacts; the drawings add random occluders), so the latents are visible but not trivially decodable. All randomness
comes from the `rng` argument. The `*_labelled` variants also return the per-pixel scene class (SCENE_CLASSES, in
`palettes`) before noise; the tests and docs use it. `helpers` holds the argument checks, latent sampling, noise and
hashing both modalities share.
"""
from musecl.synthetic.render.helpers import LATENTS, METRES_PER_DEG_LAT, MIN_SIZE_PX
from musecl.synthetic.render.palettes import LABEL, SCENE_CLASSES
from musecl.synthetic.render.remote_sensing import render_remote_sensing, render_remote_sensing_labelled
from musecl.synthetic.render.street_view import render_street_view, render_street_view_labelled

__all__ = [
    "LABEL",
    "LATENTS",
    "METRES_PER_DEG_LAT",
    "MIN_SIZE_PX",
    "SCENE_CLASSES",
    "render_remote_sensing",
    "render_remote_sensing_labelled",
    "render_street_view",
    "render_street_view_labelled",
]
