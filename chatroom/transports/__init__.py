"""
Transports: thin adapters between a wire protocol and the core's sessions.
"""
