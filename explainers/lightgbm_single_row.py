"""LightGBM's own raw score of one row, through its fast single-row C API.

`Booster.predict` on one row spends most of its 0.1-0.3 ms in Python (argument checks,
parameter strings, a new predictor per call) and, right after a `pred_contrib` call,
reloading LightGBM's state into the caches. `LGBM_BoosterPredictForMatSingleRowFast`
keeps one predictor, configured once, and is the same prediction code: the scores are
LightGBM's, bit for bit (tests/unit/explainers/test_lightgbm_single_row.py).
"""

from __future__ import annotations

import ctypes
import threading
import weakref

import lightgbm
import numpy as np

# lightgbm.basic's loaded library and its error check: the Python package's own handle
# on the C API it documents (it exports no public one).
from lightgbm.basic import (  # type: ignore[attr-defined]
    _C_API_DTYPE_FLOAT64,
    _C_API_PREDICT_RAW_SCORE,
    _LIB,
    _safe_call,
)

from explainers.types import FloatVector


class SingleRowScorer:
    """Raw scores of single rows of a booster (in its own numeric input encoding).

    One predictor per scorer; the lock makes it safe to share between threads on any
    LightGBM version (newer ones also lock inside). The C call releases the GIL.
    """

    def __init__(self, booster: lightgbm.Booster, n_features: int, n_outputs: int) -> None:
        self._n_outputs = n_outputs
        self._lock = threading.Lock()
        self._config = ctypes.c_void_p()
        # the iterations Booster.predict uses when none are given
        iterations = booster.best_iteration
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle, ctypes.c_int(_C_API_PREDICT_RAW_SCORE), ctypes.c_int(0),
            ctypes.c_int(iterations if iterations > 0 else -1),
            ctypes.c_int(_C_API_DTYPE_FLOAT64), ctypes.c_int32(n_features),
            ctypes.c_char_p(b"num_threads=1"), ctypes.byref(self._config)))
        self._booster = booster  # the predictor reads the booster's trees
        weakref.finalize(self, _LIB.LGBM_FastConfigFree, self._config)

    def __call__(self, row: FloatVector) -> FloatVector:
        """Return the raw score(s) of one row: one value, or one per class."""
        row = np.ascontiguousarray(row, dtype=np.float64)
        out = np.empty(self._n_outputs, dtype=np.float64)
        written = ctypes.c_int64()
        with self._lock:
            _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFast(
                self._config, row.ctypes.data_as(ctypes.c_void_p), ctypes.byref(written),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))))
        if written.value != self._n_outputs:
            raise lightgbm.basic.LightGBMError(
                f"single-row prediction wrote {written.value} values, "
                f"expected {self._n_outputs}")
        return out
