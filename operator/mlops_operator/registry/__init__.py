"""The model registry's rules (no kopf): version numbering, aliases and their history,
stages, promotion decisions and retention, as pure functions over wire-form objects."""
