"""dlgm: Deep Latent Gaussian Models and stochastic backpropagation (Rezende et al., 2014)."""

from . import (
    data,
    estimators,
    grid,
    impute,
    likelihood,
    observation,
    sampling,
    train,
    wake_sleep,
)
from ._validate import binarization_for, parse_sizes
from .checkpoint import from_bytes, load, save, to_bytes
from .errors import CheckpointError, ConfigError, DLGMError, ShapeError, TrainingError
from .model import COVARIANCES, DLGM, LIKELIHOODS, DLGMConfig
from .observation import BernoulliPixels, GaussianPixels
from .posteriors import DiagonalNormal, RankOneNormal, StandardNormal

__all__ = [
    "COVARIANCES",
    "LIKELIHOODS",
    "DLGM",
    "DLGMConfig",
    "DiagonalNormal",
    "RankOneNormal",
    "StandardNormal",
    "BernoulliPixels",
    "GaussianPixels",
    "CheckpointError",
    "ConfigError",
    "DLGMError",
    "ShapeError",
    "TrainingError",
    "binarization_for",
    "parse_sizes",
    "load",
    "save",
    "from_bytes",
    "to_bytes",
    "data",
    "estimators",
    "grid",
    "impute",
    "likelihood",
    "observation",
    "sampling",
    "train",
    "wake_sleep",
]
__version__ = "0.1.0"
