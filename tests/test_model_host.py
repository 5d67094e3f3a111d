"""The warm model of `newswatch serve`: flow runs embed through the serving process, and never depend on it."""

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from extract.embed import EmbeddingModelError
from flows import embedding
from flows.model_host import HOST_ADDRESS, HOST_KEY, ModelHost, RemoteEmbedder, remote_embedder

ROOT = Path(__file__).parent.parent


class CountingEmbedder:
    """Vectors from the text's length, and how often each thing was asked."""

    def __init__(self, config):
        self.config = config
        self.loads = 0
        self.calls = 0

    def load(self):
        self.loads += 1
        if self.config[0] == "broken":
            raise EmbeddingModelError("cannot load embedding model broken: no such model")
        return self

    @property
    def backend_in_use(self):
        return "openvino"

    def embed(self, texts):
        self.calls += 1
        return np.array([[len(text), 1.0] for text in texts], dtype=np.float32), [1] * len(texts)

    def embed_leads(self, texts, chunks):
        vectors, counts = self.embed(texts)
        return vectors, counts, [len(text) < 10 for text in texts]


@pytest.fixture
def host():
    made: dict = {}

    def make(config):
        return made.setdefault(config, CountingEmbedder(config))

    running = ModelHost(make).start()
    running.made = made
    yield running
    running.stop()


def test_a_remote_embedder_answers_as_the_hosts_embedder(host):
    config = ("model-a", 128)
    remote = RemoteEmbedder(host.address, bytes.fromhex(host.environment()[HOST_KEY]), config)
    vectors, counts = remote.embed(["abc", "abcdef"])
    assert vectors.tolist() == [[3, 1], [6, 1]] and counts == [1, 1]
    vectors, counts, whole = remote.embed_leads(["short", "a much longer text"], 2)
    assert whole == [True, False]
    assert remote.backend_in_use == "openvino"
    # One embedder per configuration, loaded once, however many requests and clients.
    other = RemoteEmbedder(host.address, bytes.fromhex(host.environment()[HOST_KEY]), config)
    other.embed(["x"])
    RemoteEmbedder(host.address, bytes.fromhex(host.environment()[HOST_KEY]), ("model-b", 128)).embed(["y"])
    assert set(host.made) == {("model-a", 128), ("model-b", 128)}
    assert host.made[("model-a", 128)].loads == 1 and host.made[("model-a", 128)].calls == 3


def test_the_host_loads_the_model_ahead_when_asked():
    made = {}
    running = ModelHost(lambda config: made.setdefault(config, CountingEmbedder(config))).start(warm=("warm", 1))
    try:
        for _ in range(200):
            if made.get(("warm", 1)) and made[("warm", 1)].loads:
                break
            time.sleep(0.01)
        assert made[("warm", 1)].loads == 1
    finally:
        running.stop()


def test_the_hosts_errors_are_raised_in_the_run(host):
    remote = RemoteEmbedder(host.address, bytes.fromhex(host.environment()[HOST_KEY]), ("broken",))
    with pytest.raises(EmbeddingModelError, match="cannot load embedding model broken"):
        remote.load()


def test_a_wrong_key_is_refused_and_the_run_loads_its_own_model(host, monkeypatch, caplog):
    monkeypatch.setenv(HOST_ADDRESS, host.address)
    monkeypatch.setenv(HOST_KEY, "00" * 32)
    with caplog.at_level(logging.WARNING):
        assert remote_embedder(("model-a",), fallback=CountingEmbedder) is None
    assert "loads its own" in caplog.text
    assert not host.made


def test_a_host_that_stops_answering_leaves_the_run_to_its_own_model(host, caplog):
    remote = RemoteEmbedder(host.address, bytes.fromhex(host.environment()[HOST_KEY]), ("model-a",),
                            fallback=lambda config: CountingEmbedder(("local",)))
    remote.embed(["first"])
    host.stop()
    with caplog.at_level(logging.WARNING):
        vectors, _ = remote.embed(["second"])
        remote.embed(["third"])
    assert vectors.tolist() == [[6, 1]]
    assert caplog.text.count("stopped answering") == 1


def test_get_embedder_goes_through_the_host_only_when_the_service_set_it_up(host, monkeypatch):
    from flows.settings import Settings

    embedding._hosted_embedder.cache_clear()
    monkeypatch.delenv(HOST_ADDRESS, raising=False)
    local = embedding.get_embedder(Settings())
    assert type(local).__name__ == "Embedder"
    for name, value in host.environment().items():
        monkeypatch.setenv(name, value)
    try:
        remote = embedding.get_embedder(Settings())
        assert isinstance(remote, RemoteEmbedder)
        assert remote.embed(["four"])[0].tolist() == [[4, 1]]
        assert embedding.embedder_config(Settings()) in host.made
    finally:
        embedding._hosted_embedder.cache_clear()


def test_a_child_process_embeds_through_the_host_without_loading_a_model(tmp_path):
    """As a flow run of `serve` does: the service's environment is inherited, the model stays in the service."""
    from flows.service import start_model_host
    from flows.settings import Settings

    saved = {name: os.environ.get(name) for name in (HOST_ADDRESS, HOST_KEY)}
    made = {}
    real = embedding.make_embedder
    embedding.make_embedder = lambda config: made.setdefault(config, CountingEmbedder(config))
    try:
        running = start_model_host(Settings())
    finally:
        embedding.make_embedder = real
    try:
        child = textwrap.dedent("""
            import sys
            from flows.embedding import embed_texts
            from flows.settings import Settings
            vectors, counts, whole = embed_texts(["hello", "a longer text here"], Settings())
            print([list(map(float, v)) for v in vectors], counts, whole)
            print("torch" in sys.modules, "sentence_transformers" in sys.modules)
        """)
        result = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        assert lines[-1] == "False False", "the flow run loaded a model of its own"
        assert lines[-2].startswith("[[5.0, 1.0], [18.0, 1.0]]")
        assert made[embedding.embedder_config(Settings())].calls == 1
    finally:
        running.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
