"""Shared fixtures. HF_HUB_OFFLINE is set before anything imports transformers (workbench does it on import)."""

import os

os.environ.setdefault("SINKBENCH_PROGRESS", "0")

import pytest  # noqa: E402

import workbench  # noqa: E402,F401  (sets the offline environment first)


def pytest_collection_modifyitems(config, items):
    """Every test under tests/integration is marked `integration` (so `-m "not integration"` deselects them);
    a conftest's module-level `pytestmark` would mark nothing."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def tiny_llama():
    from workbench import zoo

    return zoo.load("tiny-llama")


@pytest.fixture(scope="session")
def tiny_gemma():
    from workbench import zoo

    return zoo.load("tiny-gemma3")


@pytest.fixture(scope="session")
def tiny_bert():
    from workbench import zoo

    return zoo.load("tiny-bert")


@pytest.fixture()
def fake_corpus(tmp_path, monkeypatch):
    """A tiny corpus in a private cache, so data tests need no registry."""
    import json

    from workbench.core import corpora, data

    monkeypatch.setenv("SINKBENCH_CACHE", str(tmp_path / "cache"))
    root = corpora.corpus_dir("austen")
    root.mkdir(parents=True)
    docs = [
        {"title": "First Book", "text": "It was a bright cold day in April. " * 200},
        {"title": "Second Book", "text": "Call me Ishmael, said the sailor, and smiled. " * 200},
    ]
    (root / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "manifest.json").write_text(json.dumps({"name": "austen", "documents": [d["title"] for d in docs]}))
    data._TOKEN_CACHE.clear()
    yield root
    data._TOKEN_CACHE.clear()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one thread is as fast, and two were 20x slower on a busy 2-core machine
    (use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
