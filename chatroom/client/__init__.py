"""
The chatroom client: a Tk window on the Twisted reactor, over verified TLS.

The layers stay apart: L{chatroom.client.protocol} turns the server's lines
into calls on the L{chatroom.client.protocol.ChatView} interface,
L{chatroom.client.session} keeps one connection alive with backoff,
L{chatroom.client.gui} is the Tk window implementing the view, and
L{chatroom.client.app} wires them to the reactor. The member list, the line
rendering and the input history are plain classes, tested without Tk.
"""
