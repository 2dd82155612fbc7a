"""
The line transport: chatroom's own protocol, one UTF-8 line per command.
"""
