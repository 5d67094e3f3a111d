"""Pure library: reading, cleaning, embedding, deduplicating and clustering articles."""
