"""Storage behind small interfaces: dense vectors (FAISS), lexical (bm25s), passages (SQLite)."""
