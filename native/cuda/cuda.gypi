# CUDA targets; owned by the CUDA backend (native/cuda/). Empty until it lands.
{ "targets": [] }
