"""The embedder the settings describe, and the keys its vectors are stored under, made without Prefect.

A semantic search embeds its query with the pipeline's model, so the dashboard, the command line
and the runs (`flows.embedding`) build their embedder here, from the same settings. The model
loads once per process and configuration. A flow run started by `newswatch serve` embeds through
the service's warm model instead (`flows.embedding.get_embedder`, `flows.model_host`).
"""

from functools import lru_cache
from typing import TYPE_CHECKING

from extract.embed import Embedder, model_key

if TYPE_CHECKING:  # the settings are only read here
    from flows.settings import Settings


@lru_cache(maxsize=4)
def _embedder(
    model: str, chunk_tokens: int, batch_size: int, threads: int, backend: str, max_chunks: int, device: str,
    max_characters: int,
) -> Embedder:
    return Embedder(
        model=model, chunk_tokens=chunk_tokens, batch_size=batch_size, threads=threads or None, backend=backend,
        max_chunks=max_chunks, device=device, max_characters=max_characters,
    )


def embedder_config(settings: "Settings") -> tuple:
    """What an embedder is made of, from the settings (the arguments of `_embedder`)."""
    return (
        settings.model, settings.chunk_tokens, settings.embed_batch_size, settings.embed_threads, settings.embed_backend,
        settings.embed_max_chunks, settings.embed_device, settings.embed_max_characters,
    )


def make_embedder(config: tuple) -> Embedder:
    """The process-wide embedder of a configuration (`embedder_config`)."""
    return _embedder(*config)


def local_embedder(settings: "Settings") -> Embedder:
    """This process's own embedder for these settings (the model loads once per process, on first use)."""
    return _embedder(*embedder_config(settings))


def lead_chunks(settings: "Settings") -> int:
    """How many chunks make an everyday vector; 0 when every article is embedded whole (or to `embed_max_chunks`)."""
    lead, cap = settings.embed_lead_chunks, settings.embed_max_chunks
    return lead if lead and (not cap or lead < cap) else 0


def embedding_model_key(settings: "Settings") -> str:
    """What the everyday vectors these settings make are stored under."""
    chunks = lead_chunks(settings) or settings.embed_max_chunks
    return model_key(settings.model, settings.chunk_tokens, chunks, settings.embed_backend)


def whole_model_key(settings: "Settings") -> str:
    """What whole-article vectors are stored under (the everyday key when articles are embedded whole)."""
    return model_key(settings.model, settings.chunk_tokens, settings.embed_max_chunks, settings.embed_backend)
