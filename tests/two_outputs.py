"""A small model with two outputs (classes and a regression), for fit tests in one
process and in MPI jobs (tests/distributed/jobs/ put tests/ on sys.path)."""
import nngraph as ng


def two_output_model(features: int, target: str = "cpu"):
    """Dense -> BatchNorm, then heads "cls" (3 classes, accuracy) and "reg" (mse,
    weight 0.5); SGD with momentum, so one- and multi-process runs compare closely."""
    ng.nn.set_seed(5)
    L = ng.nn
    x = L.Input((features,), name="x")
    h = L.BatchNorm()(L.Dense(12, activation="relu")(x))
    model = L.Model(x, [L.Dense(3, name="cls")(h), L.Dense(1, name="reg")(h)])
    model.compile(ng.optim.SGD(0.05, momentum=0.9), {"cls": "cross_entropy", "reg": "mse"},
                  {"cls": ["accuracy"]}, loss_weights={"reg": 0.5}, target=target)
    return model
