"""ng.nn: Keras-style layers and models built on the graph API (everything compiles
through ng.compile): Sequential, functional Model (several inputs and outputs),
PyTorch-style Module, save / load_model."""
from . import activations, callbacks, losses, regularizers  # noqa: F401
from .callbacks import (Callback, EarlyStopping, LambdaCallback, LearningRateScheduler,  # noqa: F401
                        ModelCheckpoint)
from .layers import (Activation, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, Input,  # noqa: F401
                     Layer, MaxPool2D, collect_updates, set_seed)
from .extra_layers import (Add, Concatenate, Conv2DTranspose, GlobalAvgPool2D, LayerNorm,  # noqa: F401
                           Reshape, UpSampling2D)
from .embedding import Embedding  # noqa: F401
from .attention import MultiHeadAttention  # noqa: F401
from .recurrent import GRU, LSTM, SimpleRNN  # noqa: F401
from .model import Model  # noqa: F401
from .model_io import load_model  # noqa: F401
from .module import Module  # noqa: F401
from .regularizers import l1, l1_l2, l2  # noqa: F401
from .sequential import Sequential  # noqa: F401
