"""Face analysis two rooms share (preprocess and the evaluator): MediaPipe Face Mesh landmarks and the named
point sets of the 468-point mesh. Imports no gRPC."""
