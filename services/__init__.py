"""The lipsync back-end services."""
