"""Scale: the global vectors' FAISS structures at 100k, 1M and 3.6M vectors, and FAISS against Milvus Lite.

Synthetic 512-d embeddings (centres × 20 noisy views, spread like real embeddings, `bench/_embeddings.py`); 1,000
held-out queries; recall against exact search. Each structure is built in one process and queried in a fresh one
(RAM: what the loaded index costs; +mmap: the same files memory-mapped). These numbers chose `IndexConfig`'s
defaults. `milvus`: the same vectors in FAISS and Milvus Lite, one query at a time, batched, and an add + remove.
"""
