"""Model development: the trainer that runs inside a TrainingRun's Job (no kopf here).

`estimators` is the allowlist, `pipeline` builds preprocessing from the dataset schema,
`convert` exports to ONNX and checks parity with scikit-learn.
"""
