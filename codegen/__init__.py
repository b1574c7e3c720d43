"""Program -> machine code: llvm/ for the CPU, triton/ for the GPU."""
