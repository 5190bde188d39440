"""Scale: the global vectors' FAISS structures at 100k, 1M and 3.6M vectors, and FAISS against Milvus Lite.

Synthetic 512-d embeddings (centres × 20 noisy views, spread like real embeddings), regenerated from a seed; 1,000
held-out queries; recall against exact search. Each structure is built in one process and queried in a fresh one
that only loads it, so the RAM column is what the loaded index costs (+mmap rows: the same files memory-mapped).
These numbers chose `IndexConfig`'s defaults. `milvus`: the same kind of vectors in FAISS and in Milvus Lite, one
query at a time, batched, and an add + remove.
"""
