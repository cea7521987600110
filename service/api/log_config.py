"""Logging for `chopmark serve`: uvicorn's own lines, and the service's at INFO with the time
and the logger's name (start-up steps, refused requests and why, storage and database trouble)."""

from __future__ import annotations

import copy
from typing import Any

from uvicorn.config import LOGGING_CONFIG

SERVICE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def serve_log_config(level: str = "INFO") -> dict[str, Any]:
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["service"] = {"format": SERVICE_FORMAT}
    config["handlers"]["service"] = {
        "formatter": "service",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    for name in ("service", "generation", "provenance", "similarity"):
        config["loggers"][name] = {"handlers": ["service"], "level": level, "propagate": False}
    return config
