"""Where the code runs: BLAS, threads, device, distributed ranks and `sdzero info`."""
