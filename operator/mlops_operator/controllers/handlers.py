"""Imports every controller module so its kopf handlers register (one module per kind)."""
