"""
C{python -m chatroom.client}: the same as C{chatroom-client}.
"""

from chatroom.client.app import main

main()
