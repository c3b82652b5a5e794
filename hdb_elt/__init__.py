"""Shared logic of the HDB resale ELT workbook: settings, the warehouse, and each stage's helpers.

Notebooks and Dagster assets import from here, so every rule and path is written once.
"""

from __future__ import annotations

__version__ = "0.1.0"
