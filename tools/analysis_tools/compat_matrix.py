"""Moved to benchmarks/compat_matrix.py, beside the measurement harness it
uses; this path keeps working with the same options."""
import os.path as osp
import runpy
import sys

if __name__ == '__main__':
    BENCHMARKS = osp.join(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))), 'benchmarks')
    sys.path[0] = BENCHMARKS  # as if run from there (it imports `harness`)
    runpy.run_path(osp.join(BENCHMARKS, 'compat_matrix.py'),
                   run_name='__main__')
