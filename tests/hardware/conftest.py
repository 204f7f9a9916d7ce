from __future__ import annotations

import pytest
import ray


@pytest.fixture(scope="module")
def local_ray():
    """A private Ray for one module's actors (benches, gates)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 1024 * 1024)
    yield
    ray.shutdown()
