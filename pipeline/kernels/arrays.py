"""The array types of the kernels' signatures, for the type checker."""

from typing import Any

import numpy as np
import numpy.typing as npt

# float64 arrays: data, parameters, statistics (a chunk's arithmetic may run in float32: see estep).
Array = npt.NDArray[np.float64]
# A chunk's arithmetic: float32 or float64 (see estep).
Floats = npt.NDArray[np.floating[Any]]
# Row and component indices.
IntArray = npt.NDArray[np.intp]
