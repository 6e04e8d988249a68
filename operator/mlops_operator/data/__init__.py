"""Data management: sources, canonical snapshots, schema, validation and profiles (no kopf here)."""
