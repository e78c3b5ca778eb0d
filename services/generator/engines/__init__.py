"""Generator engines behind one interface (base.py): warp/ (weight-free) and musetalk/ (neural, GPU)."""
