"""What state the measuring device is in: the figures a latency depends on besides the model.

A Jetson's latency changes with its power mode (`nvpmodel`), with `jetson_clocks` (clocks
pinned at their maximum, or left to scale), and with the TensorRT and JetPack it runs; a
discrete GPU's with its clocks and driver. The bench reports what it finds as strings (the
study run's `device.*` tags); a probe that finds nothing is left out, never guessed.
Pure Python, no torch: it runs on the slim device bench.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path


def _run(command: Sequence[str], timeout: float = 20.0) -> str:
    """A command's output, or "" when it is absent, fails or hangs."""
    if shutil.which(command[0]) is None and not os.access(command[0], os.X_OK):
        return ""
    try:
        proc = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip().strip("\x00")
    except OSError:
        return ""


def power_mode() -> dict[str, str]:
    """`nvpmodel -q`: 'NV Power Mode: 15W' and the mode's number."""
    out = _run(["nvpmodel", "-q"])
    name = re.search(r"NV Power Mode:\s*(.+)", out)
    number = re.search(r"^\s*(\d+)\s*$", out, re.MULTILINE)
    return {**({"power_mode": name.group(1).strip()} if name else {}),
            **({"power_mode_id": number.group(1)} if number else {})}


def _pinned(folder: str, low: str, high: str) -> bool | None:
    lo, hi = _read(os.path.join(folder, low)), _read(os.path.join(folder, high))
    return lo == hi if lo and hi else None


def jetson_gpu_clocks(root: str = "/sys") -> dict[str, str]:
    """A Jetson GPU's devfreq: current and maximum clock (MHz), and whether it is pinned at its
    maximum (which `jetson_clocks` does: min = max)."""
    for folder in sorted(glob.glob(f"{root}/class/devfreq/*")):
        name = _read(os.path.join(folder, "device/of_node/name")) or os.path.basename(folder)
        if not re.search(r"gpu|ga10b|gv11b|gp10b|gm20b", name):
            continue
        cur, top = _read(f"{folder}/cur_freq"), _read(f"{folder}/max_freq")
        pinned = _pinned(folder, "min_freq", "max_freq")
        state = {}
        if cur.isdigit():
            state["gpu_clock_mhz"] = str(int(cur) // 1_000_000)
        if top.isdigit():
            state["gpu_max_clock_mhz"] = str(int(top) // 1_000_000)
        if pinned is not None:
            state["jetson_clocks"] = "on" if pinned else "off"
        return state
    return {}


def nvidia_smi() -> dict[str, str]:
    """A discrete GPU's name, SM clock, maximum SM clock and driver (first GPU)."""
    out = _run(["nvidia-smi", "--query-gpu=name,clocks.sm,clocks.max.sm,driver_version",
                "--format=csv,noheader,nounits"])
    fields = [f.strip() for f in out.splitlines()[0].split(",")] if out.strip() else []
    if len(fields) != 4:
        return {}
    return dict(zip(("gpu", "gpu_clock_mhz", "gpu_max_clock_mhz", "driver"), fields,
                    strict=True))


def jetpack() -> dict[str, str]:
    """L4T release (/etc/nv_tegra_release), JetPack's package version and the board."""
    state = {}
    release = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)",
                        _read("/etc/nv_tegra_release"))
    if release:
        state["l4t"] = f"{release.group(1)}.{release.group(2)}"
    package = _run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"]).strip()
    if package:
        state["jetpack"] = package
    board = _read("/proc/device-tree/model")
    if board:
        state["board"] = board
    return state


def tensorrt() -> dict[str, str]:
    """TensorRT's version: its Python bindings, else trtexec's banner."""
    try:
        return {"tensorrt": metadata.version("tensorrt")}
    except metadata.PackageNotFoundError:
        pass
    from autoprune.hardware.trtexec import find_trtexec, tensorrt_version

    found = find_trtexec()
    version = tensorrt_version(_run([found, "--help"])) if found else ""
    return {"tensorrt": version} if version else {}


def host() -> dict[str, str]:
    """The machine: host name, CPU, cores, and the versions the bench runs with."""
    state = {"host": platform.node(), "machine": platform.machine(),
             "cores": str(os.cpu_count() or 0), "python": platform.python_version()}
    cpu = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.MULTILINE)
    if cpu:
        state["cpu"] = cpu.group(1).strip()
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor:
        state["cpu_governor"] = governor
    for package in ("onnxruntime", "onnxruntime-gpu", "torch", "ray"):
        try:
            state[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return state


PROBES: tuple[Callable[[], dict[str, str]], ...] = (
    host, power_mode, jetpack, jetson_gpu_clocks, nvidia_smi, tensorrt)


def device_state() -> dict[str, str]:
    """Everything the probes find on this machine, by name."""
    state: dict[str, str] = {}
    for probe in PROBES:
        state.update(probe())
    return state


def describe(state: dict[str, str]) -> str:
    """The state in a few words, the figures a latency depends on first."""
    words = [f"{label} {state[key]}" for key, label in (
        ("power_mode", "power mode"), ("jetson_clocks", "jetson_clocks"),
        ("gpu_clock_mhz", "GPU MHz"), ("tensorrt", "TensorRT"), ("jetpack", "JetPack"),
        ("l4t", "L4T"), ("driver", "driver")) if state.get(key)]
    machine = state.get("board") or state.get("gpu") or state.get("cpu") or state.get("host")
    return ", ".join(([machine] if machine else []) + words)
