"""`python -m archiver_cli`: the operator CLI."""

from __future__ import annotations

import sys

from archiver_cli.app import main

sys.exit(main())
