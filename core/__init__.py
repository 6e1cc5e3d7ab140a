"""TheraBoard engine: the science behind the dashboard.

A plain Python package: it never imports streamlit. Pages in ``pages/`` are thin
views over it; the command line lives in ``core.__main__`` (``python -m core``).
"""

__version__ = "0.1.0"
