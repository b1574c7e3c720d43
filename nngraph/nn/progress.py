"""Progress of fit: a tqdm bar per epoch on a terminal, else one plain line per epoch.

tqdm is a core dependency, but a bar is only useful where it can redraw itself;
in a log file, a CI job or a notebook's captured output it would be noise or
nothing. So verbose=1 draws the bar only when stderr is a terminal (and tqdm
imports), and otherwise prints the same line as verbose=2 at the end of each epoch.
"""
from __future__ import annotations

import sys


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _bar(total: int, desc: str):
    """A tqdm bar on stderr, or None when stderr is not a terminal or tqdm is missing."""
    if not _is_terminal(sys.stderr):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="batch", leave=True, dynamic_ncols=True, file=sys.stderr)


def _fmt(logs: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in logs.items())


class EpochProgress:
    """What fit shows for one epoch: verbose 0 nothing, 1 a bar (or a line), 2 a line."""

    def __init__(self, steps: int | None, epoch: int, epochs: int, verbose: int):
        self.desc = f"epoch {epoch + 1}/{epochs}"
        self.verbose = int(verbose)
        self.bar = _bar(steps, self.desc) if self.verbose == 1 else None

    def batch_done(self, sums) -> None:
        """One more batch; `sums` (score_sums.ScoreSums) is read only when the bar shows
        it: reading device sums waits for the device."""
        if self.bar is not None:
            self.bar.update(1)
            if sums.due_for_display():
                self.bar.set_postfix({k: f"{v:.4f}" for k, v in sums.means().items()}, refresh=False)

    def epoch_done(self, logs: dict, seconds: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=True)
            self.bar.close()
        elif self.verbose in (1, 2):
            print(f"{self.desc} ({seconds:.2f}s): {_fmt(logs)}", flush=True)
