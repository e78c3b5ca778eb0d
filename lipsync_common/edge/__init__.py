"""The gRPC edge every room shares: server bootstrap (health, reflection, graceful stop, JSON logs), auth,
limits, metrics and the call helpers. Imports nothing from formats."""
