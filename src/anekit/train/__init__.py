"""Training (guide ch. 15): trainable parameters and reverse-mode gradients, optimizers whose
update is a program, loss scaling, checkpoints and the Trainer."""
from . import optim
from .autodiff import Parameter, grad, initial_values, param, params_of
from .estimate import estimate_step
from .lowering import lower_runtime_weights
from .loss_scale import LossScaler
from .trainer import FitResult, Trainer

__all__ = ["Parameter", "grad", "initial_values", "param", "params_of", "lower_runtime_weights", "optim",
           "LossScaler", "Trainer", "FitResult"]
