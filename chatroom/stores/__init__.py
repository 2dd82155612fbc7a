"""
Implementations of the core's ports that keep data outside the process.
"""
