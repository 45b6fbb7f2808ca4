"""Run Triton kernels through Triton's interpreter on machines without a GPU.

TRITON_INTERPRET must be set before triton is first imported: triton builds its own library
functions in one mode at import. This conftest is loaded before any test module of this folder is
imported, so whichever of them imports triton first sees the flag. With a GPU nothing is set and
the kernels are compiled.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
