"""What a DriftMonitor does with the serving pods' statistics (no kopf): turn scrapes into
windows, windows into drift and accuracy decisions, and decisions into a retraining."""
