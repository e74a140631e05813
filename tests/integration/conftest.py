"""Integration tests run on the bundled real models; `make models` fetches them (the test command does)."""

import pytest

from workbench import zoo


def bundled(name: str):
    if not zoo.is_cached(name):
        pytest.fail(f"{name} is not fetched: run `make models` (or `sinkbench models fetch {name}`) first")
    return zoo.load(name)


@pytest.fixture(scope="session")
def smollm2():
    return bundled("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3():
    return bundled("gemma3-270m")


@pytest.fixture(scope="session")
def minilm():
    return bundled("minilm-l6")


@pytest.fixture(scope="session")
def qwen25():
    return bundled("qwen2.5-0.5b")


@pytest.fixture(scope="session")
def dinov2():
    return bundled("dinov2-s14")
