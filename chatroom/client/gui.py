"""
The Tk window: a L{ChatView} that shows the room and takes the user's lines.

The window never runs Tk's own main loop and never touches the network:
the reactor drives Tk (C{tksupport}), and the window hands what the user
types to a L{Controller} (the session, in the application).
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from tkinter import font, ttk
from typing import Concatenate, ParamSpec, Protocol

from chatroom.client.history import History
from chatroom.client.protocol import Lock
from chatroom.client.render import Rendered, Style, client_notice, local_time, render, render_secure, warning
from chatroom.client.roster import Roster
from chatroom.e2e.client import KeyChanged, Secure
from chatroom.wire import ServerLine

# The message area keeps the newest lines only, so a long session does not
# grow the window's memory (or slow Tk down) without bound.
MAX_LINES = 5000

_STYLES: dict[Style, dict[str, str]] = {
    Style.MESSAGE: {},
    Style.OWN: {"foreground": "#1a4d8f"},
    Style.WHISPER: {"foreground": "#7b2d8e", "font": "chatroom-italic"},
    Style.ACTION: {"foreground": "#2e7d32", "font": "chatroom-italic"},
    Style.SERVER: {"foreground": "#666666"},
    Style.ERROR: {"foreground": "#c62828", "font": "chatroom-bold"},
    Style.CLIENT: {"foreground": "#b35c00", "font": "chatroom-italic"},
    Style.WARNING: {"foreground": "#c62828", "font": "chatroom-bold"},
    Style.ALARM: {"foreground": "#ffffff", "background": "#c62828", "font": "chatroom-bold"},
}

# The lock in the status bar: its text and colour for each state.
_LOCKS: dict[Lock, tuple[str, str]] = {
    Lock.OFF: ("E2E off: not encrypted", "#666666"),
    Lock.UNLOCKED: ("Unlocked: not encrypted", "#c62828"),
    Lock.LOCKED: ("Locked: end-to-end encrypted", "#2e7d32"),
}


_P = ParamSpec("_P")


def _while_open(
    method: Callable[Concatenate[ChatWindow, _P], None],
) -> Callable[Concatenate[ChatWindow, _P], None]:
    # Network events can still come in while a destroyed window shuts the
    # client down; there is nothing left to show them in.
    @wraps(method)
    def guarded(window: ChatWindow, /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        if not window.destroyed:
            method(window, *args, **kwargs)

    return guarded


class Controller(Protocol):
    """
    What the window asks of the rest of the client.
    """

    def send(self, text: str) -> bool:
        """
        Send a line as typed; C{False} if it could not be sent (offline).
        """

    def reconnect(self) -> None:
        """
        Connect again now.
        """

    def quit(self) -> None:
        """
        Close the client.
        """


class ChatWindow:
    """
    The chat window: messages, members, input line, buttons and status bar.

    Return sends, Escape or closing the window quits, Up and Down walk the
    input history.
    """

    def __init__(self, root: tk.Tk, controller: Controller, server: str) -> None:
        """
        @param root: The Tk root; the window fills it.
        @param controller: Takes what the user types and clicks.
        @param server: The server's C{host:port}, for the title.
        """
        self.root = root
        self.controller = controller
        self.server = server
        self.name: str | None = None
        self.state = "starting"
        self.lock = Lock.OFF
        self.roster = Roster()
        self.history = History()
        self._roster_pending = False
        self._last_reason: str | None = None
        self._retry_announced = False
        self.destroyed = False
        self._build()
        root.protocol("WM_DELETE_WINDOW", controller.quit)
        # However the window goes, the client must not run on without it.
        root.bind("<Destroy>", self._destroyed)
        root.bind("<Escape>", lambda event: controller.quit())
        self._update_title()

    def _build(self) -> None:
        root = self.root
        root.minsize(560, 320)
        root.geometry("820x520")
        base = font.nametofont("TkTextFont", root=root).actual()
        # Kept referenced: Tk deletes a named font when its object goes.
        self._fonts = [
            font.Font(root, name="chatroom-italic", family=base["family"], size=base["size"], slant="italic"),
            font.Font(root, name="chatroom-bold", family=base["family"], size=base["size"], weight="bold"),
        ]

        panes = ttk.PanedWindow(root, orient=tk.HORIZONTAL)
        messages_frame = ttk.Frame(panes)
        self.messages = tk.Text(
            messages_frame, wrap=tk.WORD, state=tk.DISABLED, width=60, height=20, takefocus=False
        )
        scroll = ttk.Scrollbar(messages_frame, command=self.messages.yview)
        self.messages.configure(yscrollcommand=scroll.set)
        self.messages.pack(side=tk.LEFT, fill=tk.BOTH, expand=True)
        scroll.pack(side=tk.RIGHT, fill=tk.Y)
        self.messages.tag_configure("time", foreground="#999999")
        # Wrapped lines start under the text, not under the time.
        indent = font.nametofont("TkFixedFont", root=root).measure("00:00:00 ")
        for style, options in _STYLES.items():
            self.messages.tag_configure(style.value, dict(options), lmargin2=indent)

        members_frame = ttk.Frame(panes)
        self.members_label = ttk.Label(members_frame, text="Members")
        self.members = tk.Listbox(members_frame, width=20, activestyle=tk.NONE, takefocus=False)
        self.members_label.pack(side=tk.TOP, anchor=tk.W)
        self.members.pack(side=tk.TOP, fill=tk.BOTH, expand=True)
        panes.add(messages_frame, weight=4)
        panes.add(members_frame, weight=1)

        input_frame = ttk.Frame(root)
        self.entry = ttk.Entry(input_frame)
        self.send_button = ttk.Button(input_frame, text="Send", command=self.send)
        self.clear_button = ttk.Button(input_frame, text="Clear", command=self.clear)
        self.quit_button = ttk.Button(input_frame, text="Quit", command=self.controller.quit)
        self.entry.pack(side=tk.LEFT, fill=tk.X, expand=True, padx=(0, 4))
        for button in (self.send_button, self.clear_button, self.quit_button):
            button.pack(side=tk.LEFT)
        self.entry.bind("<Return>", lambda event: self.send())
        self.entry.bind("<KP_Enter>", lambda event: self.send())
        self.entry.bind("<Up>", lambda event: self._recall(self.history.back(self.entry.get())))
        self.entry.bind("<Down>", lambda event: self._recall(self.history.forward()))

        status_frame = ttk.Frame(root)
        self.status = ttk.Label(status_frame, text="", anchor=tk.W)
        # A fixed width: the lock changing does not move the layout around.
        width = max(len(text) for text, _ in _LOCKS.values())
        self.lock_label = ttk.Label(status_frame, anchor=tk.E, width=width)
        self.reconnect_button = ttk.Button(
            status_frame, text="Reconnect", command=self.controller.reconnect, state=tk.DISABLED
        )
        self.status.pack(side=tk.LEFT, fill=tk.X, expand=True)
        self.reconnect_button.pack(side=tk.RIGHT)
        self.lock_label.pack(side=tk.RIGHT, padx=(6, 6))
        self._show_lock()

        status_frame.pack(side=tk.BOTTOM, fill=tk.X, padx=6, pady=(0, 6))
        input_frame.pack(side=tk.BOTTOM, fill=tk.X, padx=6, pady=6)
        panes.pack(side=tk.TOP, fill=tk.BOTH, expand=True, padx=6, pady=(6, 0))
        self.entry.focus_set()

    def _destroyed(self, event: tk.Event[tk.Misc]) -> None:
        if event.widget is self.root:
            self.destroyed = True
            self.controller.quit()

    # What the user does

    def send(self) -> None:
        """
        Send the input line; keep it if offline, so nothing typed is lost.
        """
        text = self.entry.get()
        if not text.strip():
            return
        if not self.controller.send(text):
            self._note("not connected: the line was not sent (it is still in the input line)")
            return
        self.history.add(text)
        self.entry.delete(0, tk.END)

    def clear(self) -> None:
        """
        Empty the message area.
        """
        self.messages.configure(state=tk.NORMAL)
        self.messages.delete("1.0", tk.END)
        self.messages.configure(state=tk.DISABLED)

    def _recall(self, text: str) -> str:
        self.entry.delete(0, tk.END)
        self.entry.insert(0, text)
        return "break"

    # ChatView

    @_while_open
    def connecting(self, address: str) -> None:
        self._set_state("connecting", f"Connecting to {address}...", can_reconnect=False)

    @_while_open
    def connected(self, address: str) -> None:
        self._set_state("connected", f"Connected to {address} (TLS verified)", can_reconnect=False)
        self._note(f"connected to {address}")
        self._last_reason = None

    @_while_open
    def disconnected(self, reason: str) -> None:
        self._set_state("disconnected", f"Disconnected: {reason}", can_reconnect=True)
        # Retry after retry failing the same way is said once; the status bar
        # keeps the latest.
        if reason != self._last_reason:
            self._last_reason = reason
            self._note(f"disconnected: {reason}")
            self._retry_announced = False
        if self.roster.clear():
            self._schedule_roster()

    @_while_open
    def retrying(self, delay: float) -> None:
        self.status.configure(text=f"{self.status.cget('text')} - reconnecting in {delay:.0f} s")
        if not self._retry_announced:
            self._retry_announced = True
            self._note(f"reconnecting in {delay:.0f} s, then less and less often (or press Reconnect)")

    @_while_open
    def line_received(self, line: ServerLine) -> None:
        self.show(render(line, self.name, self.lock is not Lock.OFF), local_time(line.timestamp))
        if self.roster.apply(line):
            self._schedule_roster()

    @_while_open
    def name_changed(self, name: str) -> None:
        self.name = name
        self._update_title()

    @_while_open
    def notice(self, text: str) -> None:
        self._note(text)

    @_while_open
    def lock_changed(self, lock: Lock) -> None:
        self.lock = lock
        self._show_lock()
        self._update_title()

    @_while_open
    def secure_message(self, message: Secure) -> None:
        self.show(render_secure(message, self.name), local_time(message.time))

    @_while_open
    def key_changed(self, change: KeyChanged) -> None:
        self.show(Rendered(change.text, Style.ALARM), local_time(datetime.now(UTC)))
        self.root.bell()

    @_while_open
    def warning(self, text: str) -> None:
        self.show(warning(text), local_time(datetime.now(UTC)))

    # Display

    def _note(self, text: str) -> None:
        self.show(client_notice(text), local_time(datetime.now(UTC)))

    def show(self, rendered: Rendered, time: str) -> None:
        """
        Append one line to the message area, scrolled to it if the user
        was reading the bottom.
        """
        text = self.messages
        at_bottom = text.yview()[1] >= 1.0
        text.configure(state=tk.NORMAL)
        text.insert(tk.END, time + " ", ("time",))
        text.insert(tk.END, rendered.text + "\n", (rendered.style.value,))
        excess = int(text.index("end-1c").split(".")[0]) - 1 - MAX_LINES
        if excess > 0:
            text.delete("1.0", f"{excess + 1}.0")
        text.configure(state=tk.DISABLED)
        if at_bottom:
            text.see(tk.END)

    def message_lines(self) -> list[str]:
        """
        The message area's lines, as shown.
        """
        return self.messages.get("1.0", "end-1c").splitlines()

    def _schedule_roster(self) -> None:
        # A burst of joins redraws the list once, when Tk is next idle.
        if not self._roster_pending:
            self._roster_pending = True
            self.root.after_idle(self._draw_roster)

    def _draw_roster(self) -> None:
        self._roster_pending = False
        entries = self.roster.entries()
        self.members.delete(0, tk.END)
        for entry in entries:
            self.members.insert(tk.END, entry)
            if entry.removeprefix("@") == self.name:
                self.members.itemconfigure(tk.END, foreground="#1a4d8f")
        self.members_label.configure(text=f"Members ({len(entries)})")

    def _set_state(self, state: str, status: str, can_reconnect: bool) -> None:
        self.state = state
        self.status.configure(text=status)
        self.reconnect_button.configure(state=tk.NORMAL if can_reconnect else tk.DISABLED)
        self._update_title()

    def _show_lock(self) -> None:
        text, colour = _LOCKS[self.lock]
        self.lock_label.configure(text=text, foreground=colour)

    def _update_title(self) -> None:
        who = f"{self.name} @ " if self.name else ""
        lock = "" if self.lock is Lock.OFF else f", E2E {self.lock.value}"
        self.root.title(f"chatroom - {who}{self.server} ({self.state}{lock})")
