"""`python -m shared.cli`: the operator CLI."""

from __future__ import annotations

import sys

from shared.cli.app import main

sys.exit(main())
