"""Reading this process's memory from `/proc/self/status` (Linux), for the memory benchmarks."""


def read_status_kib(field: str) -> int:
    """The value in KiB of a `/proc/self/status` field such as `VmRSS` or `VmHWM` (the peak resident size)."""
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")
