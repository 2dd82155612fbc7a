"""
The Tk window: a L{ChatView} that shows the room and takes the user's lines.

The window never runs Tk's own main loop and never touches the network:
the reactor drives Tk (C{tksupport}), and the window hands what the user
types to a L{Controller} (the session, in the application).

It is built from ttk widgets on the C{clam} theme, restyled flat and light,
in the first of L{UI_FAMILIES} that is installed.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from tkinter import font, ttk
from typing import Concatenate, ParamSpec, Protocol

from chatroom.client.complete import NameCompleter
from chatroom.client.history import History
from chatroom.client.protocol import Lock
from chatroom.client.render import (
    Rendered,
    Style,
    client_notice,
    display_time,
    history_rule,
    render,
    render_secure,
    warning,
)
from chatroom.e2e.client import KeyChanged, Secure
from chatroom.roster import Roster
from chatroom.wire import Kind, ServerLine

# The message area keeps the newest lines only, so a long session does not
# grow the window's memory (or slow Tk down) without bound.
MAX_LINES = 5000
DEFAULT_SIZE = (820, 520)
MIN_SIZE = (560, 320)
# The first of these that is installed is the window's font.
UI_FAMILIES = ("Inter", "Cantarell", "Noto Sans", "Ubuntu", "Segoe UI", "Helvetica Neue", "DejaVu Sans")
FONT_SIZE = 10
ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"

_BACKGROUND = "#eef1f5"
_SURFACE = "#ffffff"
_BORDER = "#d3d9e1"
_TEXT = "#1f2328"
_MUTED = "#6b7280"
_ACCENT = "#1a5fd0"
_ACCENT_ACTIVE = "#154cad"
_SELECTION = "#d4e3fb"
_OWN = "#1a4d8f"
_LOCK_GAP = 8

_STYLES: dict[Style, dict[str, str]] = {
    Style.MESSAGE: {},
    Style.OWN: {"foreground": _OWN},
    Style.WHISPER: {"foreground": "#7b2d8e", "font": "chatroom-italic"},
    Style.ACTION: {"foreground": "#2e7d32", "font": "chatroom-italic"},
    Style.SERVER: {"foreground": "#687080"},
    Style.ERROR: {"foreground": "#c62828", "font": "chatroom-bold"},
    Style.CLIENT: {"foreground": "#a35200", "font": "chatroom-italic"},
    Style.WARNING: {"foreground": "#c62828", "font": "chatroom-bold"},
    Style.HISTORY: {"foreground": "#a0a6ae"},
    # The red band starts under the text, as wrapped lines do: the margin stays white.
    Style.ALARM: {
        "foreground": "#ffffff",
        "background": "#c62828",
        "font": "chatroom-bold",
        "lmargincolor": _SURFACE,
    },
}

# The lock in the status bar: its text and colour for each state.
_LOCKS: dict[Lock, tuple[str, str]] = {
    Lock.OFF: ("E2E off: not encrypted", "#666666"),
    Lock.UNLOCKED: ("Unlocked: not encrypted", "#c62828"),
    Lock.LOCKED: ("Locked: end-to-end encrypted", "#2e7d32"),
}

# Lines that count as unread while the window has no focus: chat, not the
# room's comings and goings.
_CHAT_KINDS = (Kind.MESSAGE, Kind.WHISPER, Kind.ACTION)


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


def elide(text: str, measure: Callable[[str], int], width: int) -> str:
    """
    C{text} cut short with an ellipsis so that it is at most C{width}
    wide, as C{measure} (a font's) counts width; C{text} itself if it fits.
    """
    if measure(text) <= width:
        return text
    low, high = 0, len(text)
    # The longest prefix that fits with the ellipsis after it.
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle].rstrip() + ELLIPSIS) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + ELLIPSIS


def _tint(colour: str, amount: float) -> str:
    """
    C{colour} (C{#rrggbb}) mixed with white: C{amount} 0 is the colour, 1 white.
    """
    channels = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in channels)


def _ui_family(root: tk.Misc) -> str:
    installed = {family.casefold(): family for family in font.families(root)}
    for family in UI_FAMILIES:
        if family.casefold() in installed:
            return installed[family.casefold()]
    return str(font.nametofont("TkDefaultFont", root=root).actual("family"))


def _apply_theme(root: tk.Misc) -> list[font.Font]:
    """
    The window's fonts and ttk styles; returns the fonts it made (Tk
    deletes a named font when its object goes, so keep them).
    """
    family = _ui_family(root)
    for name in ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont", "TkCaptionFont"):
        font.nametofont(name, root=root).configure(family=family, size=FONT_SIZE)
    font.nametofont("TkHeadingFont", root=root).configure(weight="bold")
    made = [
        font.Font(root, name="chatroom-text", family=family, size=FONT_SIZE + 1),
        font.Font(root, name="chatroom-italic", family=family, size=FONT_SIZE + 1, slant="italic"),
        font.Font(root, name="chatroom-bold", family=family, size=FONT_SIZE + 1, weight="bold"),
        font.Font(root, name="chatroom-time", family=family, size=FONT_SIZE - 1),
        font.Font(root, name="chatroom-badge", family=family, size=FONT_SIZE - 1, weight="bold"),
    ]
    style = ttk.Style(root)
    style.theme_use("clam")
    style.configure(
        ".",
        background=_BACKGROUND,
        foreground=_TEXT,
        bordercolor=_BORDER,
        lightcolor=_BACKGROUND,
        darkcolor=_BACKGROUND,
        troughcolor=_BACKGROUND,
        focuscolor=_ACCENT,
        selectbackground=_SELECTION,
        selectforeground=_TEXT,
        font="TkDefaultFont",
    )
    style.configure(
        "TButton", padding=(14, 5), width=-6, background=_SURFACE, lightcolor=_SURFACE, darkcolor=_SURFACE
    )
    style.map(
        "TButton",
        background=[("disabled", _BACKGROUND), ("pressed", "#dfe4ea"), ("active", "#f2f4f7")],
        lightcolor=[("disabled", _BACKGROUND), ("active", "#f2f4f7")],
        darkcolor=[("disabled", _BACKGROUND), ("active", "#f2f4f7")],
        foreground=[("disabled", "#a0a7b1")],
        bordercolor=[("focus", _ACCENT)],
    )
    style.configure(
        "Accent.TButton",
        background=_ACCENT,
        foreground="#ffffff",
        bordercolor=_ACCENT,
        lightcolor=_ACCENT,
        darkcolor=_ACCENT,
    )
    style.map(
        "Accent.TButton",
        background=[("pressed", _ACCENT_ACTIVE), ("active", _ACCENT_ACTIVE)],
        lightcolor=[("active", _ACCENT_ACTIVE)],
        darkcolor=[("active", _ACCENT_ACTIVE)],
        bordercolor=[("focus", _ACCENT_ACTIVE)],
    )
    style.configure(
        "Marker.TButton",
        font="chatroom-badge",
        padding=(12, 3),
        background=_ACCENT,
        foreground="#ffffff",
        bordercolor=_ACCENT,
        lightcolor=_ACCENT,
        darkcolor=_ACCENT,
    )
    style.map(
        "Marker.TButton",
        background=[("active", _ACCENT_ACTIVE)],
        lightcolor=[("active", _ACCENT_ACTIVE)],
        darkcolor=[("active", _ACCENT_ACTIVE)],
    )
    style.configure(
        "TEntry", padding=(8, 5), fieldbackground=_SURFACE, lightcolor=_SURFACE, insertcolor=_TEXT
    )
    style.map("TEntry", bordercolor=[("focus", _ACCENT)], lightcolor=[("focus", _SELECTION)])
    style.configure("Card.TFrame", background=_SURFACE, bordercolor=_BORDER, relief="solid", borderwidth=1)
    style.configure("Heading.TLabel", background=_SURFACE, font="TkHeadingFont", padding=(10, 8, 10, 4))
    style.configure("Status.TLabel", foreground=_MUTED)
    style.configure("Lock.TLabel", font="chatroom-badge", padding=(10, 3), anchor=tk.CENTER)
    style.configure(
        "Vertical.TScrollbar",
        background="#c5ccd5",
        troughcolor=_SURFACE,
        bordercolor=_SURFACE,
        lightcolor="#c5ccd5",
        darkcolor="#c5ccd5",
        arrowcolor=_MUTED,
        gripcount=0,
        arrowsize=12,
    )
    style.configure("TPanedwindow", background=_BACKGROUND)
    style.configure("Sash", sashthickness=8, gripcount=0, background=_BACKGROUND, lightcolor=_BACKGROUND)
    root.configure(background=_BACKGROUND)  # type: ignore[call-arg]
    return made


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

    Return sends, Tab completes a member's name, Escape or closing the
    window quits, Up and Down walk the input history, Ctrl+Up asks the
    server for earlier messages.

    @ivar status_text: The status bar's text in full (the bar shows it cut
        short with an ellipsis when it does not fit).
    @ivar unread: Chat lines that came while the window had no focus; the
        title shows the count.
    @ivar unseen: Lines added below the view while the user reads further
        up; the "new messages" marker shows the count.
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
        self.completer = NameCompleter()
        self.status_text = ""
        self.unread = 0
        self.unseen = 0
        self.destroyed = False
        self._roster_pending = False
        # Whether history lines are coming (the rule is shown), and what to
        # page back from (a historyend line's more=).
        self.replaying = False
        self.earlier: str | None = None
        # Failed attempts since the last connection, for the notices.
        self._failures = 0
        # The last line shown is a disconnect notice, which retrying() completes.
        self._retry_note_open = False
        # Whether the view follows new lines (the user is at the bottom),
        # and the message area's size when that was last decided.
        self._follow = True
        self._view_size = (0, 0)
        self._fonts = _apply_theme(root)
        self._build()
        root.protocol("WM_DELETE_WINDOW", controller.quit)
        # However the window goes, the client must not run on without it.
        root.bind("<Destroy>", self._destroyed)
        root.bind("<Escape>", lambda event: controller.quit())
        root.bind("<Control-Up>", lambda event: self.page_back())
        root.bind("<FocusIn>", self._focus_in)
        self._update_title()

    def _build(self) -> None:
        root = self.root
        root.minsize(*MIN_SIZE)
        root.geometry("{}x{}".format(*DEFAULT_SIZE))
        text_font = font.nametofont("chatroom-text", root=root)

        panes = ttk.PanedWindow(root, orient=tk.HORIZONTAL)
        messages_frame = ttk.Frame(panes, style="Card.TFrame", padding=1)
        self.messages = tk.Text(
            messages_frame,
            wrap=tk.WORD,
            state=tk.DISABLED,
            width=60,
            height=20,
            takefocus=False,
            font=text_font,
            background=_SURFACE,
            foreground=_TEXT,
            selectbackground=_SELECTION,
            selectforeground=_TEXT,
            inactiveselectbackground=_SELECTION,
            relief=tk.FLAT,
            borderwidth=0,
            highlightthickness=0,
            padx=10,
            pady=8,
            spacing1=2,
            spacing3=2,
            cursor="arrow",
        )
        scroll = ttk.Scrollbar(messages_frame, command=self.messages.yview)
        self._scrollbar = scroll
        self.messages.configure(yscrollcommand=self._scrolled)
        self.messages.pack(side=tk.LEFT, fill=tk.BOTH, expand=True)
        scroll.pack(side=tk.RIGHT, fill=tk.Y)
        self.messages.bind("<Configure>", self._resized)
        self.messages.tag_configure("time", foreground="#98a0ab", font="chatroom-time")
        # Wrapped lines start under the text, not under the time.
        time_font = font.nametofont("chatroom-time", root=root)
        indent = time_font.measure("00:00:00") + text_font.measure(" ")
        for style, options in _STYLES.items():
            self.messages.tag_configure(style.value, dict(options), lmargin2=indent)
        # Made last, so it wins over the styles: a line with a date before
        # its time wraps further in.
        dated_indent = time_font.measure("0000-00-00 00:00:00") + text_font.measure(" ")
        self.messages.tag_configure("dated", lmargin2=dated_indent)
        self.new_marker = ttk.Button(messages_frame, style="Marker.TButton", command=self.scroll_to_end)

        members_frame = ttk.Frame(panes, style="Card.TFrame", padding=1)
        self.members_label = ttk.Label(members_frame, text="Members", style="Heading.TLabel")
        self.members = tk.Listbox(
            members_frame,
            width=20,
            activestyle=tk.NONE,
            takefocus=False,
            font="TkDefaultFont",
            background=_SURFACE,
            foreground=_TEXT,
            selectbackground=_SELECTION,
            selectforeground=_TEXT,
            relief=tk.FLAT,
            borderwidth=0,
            highlightthickness=0,
        )
        self.members_label.pack(side=tk.TOP, fill=tk.X)
        self.members.pack(side=tk.TOP, fill=tk.BOTH, expand=True, padx=(10, 4), pady=(0, 6))
        panes.add(messages_frame, weight=4)
        panes.add(members_frame, weight=1)

        input_frame = ttk.Frame(root)
        self.entry = ttk.Entry(input_frame, width=10, font="chatroom-text")
        self.send_button = ttk.Button(input_frame, text="Send", command=self.send, style="Accent.TButton")
        self.clear_button = ttk.Button(input_frame, text="Clear", command=self.clear)
        self.quit_button = ttk.Button(input_frame, text="Quit", command=self.controller.quit)
        input_frame.columnconfigure(0, weight=1)
        self.entry.grid(row=0, column=0, sticky=tk.EW, padx=(0, 6))
        for column, button in enumerate((self.send_button, self.clear_button, self.quit_button), start=1):
            button.grid(row=0, column=column, padx=(0 if column == 1 else 4, 0))
        self.entry.bind("<Return>", lambda event: self.send())
        self.entry.bind("<KP_Enter>", lambda event: self.send())
        self.entry.bind("<Up>", lambda event: self._recall(self.history.back(self.entry.get())))
        self.entry.bind("<Down>", lambda event: self._recall(self.history.forward()))
        self.entry.bind("<Tab>", lambda event: self.complete_name())

        # A grid, so that the status text gives way: the lock and Reconnect
        # keep their room at any width, the text is cut short instead.
        status_frame = ttk.Frame(root)
        self.status = ttk.Label(status_frame, text="", anchor=tk.W, style="Status.TLabel", width=1)
        self.lock_label = ttk.Label(status_frame, style="Lock.TLabel")
        self.reconnect_button = ttk.Button(
            status_frame, text="Reconnect", command=self.controller.reconnect, state=tk.DISABLED
        )
        status_frame.columnconfigure(0, weight=1)
        # A fixed width, that of the longest lock text: the lock changing
        # does not move the layout around.
        widths = []
        for text, _ in _LOCKS.values():
            self.lock_label.configure(text=text)
            self.lock_label.update_idletasks()
            widths.append(self.lock_label.winfo_reqwidth())
        status_frame.columnconfigure(1, minsize=max(widths) + 2 * _LOCK_GAP)
        self.status.grid(row=0, column=0, sticky=tk.EW)
        self.lock_label.grid(row=0, column=1, padx=_LOCK_GAP, sticky=tk.EW)
        self.reconnect_button.grid(row=0, column=2)
        self.status.bind("<Configure>", lambda event: self._fit_status())
        self._show_lock()

        status_frame.pack(side=tk.BOTTOM, fill=tk.X, padx=10, pady=(0, 8))
        input_frame.pack(side=tk.BOTTOM, fill=tk.X, padx=10, pady=8)
        panes.pack(side=tk.TOP, fill=tk.BOTH, expand=True, padx=10, pady=(10, 0))
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
        # What one sends, one wants to see.
        self.scroll_to_end()

    def clear(self) -> None:
        """
        Empty the message area.
        """
        self.messages.configure(state=tk.NORMAL)
        self.messages.delete("1.0", tk.END)
        self.messages.configure(state=tk.DISABLED)
        self._retry_note_open = False
        self.scroll_to_end()

    def complete_name(self) -> str:
        """
        Complete the member's name before the cursor (Tab); again, the next.

        @return: C{"break"}: Tab stays in the input line.
        """
        names = [name for name in self.roster.names() if name != self.name]
        done = self.completer.complete(self.entry.get(), self.entry.index(tk.INSERT), names)
        if done is None:
            self.root.bell()
        else:
            self.entry.delete(0, tk.END)
            self.entry.insert(0, done.text)
            self.entry.icursor(done.cursor)
        return "break"

    def scroll_to_end(self) -> None:
        """
        Show the newest line, and follow new ones from now on.
        """
        self._follow = True
        self.messages.see(tk.END)
        self._seen()

    def _recall(self, text: str) -> str:
        self.entry.delete(0, tk.END)
        self.entry.insert(0, text)
        return "break"

    def _focus_in(self, event: tk.Event[tk.Misc]) -> None:
        if self.unread:
            self.unread = 0
            self._update_title()

    # ChatView

    @_while_open
    def connecting(self, address: str) -> None:
        self._set_state("connecting", f"Connecting to {address}...", can_reconnect=False)

    @_while_open
    def connected(self, address: str) -> None:
        self._set_state("connected", f"Connected to {address} (TLS verified)", can_reconnect=False)
        self._note(f"connected to {address}")
        self._failures = 0

    @_while_open
    def disconnected(self, reason: str) -> None:
        self._set_state("disconnected", f"Disconnected: {reason}", can_reconnect=True)
        # One notice per attempt: the first failure is a disconnection, the
        # next ones failed attempts; retrying() adds when the next one is.
        self._failures += 1
        if self._failures == 1:
            self._note(f"disconnected: {reason}")
        else:
            self._note(f"reconnect attempt {self._failures - 1} failed: {reason}")
        self._retry_note_open = True
        if self.roster.clear():
            self._schedule_roster()

    @_while_open
    def retrying(self, delay: float) -> None:
        after = f"reconnecting in {delay:.0f} s"
        self.status_text = f"{self.status_text} - {after}"
        self._fit_status()
        if self._retry_note_open:
            self._retry_note_open = False
            more = " (or press Reconnect)" if self._failures == 1 else ""
            self._append_to_last_line(f" - {after}{more}")
        else:
            self._note(after)

    @_while_open
    def line_received(self, line: ServerLine) -> None:
        if self._history_lines(line):
            return
        self.show(render(line, self.name, self.lock is not Lock.OFF), line.timestamp)
        if line.kind in _CHAT_KINDS and line.source != self.name:
            self._count_unread()
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
        # The sender's signed time, not the server's.
        self.show(render_secure(message, self.name), message.time)
        if message.sender.casefold() != (self.name or "").casefold():
            self._count_unread()

    @_while_open
    def key_changed(self, change: KeyChanged) -> None:
        self.show(Rendered(change.text, Style.ALARM), datetime.now(UTC))
        self._count_unread()
        self.root.bell()

    @_while_open
    def warning(self, text: str) -> None:
        self.show(warning(text), datetime.now(UTC))

    # History

    def _history_lines(self, line: ServerLine) -> bool:
        """
        Show a history line (greyed, a run of them under an "earlier
        messages" rule); whether C{line} was one.
        """
        if line.kind == Kind.HISTORY:
            if not self.replaying:
                self.replaying = True
                self.show(history_rule(), line.timestamp)
        elif line.kind == Kind.HISTORY_END:
            self.replaying = False
            # What /history before needs to page further back, if there is more.
            self.earlier = line.fields.get("more")
        else:
            self.replaying = False
            return False
        self.show(render(line, self.name, self.lock is not Lock.OFF), line.timestamp)
        return True

    def page_back(self) -> None:
        """
        Ask for the messages before the oldest history line shown (Ctrl+Up).
        """
        self.controller.send(f"/history before {self.earlier}" if self.earlier else "/history")

    # Display

    def _note(self, text: str) -> None:
        self.show(client_notice(text), datetime.now(UTC))

    def show(self, rendered: Rendered, moment: datetime) -> None:
        """
        Append one line to the message area, with the time of C{moment}
        (and its date, if not today). The view follows it if the user was
        at the bottom; otherwise the "new messages" marker counts it.
        """
        self._retry_note_open = False
        stamp = display_time(moment, datetime.now(UTC))
        tags: tuple[str, ...] = (rendered.style.value,)
        if len(stamp) > len("00:00:00"):
            tags += ("dated",)
        text = self.messages
        text.configure(state=tk.NORMAL)
        text.insert(tk.END, stamp + " ", ("time", *tags[1:]))
        text.insert(tk.END, rendered.text + "\n", tags)
        excess = int(text.index("end-1c").split(".")[0]) - 1 - MAX_LINES
        if excess > 0:
            text.delete("1.0", f"{excess + 1}.0")
        text.configure(state=tk.DISABLED)
        if self._follow:
            text.see(tk.END)
        else:
            self.unseen += 1
            self._show_marker()

    def _append_to_last_line(self, more: str) -> None:
        text = self.messages
        # "end-1c" is Tk's own final newline; "end-2c" the last line's.
        tags = tuple(t for t in text.tag_names("end-3c") if t != "sel")
        text.configure(state=tk.NORMAL)
        text.insert("end-2c", more, tags)
        text.configure(state=tk.DISABLED)
        if self._follow:
            text.see(tk.END)

    def message_lines(self) -> list[str]:
        """
        The message area's lines, as shown.
        """
        return self.messages.get("1.0", "end-1c").splitlines()

    def _scrolled(self, first: float | str, last: float | str) -> None:
        # The message area's view moved: the scrollbar follows, and the
        # user scrolling decides whether new lines are followed. A resize
        # moves the view too, and must not count as the user's choice.
        self._scrollbar.set(first, last)
        size = (self.messages.winfo_width(), self.messages.winfo_height())
        if size != self._view_size:
            self._view_size = size
            if self._follow:
                self.messages.see(tk.END)
            return
        self._follow = float(last) >= 1.0
        if self._follow:
            self._seen()

    def _resized(self, event: tk.Event[tk.Misc]) -> None:
        # Tk keeps the top line in place when the area changes size; a
        # reader at the bottom stays at the bottom instead.
        if self._follow:
            self.messages.see(tk.END)

    def _seen(self) -> None:
        if self.unseen:
            self.unseen = 0
            self.new_marker.place_forget()

    def _show_marker(self) -> None:
        plural = "" if self.unseen == 1 else "s"
        self.new_marker.configure(text=f"\N{DOWNWARDS ARROW} {self.unseen} new message{plural}")
        self.new_marker.place(relx=0.5, rely=1.0, y=-10, anchor=tk.S)

    def _count_unread(self) -> None:
        if not self._has_focus():
            self.unread += 1
            self._update_title()

    def _has_focus(self) -> bool:
        try:
            return self.root.focus_get() is not None
        except (KeyError, tk.TclError):
            # A focus Tk cannot name (another toolkit's window): not ours.
            return False

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
                self.members.itemconfigure(tk.END, foreground=_OWN)
        self.members_label.configure(text=f"Members ({len(entries)})")

    def _set_state(self, state: str, status: str, can_reconnect: bool) -> None:
        self.state = state
        self.status_text = status
        self._fit_status()
        self.reconnect_button.configure(state=tk.NORMAL if can_reconnect else tk.DISABLED)
        self._update_title()

    def _fit_status(self) -> None:
        width = self.status.winfo_width()
        if width <= 1:
            # Not laid out yet: the <Configure> that follows fits it.
            self.status.configure(text=self.status_text)
            return
        measure = font.nametofont("TkDefaultFont", root=self.root).measure
        self.status.configure(text=elide(self.status_text, measure, width))

    def _show_lock(self) -> None:
        text, colour = _LOCKS[self.lock]
        self.lock_label.configure(text=text, foreground=colour, background=_tint(colour, 0.88))

    def _update_title(self) -> None:
        unread = f"({self.unread}) " if self.unread else ""
        who = f"{self.name} @ " if self.name else ""
        lock = "" if self.lock is Lock.OFF else f", E2E {self.lock.value}"
        self.root.title(f"{unread}chatroom - {who}{self.server} ({self.state}{lock})")
