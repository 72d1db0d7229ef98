import pytest

from worker.device import use_one_cpu_thread


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """As in the worker: tiny networks, shared cores."""
    use_one_cpu_thread()
