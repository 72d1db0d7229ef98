"""The one place that decides where training runs."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes CUDA when a GPU is present and the CPU otherwise; `cpu` / `cuda[:i]` are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' asked for, but no CUDA GPU is available")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"unknown device '{name}' (choose auto, cpu or cuda)")
    return torch.device(name)


def use_one_cpu_thread() -> None:
    """Run torch's CPU ops on one thread.

    Our networks are tiny, so a second thread gains little, and when processes share the cores (web server,
    workers, tests) torch's spinning threads can make every op many times slower.
    """
    torch.set_num_threads(1)
