"""
The one error type of the room's rules.
"""


class ChatError(Exception):
    """
    A command broke a rule; the message is the reply its sender gets.
    """
