"""The HTTP service: a FastAPI app with the recognition API, health and metrics endpoints, and the drawing page.

`digitscan serve` runs it with uvicorn; in Python, `run(Settings(port=9000))` or `create_app(settings)` for tests.
"""

from digitscan.serve.app import create_app, run
from digitscan.serve.settings import Settings, get_settings

__all__ = ["Settings", "create_app", "get_settings", "run"]
