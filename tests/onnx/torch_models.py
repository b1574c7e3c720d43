"""PyTorch models for the import tests, exported with torch.onnx.export(dynamo=False)
and a dynamic batch axis "N"."""
from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(),
                                 nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


class LeNet(nn.Module):
    """Conv + BatchNorm (folded at import) + ReLU + pools + Dropout + Linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 84), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(84, 10), nn.LogSoftmax(-1))

    def forward(self, x):
        return self.head(self.features(x))


class AttentionBlock(nn.Module):
    """Multi-head self-attention with a residual and LayerNormalization."""

    def __init__(self, d=16, heads=2):
        super().__init__()
        self.heads, self.d = heads, d
        self.qkv, self.out, self.norm = nn.Linear(d, 3 * d), nn.Linear(d, d), nn.LayerNorm(d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in self.qkv(x).chunk(3, dim=-1))
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, -1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.norm(x + self.out(y))


class RecurrentNet(nn.Module):
    """A recurrent layer (nn.LSTM, nn.GRU or nn.RNN) over a fixed-length sequence,
    classifying from its last output."""

    def __init__(self, layer=nn.LSTM, hidden=16, bidirectional=False):
        super().__init__()
        self.rnn = layer(8, hidden, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 4)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class ConvAutoencoder(nn.Module):
    """Strided convolutions down, ConvTranspose2d (with output_padding) back up."""

    def __init__(self):
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                                    nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())
        self.decode = nn.Sequential(nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                                    nn.ConvTranspose2d(4, 1, 3, stride=2, padding=1, output_padding=1),
                                    nn.Sigmoid())

    def forward(self, x):
        return self.decode(self.encode(x))


class EmbeddingBag(nn.Module):
    """nn.Embedding (a Gather with run-time ids), averaged over the sequence, then a Linear."""

    def __init__(self, vocab=20, dim=8):
        super().__init__()
        self.embed, self.head = nn.Embedding(vocab, dim), nn.Linear(dim, 4)

    def forward(self, ids):
        return self.head(self.embed(ids).mean(1))


def LSTMNet():  # noqa: N802  (named as the model it builds)
    return RecurrentNet(nn.LSTM, 16)


def GRUNet():  # noqa: N802
    return RecurrentNet(nn.GRU, 12, bidirectional=True)


def RNNNet():  # noqa: N802
    return RecurrentNet(nn.RNN, 10)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so folding is tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
    return model


def export(model: nn.Module, example: torch.Tensor, opset: int = 17, torch_folding: bool = True) -> onnx.ModelProto:
    """torch_folding=False keeps BatchNormalization nodes (PyTorch folds them into Conv otherwise)."""
    model.eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), f, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=opset,
                          do_constant_folding=torch_folding)
    return onnx.load_from_string(f.getvalue())
