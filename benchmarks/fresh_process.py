"""Shared by the benchmarks that time each method in a fresh process: peak-RSS probes and the
runner that starts ``<script> --worker <spec.json>`` and reads its last stdout line as JSON."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path


def _status_kib(field: str) -> int | None:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return None


def rss_kib() -> int:
    """Current resident set size, KiB."""
    return _status_kib("VmRSS:") or 0


def peak_kib() -> int:
    """Peak RSS since the last :func:`reset_peak` (VmHWM; ``ru_maxrss`` of a forked child starts at
    the parent's RSS, so it is only the fallback)."""
    peak = _status_kib("VmHWM:")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark of this process (where /proc allows it)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def run_worker(script: str, spec: dict, spec_path: Path, what: str) -> dict:
    """Write ``spec`` to ``spec_path``, run ``script --worker spec_path`` in a fresh interpreter and
    return its JSON result with ``ms`` (the timed repeats in milliseconds) and ``out`` added."""
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, script, "--worker", str(spec_path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["ms"] = [1000 * t for t in res["times_s"]]
    res["out"] = spec["out"]
    return res


def write_results(out, stem: str, lines: list[str], raw: dict) -> Path:
    """Write ``out/<stem>.md`` (the lines) and ``out/<stem>.json`` (``raw``); returns the .md path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (out / f"{stem}.json").write_text(json.dumps(raw, indent=2))
    print(f"wrote {out / (stem + '.md')}")
    return out / f"{stem}.md"
