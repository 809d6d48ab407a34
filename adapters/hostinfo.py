"""`docker info`'s document for this root and host (the API's GET /info, `lamina system
info`): what lamina is and runs on, in docker's fields, each one true of lamina.

A query: records nothing. Fields docker has that mean nothing here are docker's empty
values (no swarm, no registry mirrors, no authorization plugins).
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from typing import Any


def info_doc(log: Any, root: str) -> dict[str, Any]:
    from adapters.kernel.cgroups import Mode, detect
    from core import __version__, rootconfig

    containers = log.containers()
    states = [c.state for c in containers]
    running, paused = states.count("running"), states.count("paused")
    uname = os.uname()
    remapped = rootconfig.current(log).remapped
    security = ["name=seccomp,profile=builtin", "name=no-new-privileges", "name=cgroupns"]
    if remapped:
        security.append("name=userns")
    mode = detect()
    return {
        "ID": "lamina", "Containers": len(states), "ContainersRunning": running,
        "ContainersPaused": paused, "ContainersStopped": len(states) - running - paused,
        "Images": sum(1 for i in log.images() if not i.removed),
        "Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "overlayfs"],
                                               ["Supports d_type", "true"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"],
                    "Authorization": None, "Log": ["json-file", "none"]},
        "MemoryLimit": True, "SwapLimit": False, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": False, "CPUSet": False, "PidsLimit": True, "OomKillDisable": False,
        "IPv4Forwarding": _ip_forward(), "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")), "NGoroutines": 1,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if mode == Mode.V2 else "1",
        "NEventsListener": 0,
        "KernelVersion": uname.release, "OperatingSystem": os_name(), "OSType": "linux",
        "OSVersion": "", "Architecture": uname.machine, "NCPU": os.cpu_count() or 1,
        "MemTotal": mem_total(), "IndexServerAddress": "",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "DockerRootDir": root, "Name": uname.nodename, "Labels": [],
        "ExperimentalBuild": False, "ServerVersion": __version__,
        "Runtimes": {"lamina": {"path": "lamina"}}, "DefaultRuntime": "lamina",
        "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
        "SecurityOptions": security, "Warnings": None,
        "GoVersion": "python" + platform.python_version(),
    }


def _ip_forward() -> bool:
    with contextlib.suppress(OSError), open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip() == "1"
    return False


def os_name() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def mem_total() -> int:
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0
