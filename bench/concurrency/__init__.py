"""Real processes running the real CLI on one home (bench/concurrency/kit.py), tiny-test model, synthetic text logos.
Readers beside writers: 8 processes run `logoid query` for a minute while 2 add and remove a band each; an answer is inconsistent when it names another band, or an id that band did not hold at some moment of the query.
Kill points: each write is SIGKILLed (`LOGOID_FAULT=STEP@N`) at every step it passes, on a fresh home; then: do catalog and index agree, is the photo answered right, does the next write (`add-band CBGB`) repair all.
"""  # noqa: E501 - method notes: each line is a paragraph of BENCHMARKS.md, kept short in lines
