"""ACR Run Archiver function app (Python v2 programming model): the worker indexes `app`, nothing more."""

import os

from shared.app import build_app

app = build_app(os.environ)
