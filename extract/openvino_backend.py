"""The OpenVINO backend of the embedder: the model exported (fp32) or quantized (int8) once, then read from a cache.

An export is kept in a folder beside the model, else in `~/.cache/newswatch/exports`, named by
the model, the backend and the library versions that made it, so an upgrade exports again.
"""

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
from pathlib import Path

import numpy as np

from extract.chunks import pack_chunks

logger = logging.getLogger(__name__)

# English news-like sentences written for this project: static int8 quantization measures the
# activation ranges on them, so no calibration data set is downloaded.
CALIBRATION_TEXT = Path(__file__).with_name("calibration.txt")
CALIBRATION_CHUNK_TOKENS = 128
# Measured as whole-article cosine to torch (A1 dev pages, ECB+ B1 dev articles): with
# optimum-intel's defaults the worst article fell to 0.944 (a Japanese page; SmoothQuant) and 0.978
# (B1). SmoothQuant off and the feed-forward output layers (whose inputs, after GELU, have the
# widest ranges) left in fp32: worst 0.993 (B1) and 0.995 (A1), at about the same speed.
INT8_QUANTIZATION = {"smooth_quant_alpha": -1, "ignored_scope": {"patterns": [r".*layer\.\d+\.output\.dense.*"]}}

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
