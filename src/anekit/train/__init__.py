"""Training: trainable parameters and reverse-mode gradients (guide ch. 15)."""
from .autodiff import Parameter, grad, initial_values, param, params_of

__all__ = ["Parameter", "grad", "initial_values", "param", "params_of"]
