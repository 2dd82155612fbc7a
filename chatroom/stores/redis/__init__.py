"""
Stores that keep the room in Redis, shared by several daemon processes.
"""
