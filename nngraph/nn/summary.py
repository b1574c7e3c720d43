"""model.summary(): one row per layer with its output shape and parameter count."""
from __future__ import annotations


def _shape(s) -> str:
    return "(None, " + ", ".join(map(str, s)) + ")" if s is not None else "?"


def summary_text(model) -> str:
    model._graph(False)  # builds the layers and records their output shapes
    rows = [("Layer (type)", "Output shape", "Param #")]
    for layer in model.layers:
        rows.append((f"{layer.name} ({type(layer).__name__})", _shape(layer.output_shape),
                     f"{layer.count_params():,}"))
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
    line = "-" * sum(widths)
    out = [f'Model: "{model.name}"', line]
    for i, r in enumerate(rows):
        out.append(r[0].ljust(widths[0]) + r[1].ljust(widths[1]) + r[2].rjust(widths[2]))
        if i == 0:
            out.append("=" * sum(widths))
    total = sum(p.value.size for p in model.params)
    trainable = sum(p.value.size for p in model.trainable_params)
    out += [line, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}", line]
    return "\n".join(out)
