"""The embedding model kept warm by `newswatch serve`: flow runs embed through the serving process.

Each scheduled flow run is a fresh process, and loading the embedding model there (PyTorch or
OpenVINO, the tokenizer, the compiled network) took most of a run that brought one new article.
`serve` therefore starts a `ModelHost`: a thread of the serving process that loads the model
once, at start, and embeds for the flow runs it starts, over a Unix socket in a private
temporary folder, with a random key that only the service's own child processes inherit
(`HOST_ADDRESS` and `HOST_KEY` in their environment; connections are authenticated by
`multiprocessing.connection`).

In a flow run, `flows.embedding.get_embedder` gives a `RemoteEmbedder` when those variables are
set: it answers as `extract.embed.Embedder` does, for the same settings (the host keeps one
embedder per configuration, as a process does). If the host cannot be reached the run logs one
warning and loads the model itself, so a run never depends on the host.
"""

import logging
import os
import secrets
import shutil
import tempfile
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

HOST_ADDRESS = "NEWSWATCH_MODEL_HOST"
HOST_KEY = "NEWSWATCH_MODEL_HOST_KEY"

# What an embedder is made of: `flows.embedding.embedder_config` (model, chunk tokens, batch size,
# threads, backend, max chunks, device, max characters).
Config = tuple

_METHODS = {"embed", "embed_leads", "backend_in_use", "device_in_use", "dimension", "load"}


class ModelHost:
    """Serves embedding requests from the flow runs of this process's service, with warm models."""

    def __init__(self, make_embedder):
        """`make_embedder(config)` gives the (cached) embedder of a configuration."""
        self._make_embedder = make_embedder
        self._embedders: dict[Config, object] = {}
        self._loading = threading.Lock()  # one model load at a time: never the same model twice
        self._folder = Path(tempfile.mkdtemp(prefix="newswatch-model-"))  # 0700: this user only
        self.address = str(self._folder / "socket")
        self._key = secrets.token_bytes(32)
        self._listener = Listener(self.address, family="AF_UNIX", authkey=self._key)
        self._stopped = threading.Event()
        self._connections: set[Connection] = set()
        self._thread = threading.Thread(target=self._accept, name="model-host", daemon=True)

    def start(self, warm: Config | None = None) -> "ModelHost":
        """Listen, and load the model of `warm` now (in the background) so the first run finds it loaded."""
        self._thread.start()
        if warm is not None:
            threading.Thread(target=self._warm, args=(warm,), name="model-host-warm", daemon=True).start()
        return self

    def environment(self) -> dict[str, str]:
        """The variables a child process needs to embed through this host."""
        return {HOST_ADDRESS: self.address, HOST_KEY: self._key.hex()}

    def stop(self) -> None:
        """Stop listening and hang up on every flow run connected (they go on with a model of their own)."""
        self._stopped.set()
        try:
            self._listener.close()
        except OSError:
            pass
        for connection in list(self._connections):
            try:
                connection.close()
            except OSError:
                pass
        shutil.rmtree(self._folder, ignore_errors=True)

    def _embedder(self, config: Config):
        with self._loading:
            if config not in self._embedders:
                self._embedders[config] = self._make_embedder(config).load()
            return self._embedders[config]

    def _warm(self, config: Config) -> None:
        try:
            self._embedder(config)
        except Exception as error:  # noqa: BLE001  (each run reports the same failure when it embeds)
            logger.warning("could not load the embedding model ahead: %s: %s", type(error).__name__, error)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection = self._listener.accept()
            except OSError:  # closed by `stop`
                return
            except Exception as error:  # noqa: BLE001  (a client with the wrong key, or one that hung up)
                logger.debug("model host refused a connection: %s: %s", type(error).__name__, error)
                continue
            threading.Thread(target=self._serve, args=(connection,), name="model-host-client", daemon=True).start()

    def _serve(self, connection: Connection) -> None:
        self._connections.add(connection)
        try:
            self._answer(connection)
        finally:
            self._connections.discard(connection)
            try:
                connection.close()
            except OSError:
                pass

    def _answer(self, connection: Connection) -> None:
        while not self._stopped.is_set():
            try:
                config, method, arguments = connection.recv()
            except (EOFError, OSError, TypeError, ValueError):  # hung up, closed, or not a request
                return
            try:
                if method not in _METHODS:
                    raise ValueError(f"unknown model host request {method!r}")
                embedder = self._embedder(tuple(config))
                answer = getattr(embedder, method)
                if callable(answer):
                    answer = answer(*arguments)
                if method == "load":
                    answer = None
                reply = ("ok", answer)
            except Exception as error:  # noqa: BLE001  (raised again in the flow run, as if it were local)
                reply = ("error", error)
            try:
                connection.send(reply)
            except (OSError, ValueError):  # the flow run hung up
                return
            except Exception:  # noqa: BLE001  (an error that does not pickle: sent as its text)
                connection.send(("error", RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))


class ModelHostUnavailable(ConnectionError):
    """The model host could not be reached."""


class RemoteEmbedder:
    """An `extract.embed.Embedder` look-alike whose model runs in the serving process."""

    def __init__(self, address: str, key: bytes, config: Config, fallback=None):
        """`fallback(config)`: the local embedder to use from the moment the host stops answering (None: raise)."""
        self._address, self._key, self._config = address, key, tuple(config)
        self._fallback = fallback
        self._local = None
        self._connection: Connection | None = None
        self._lock = threading.Lock()

    def _ask(self, method: str, *arguments):
        with self._lock:
            if self._local is None:
                try:
                    if self._connection is None:
                        self._connection = Client(self._address, family="AF_UNIX", authkey=self._key)
                    self._connection.send((self._config, method, arguments))
                    status, answer = self._connection.recv()
                except (OSError, EOFError, ValueError, AuthenticationError) as error:
                    self._connection = None
                    if self._fallback is None:
                        raise ModelHostUnavailable(f"model host at {self._address}: {type(error).__name__}: {error}") from error
                    logger.warning("the service's embedding model stopped answering, this run loads its own: %s: %s",
                                   type(error).__name__, error)
                    self._local = self._fallback(self._config)
        if self._local is not None:
            answer = getattr(self._local, method)
            return answer(*arguments) if callable(answer) else answer
        if status == "error":
            raise answer
        return answer

    def load(self) -> "RemoteEmbedder":
        self._ask("load")
        return self

    @property
    def backend_in_use(self) -> str:
        return self._ask("backend_in_use")

    @property
    def device_in_use(self) -> str:
        return self._ask("device_in_use")

    @property
    def dimension(self) -> int:
        return self._ask("dimension")

    def embed(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        return self._ask("embed", list(texts))

    def embed_leads(self, texts: list[str], chunks: int) -> tuple[np.ndarray, list[int], list[bool]]:
        return self._ask("embed_leads", list(texts), chunks)


def remote_embedder(config: Config, fallback) -> RemoteEmbedder | None:
    """An embedder through the serving process's host when this process was started by one that answers, else None.

    `fallback(config)` gives the local embedder, used if the host stops answering later.
    """
    address, key = os.environ.get(HOST_ADDRESS), os.environ.get(HOST_KEY)
    if not address or not key:
        return None
    try:
        embedder = RemoteEmbedder(address, bytes.fromhex(key), config)
        embedder.load()
    except (ValueError, ModelHostUnavailable) as error:
        logger.warning("the service's embedding model is out of reach, this run loads its own: %s", error)
        return None
    embedder._fallback = fallback
    return embedder
