"""Reusable building blocks (attention, Swin, normalisation helpers)."""
