"""Sizes of trained networks."""

from __future__ import annotations

from torch import nn


def parameter_bytes(*modules: nn.Module) -> int:
    """Bytes of the parameters of ``modules`` together (what a trained map or network stores)."""
    return int(sum(p.numel() * p.element_size() for module in modules for p in module.parameters()))
