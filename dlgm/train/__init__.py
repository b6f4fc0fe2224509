"""Training by Algorithm 1: minibatches, S samples per point, RMSprop (eq. 18) or Adam.

==================  ==========================================================================
module              contents
==================  ==========================================================================
``_trainer.py``     ``Trainer`` (one update at a time, progress iterator, NaN recovery, DDP),
                    ``fit``, ``continue_fit``, ``Progress``, ``resolve_device``
``_fast.py``        ``fast=True``: the step compiled by ``torch.compile``; one CUDA graph on GPUs
``_state.py``       the training state file beside the checkpoint (bit-exact resume)
``_host.py``        where a run ran (PyTorch, CPU and its kernels, threads, GPU): the card's
                    ``hosts``, one entry per change, so a resumed run's lost bits are explained
``_run.py``         ``run_training``: data, binarisation, model or resume, card, checkpoints,
                    evaluation, from one settings dict (what the CLI and the app call);
                    ``build_trainer``: a Trainer for a given model by the same rules
==================  ==========================================================================
"""

from ._run import TRAIN_DEFAULTS, build_trainer, run_training
from ._state import STATE_FILE
from ._trainer import (
    BINARIZE,
    INPUT_NOISE,
    LR_SCHEDULES,
    OPTIMIZERS,
    Progress,
    Trainer,
    continue_fit,
    fit,
    iwae_lr_factor,
    resolve_device,
)

__all__ = [
    "Trainer",
    "Progress",
    "fit",
    "continue_fit",
    "resolve_device",
    "run_training",
    "build_trainer",
    "STATE_FILE",
    "TRAIN_DEFAULTS",
    "OPTIMIZERS",
    "BINARIZE",
    "INPUT_NOISE",
    "LR_SCHEDULES",
    "iwae_lr_factor",
]
