"""Data formats two rooms share: media decoding and MP4 writing, tensors on the wire, the source cache on disk,
face landmarks. Imports no gRPC."""
