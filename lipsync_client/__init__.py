"""A small Python client for the lipsync gateway (see client.py) and the `lipsync` CLI (cli.py)."""
from lipsync_client.client import LipsyncClient, LipsyncError

__all__ = ["LipsyncClient", "LipsyncError"]
