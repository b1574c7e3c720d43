"""ng.data: datasets, the IDX reader, batching, splits and augmentation."""
from .batching import batches, shift, shift_augment, split  # noqa: F401
from .digits import load_digits  # noqa: F401
from .idx import IDXError, read_idx, write_idx  # noqa: F401
