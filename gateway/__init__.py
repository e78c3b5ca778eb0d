"""The public gateway: the streaming API, jobs and orchestration of the services."""
