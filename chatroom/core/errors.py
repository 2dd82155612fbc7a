"""
The one error type of the room's rules.
"""


class ChatError(Exception):
    """
    A command broke a rule; the message is the reply its sender gets.

    The session turns it into one L{chatroom.core.events.ErrorReply}, in
    one place, whether a handler raised it or a handler's Deferred failed
    with it.

    @ivar code: What went wrong, for machines (one of the C{*} constants
        here, or empty): a transport with numeric replies (IRC) maps it.
    """

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


# Codes of L{ChatError}, for transports that answer with numbers.
NO_SUCH_MEMBER = "no-such-member"
NOT_ADMIN = "not-admin"
NAME_TAKEN = "name-taken"
BAD_NAME = "bad-name"
