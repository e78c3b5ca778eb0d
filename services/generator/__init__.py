"""Mouth-region generation service."""
