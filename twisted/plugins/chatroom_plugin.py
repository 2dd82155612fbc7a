"""
The twistd plugin: C{twistd -n chatroom}.
"""

from twisted.application.service import ServiceMaker

chatroom = ServiceMaker("chatroom", "chatroom.tap", "A one-room chat daemon over TLS.", "chatroom")
