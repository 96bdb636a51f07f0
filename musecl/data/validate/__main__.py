"""``python -m musecl.data.validate``: runs :func:`musecl.data.validate.cli.main`."""
from __future__ import annotations

import sys

from musecl.data.validate.cli import main

if __name__ == "__main__":
    sys.exit(main())
