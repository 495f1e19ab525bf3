"""What both benchmarks record about the machine and the code they timed."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import sys
from typing import Any


def source_fingerprint(root: str) -> str:
    """sha256 (12 hex digits) of the .py files under ``root``, to tell which code was timed."""
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as fh:
                    digest.update(fh.read())
    return digest.hexdigest()[:12]


def cpu_model() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def base_info(package_root: str) -> dict[str, Any]:
    """Date, the timed source's fingerprint, CPU, cores, Python and platform."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "eingrad_source": source_fingerprint(package_root),
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
