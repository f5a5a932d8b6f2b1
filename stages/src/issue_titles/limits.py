"""The ranges of the training knobs a pipeline hands to `stages split` and `stages train`, in one place.

The CLI's argument checks, SplitSettings and TrainSettings read them. The Pulumi program checks the same knobs before it
creates a pipeline (`pipelines.settings.TRAINING_RANGES`, which this package may not import); tests/pipelines/
test_contract.py keeps the two tables equal, so a value the program accepts is one the stage accepts.
TensorFlow-free (constants only)."""

# (least, most), inclusive; most None: no upper bound. The upper bounds keep a typo from becoming pages of
# out-of-memory output (stages/README.md "Limits").
TRAINING_RANGES: dict[str, tuple[int, int | None]] = {
    "sample_size": (10, None),  # split keeps at least a few rows for train and test each
    "epochs": (1, 10_000),
    "batch_size": (1, 65_536),
    "embedding_dim": (1, 8_192),
    "hidden_dim": (2, 8_192),
}
