"""
The one error type of the room's rules.
"""


class ChatError(Exception):
    """
    A command broke a rule; the message is the reply its sender gets.

    The session turns it into one L{chatroom.core.events.ErrorReply}, in
    one place, whether a handler raised it or a handler's Deferred failed
    with it.
    """
