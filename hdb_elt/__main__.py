"""Allow ``python -m hdb_elt``."""

from __future__ import annotations

import sys

from hdb_elt.cli import main

sys.exit(main())
