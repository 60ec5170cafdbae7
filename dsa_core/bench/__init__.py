"""Benchmark implementations behind ``dsa bench``."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_results(out: Path, report: dict[str, Any], markdown: str) -> Path:
    """Every benchmark's results: JSON at ``out``, the Markdown summary next to it (``.md``), echoed to stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown)
    log.info("wrote %s and %s", out, md)
    print(markdown)
    return md
