"""
The room's core: its state and rules, the command registry, the
per-connection session policy and the ports stores and transports implement.

Nothing here formats bytes, touches a socket, imports a reactor or OpenSSL:
the core emits events (L{chatroom.core.events}) and transports encode them.
"""
