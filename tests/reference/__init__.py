"""NumPy references of each framework's RMSprop, and the shared test problem.

One module per framework, each written from that framework's source (named in
its docstring), in float32 with the framework's own op order, so they can be
compared to recorded real-framework trajectories and to the presets.
"""
