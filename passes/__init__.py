"""Graph -> graph rewrites, fusion into a Program, memory planning."""
