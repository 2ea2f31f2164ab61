"""Provenance of a run: which code, which libraries, which machine (without naming the host).

Everything here is best effort and never raises: a results file must be writable from a tarball without
git, on a machine without CUDA.
"""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from reidlib.results.paths import repo_root

#: Packages whose versions every results file records.
TRACKED_PACKAGES = ("torch", "torchvision", "numpy", "reidlib")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state(cwd: Path | None = None) -> dict[str, object]:
    """``{"commit": <sha or "unknown">, "dirty": bool | None}`` of the repository holding reidlib.

    ``dirty`` is True when tracked files differ from the commit (untracked files do not count), None when
    git is unavailable.
    """
    cwd = cwd or repo_root()
    commit = _git(["rev-parse", "HEAD"], cwd)
    if not commit:
        return {"commit": "unknown", "dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def library_versions() -> dict[str, str]:
    """Versions of Python and of :data:`TRACKED_PACKAGES` (``"missing"`` when not installed)."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: str | None = None) -> dict[str, object]:
    """The compute device: ``{"device": "cpu"|"cuda:0"|..., "name": model name, "threads": int}``.

    ``device`` is what the run used; when None, CUDA is reported if available. No host name is recorded.
    """
    info: dict[str, object] = {"platform": f"{platform.system()} {platform.machine()}"}
    try:
        import torch

        info["threads"] = torch.get_num_threads()
        use_cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
        if use_cuda and torch.cuda.is_available():
            index = torch.device(device or "cuda").index or 0
            info["device"] = f"cuda:{index}"
            info["name"] = torch.cuda.get_device_name(index)
            return info
    except Exception:  # noqa: BLE001 - provenance must never break a run
        pass
    info["device"] = str(device) if device is not None else "cpu"
    info["name"] = _cpu_model()
    return info


def collect_provenance(device: str | None = None) -> dict[str, object]:
    """Git state, library versions, device and a UTC timestamp, ready to store in a results file."""
    return {
        "git": git_state(),
        "versions": library_versions(),
        "device": device_description(device),
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
