"""Allow ``python -m classroom``."""

from __future__ import annotations

import sys

from classroom.cli import main

sys.exit(main())
