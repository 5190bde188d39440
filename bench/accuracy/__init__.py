"""Accuracy on threadless-dev: real photos of printed T-shirt designs, identified against the designs.

Protocol (the data set's README): the gallery is the designs of the `enrolled` rows; every photo is a query (known =
enrolled, unknown = the `unknown` rows); calibrate on `split=calib`, report on `split=test`. `python -m bench
accuracy` gathers each photo's evidence once with all channels and scores every channel subset before calibration
(the default rule) and after (`logoid calibrate`'s fit), with each rejection rule's AUROC on calib; it saves the
evidence, which `fusion-cv` (fusion settings) and `roc-points` (the ROC curve's low end) read without querying again.
`finetune`: the global channel alone before and after contrastive fine-tuning on the gallery designs (never photos),
a seeded 20 % of the designs held out of training. Top-1 / top-5 of known photos; AUROC and FPR@95TPR of known vs
unknown by the answer's score; open-set accuracy = known, right and accepted, or unknown and rejected.
"""
