"""Tokens, encryption at rest, request signatures, upload checks."""
