"""Face preparation and compositing service."""
