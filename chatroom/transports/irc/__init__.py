"""
The IRC transport: standard IRC clients in the room, as one channel.
"""
