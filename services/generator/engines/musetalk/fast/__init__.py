"""CUDA fast paths of the MuseTalk networks, each the same function as the stock module and each behind a setting:
fused GroupNorm (+ SiLU) Triton kernels, phase-decomposed upsampling, per-tap output convolution, CUDA graphs."""
