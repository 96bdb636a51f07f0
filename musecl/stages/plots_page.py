"""An offline page for `dvc plots show`: an HTML template with Vega, Vega-Lite and Vega-Embed inlined.

DVC's default page loads these three scripts from a CDN, so it is blank without a network. This template carries
them instead, taken from the installed `vl-convert-python` wheel (PyPI; :func:`vl_convert.javascript_bundle`), in the
Vega-Lite major version of DVC's own plot templates. The figures stage writes it to :data:`TEMPLATE_PATH`
(`.dvc/config` `plots.html_template` points there, relative to `.dvc/`); it is generated, never committed. By hand:
``python -m musecl.stages.plots_page [PATH]``.

The template leaves out DVC's ``{scripts}`` placeholder (where the CDN tags would go) and keeps ``{plot_divs}`` and
``{refresh_tag}`` (`dvc_render.html`).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from musecl.storage import write_text

TEMPLATE_PATH = Path("reports/dvc_plots_template.html")
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>musecl: DVC plots</title>
    <!-- Vega __VEGA__, Vega-Lite __VL__ and Vega-Embed __EMBED__, inlined from vl-convert-python __VLC__:
         this page needs no network (musecl/stages/plots_page.py) -->
    <script type="text/javascript">
__BUNDLE__
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
        img { max-width: 1100px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def dvc_vega_lite_major() -> str:
    """The Vega-Lite major version of DVC's plot templates ("5" for `.../vega-lite/v5.json`)."""
    from dvc_render.vega_templates import TEMPLATES

    majors = {re.search(r"vega-lite/v(\d+)", t.DEFAULT_CONTENT.get("$schema", "")).group(1) for t in TEMPLATES}
    if len(majors) != 1:
        raise RuntimeError(f"DVC's plot templates use several Vega-Lite versions {sorted(majors)}: choose one")
    return majors.pop()


def offline_template() -> str:
    """The template text: DVC's placeholders around the inlined libraries (the newest Vega-Lite that vl-convert
    ships in DVC's major version)."""
    import vl_convert

    major = dvc_vega_lite_major()
    versions = [v for v in vl_convert.get_vegalite_versions() if v.split(".")[0] == major]
    if not versions:
        raise RuntimeError(f"vl-convert-python {vl_convert.__version__} ships no Vega-Lite {major}.x "
                           f"(it has {vl_convert.get_vegalite_versions()}); pin a version that does in requirements")
    bundle = vl_convert.javascript_bundle(vl_version=versions[-1])  # assigns window.vega, vegaLite, vegaEmbed
    for text in ("</script", "{plot_divs}", "{scripts}", "{refresh_tag}"):
        if text in bundle:
            raise RuntimeError(f"the vl-convert bundle contains {text!r}: it cannot be inlined in the DVC template")
    return (PAGE.replace("__VEGA__", vl_convert.get_vega_version()).replace("__VL__", versions[-1])
            .replace("__EMBED__", vl_convert.get_vega_embed_version())
            .replace("__VLC__", getattr(vl_convert, "__version__", "?")).replace("__BUNDLE__", bundle))


def write_template(path: str | Path = TEMPLATE_PATH) -> Path:
    """Write the offline template (atomically) and return its path."""
    write_text(offline_template(), path)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(write_template(args[0] if args else TEMPLATE_PATH))


if __name__ == "__main__":
    main()
