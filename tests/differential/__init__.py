"""Differential tests of `%%tcache`: every scenario runs plainly and cached, and must agree.

    python -m pytest tests/differential            # everything, about 3 minutes on 2 cores
    python -m pytest tests/differential/test_scenarios.py -k mutation
    python -m tests.differential [-k imports]      # the to-do list: failing scenarios, first
                                                   # difference each, counts per group

- `harness.py`: the model (Scenario of Sessions of cells, files, modules, env), `cached_source`
  (the one place a cell is rewritten for a cached mode), value descriptions, the normalisation
  (the one list of what a comparison ignores) and `compare`; `ForkServer`, the client.
- `forkserver.py`: imports IPython, numpy, pandas, matplotlib, scikit-learn and tore_nb once;
  each session is a forked child, a fresh process as far as user code can tell.
- `scenarios_*.py`: hand-written scenarios per class of problem; `test_scenarios.py` runs them,
  `test_generated.py` runs Hypothesis-generated programs, `test_notebooks.py` runs the notebooks
  of tests/notebooks/differential/ in real kernels (nbclient).

Environment: DIFFERENTIAL_MODES=tcache,auto (cached modes to run), DIFFERENTIAL_JOBS (runs at
once, default 2), DIFFERENTIAL_TORE_NB=folder (test another tore_nb, e.g. a `git archive` of an
older commit), DIFFERENTIAL_SESSION_TIMEOUT (seconds per session, default 90).
"""
