"""ng.optim: optimisers that build update graphs, and learning-rate schedules."""
from .optimizers import SGD, AdaDelta, AdaGrad, Adam, Optimizer, RMSProp, get  # noqa: F401
from .schedules import ExponentialDecay, OneCycle, PowerDecay, Schedule, StepDecay  # noqa: F401
