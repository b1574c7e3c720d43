"""ng.nn: Keras-style layers and models built on the graph API (everything compiles
through ng.compile)."""
from . import activations, callbacks, losses  # noqa: F401
from .callbacks import (Callback, EarlyStopping, LambdaCallback, LearningRateScheduler,  # noqa: F401
                        ModelCheckpoint)
from .layers import (Activation, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, Input,  # noqa: F401
                     Layer, MaxPool2D, collect_updates, set_seed)
from .extra_layers import (Add, Concatenate, Conv2DTranspose, GlobalAvgPool2D, LayerNorm,  # noqa: F401
                           Reshape, UpSampling2D)
from .model import Model, Sequential  # noqa: F401
