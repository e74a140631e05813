"""The intervention catalogue (filled in by the catalogue modules)."""
