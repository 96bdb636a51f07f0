"""Stage glue: one module per DVC stage family that turns params.yaml into methods (:mod:`musecl.methods`), runs them
on the city and writes their outputs where the next stage reads them. Notebooks call these; the algorithms live in
the packages below them (see docs/architecture.md for the layers and what may import what)."""
