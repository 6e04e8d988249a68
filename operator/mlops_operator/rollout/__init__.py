"""Rollout decisions of an InferenceService (no kopf): canary sizing and the canary verdict."""
