"""Numbered SQL migrations, shipped inside the distribution and applied in order."""
