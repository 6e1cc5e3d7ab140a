"""Figure builders: pure functions from engine data to plotly (and later pyvista) figures.

Plotting imports the engine, never the reverse; nothing here reads files or session state.
"""
