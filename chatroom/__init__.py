"""
chatroom: a one-room chat daemon over TLS, on Twisted.
"""

__version__ = "0.1.0"
