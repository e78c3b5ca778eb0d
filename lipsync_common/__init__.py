"""Small pieces shared by the lipsync services: media I/O, tensors, chunked bytes, server bootstrap."""
