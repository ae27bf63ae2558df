"""PAM conversations through python-pam's libpam bindings: a password check, the account stage, a session.

python-pam's ``authenticate`` leaves PAM's failure delay to PAM: a module
such as pam_faildelay or pam_unix then sleeps seconds inside the call, in
the thread that asked. Here a refused password returns at once (PAM's
``PAM_FAIL_DELAY`` item names a function of ours that does not sleep); the
caller delays the answer without holding a thread (see vapor.loginguard).

A ``Session`` is what login(1) does around a shell: pam_start, the account
stage, credentials, pam_open_session, the shell, pam_close_session. Its
conversation shows PAM's messages (motd, last login) on the terminal and
answers no prompt.
"""

from __future__ import annotations

import ctypes
from typing import Any

from pam.__internals import (  # type: ignore[import-untyped]
    PAM_CONV_ERR,
    PAM_DELETE_CRED,
    PAM_ESTABLISH_CRED,
    PAM_PROMPT_ECHO_OFF,
    PAM_SILENT,
    PAM_SUCCESS,
    PAM_TTY,
    PamAuthenticator,
    PamConv,
    PamHandle,
    PamResponse,
    conv_func,
)

PAM_FAIL_DELAY = 10  # the item naming the function that waits after a failure (security/_pam_types.h)
PAM_ERROR_MSG = 3
PAM_TEXT_INFO = 4
_delay_func = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)


@_delay_func  # type: ignore[untyped-decorator]
def _no_wait(_status: int, _microseconds: int, _data: Any) -> None:
    """PAM's failure delay, not slept in the thread that asked (the caller delays the answer)."""


_NO_WAIT = ctypes.cast(_no_wait, ctypes.c_void_p)


def _libpam() -> Any:
    PamAuthenticator._ensure_libs()
    return PamAuthenticator


class PamError(Exception):
    """PAM refused a step: the message is its reason."""


class _Handle:
    """One PAM transaction: pam_start with a conversation, the steps, pam_end."""

    def __init__(self, service: str, username: str, conversation: Any) -> None:
        if "\x00" in username or "\x00" in service:
            raise PamError("a NUL in the user or service name")
        self.lib = _libpam()
        self._conversation = conversation  # kept alive while PAM may call it
        self._conv = PamConv(conversation, None)
        self.handle = PamHandle()
        self.status = self.lib.pam_start(
            service.encode(), username.encode(), ctypes.byref(self._conv), ctypes.byref(self.handle)
        )
        if self.status != PAM_SUCCESS:
            raise PamError(f"PAM could not start service {service!r} (status {self.status})")
        self.lib.pam_set_item(self.handle, PAM_FAIL_DELAY, _NO_WAIT)

    def reason(self, status: int) -> str:
        return str(self.lib.pam_strerror(self.handle, status).decode(errors="replace"))

    def step(self, function: Any, flags: int = 0) -> str | None:
        """Run one PAM step; None if it succeeds, else its reason."""
        self.status = function(self.handle, flags)
        return None if self.status == PAM_SUCCESS else self.reason(self.status)

    def end(self) -> None:
        if self.handle.handle:
            self.lib.pam_end(self.handle, self.status)
            self.handle = PamHandle()


def _answers(password: bytes | None, show: Any = None) -> Any:
    """A conversation: the password for a hidden prompt (None: no prompt is answered), messages to ``show``."""

    @conv_func  # type: ignore[untyped-decorator]
    def conversation(count: int, messages: Any, responses: Any, _data: Any) -> int:
        lib = _libpam()
        block = lib.calloc(count, ctypes.sizeof(PamResponse))
        replies = ctypes.cast(block, ctypes.POINTER(PamResponse))
        for i in range(count):
            style = messages[i].contents.msg_style
            if style == PAM_PROMPT_ECHO_OFF and password is not None:
                copy = lib.calloc(len(password) + 1, 1)
                ctypes.memmove(copy, password, len(password))
                replies[i].resp = copy
            elif style in (PAM_ERROR_MSG, PAM_TEXT_INFO):
                if show is not None:
                    show((messages[i].contents.msg or b"").decode(errors="replace"))
            else:  # a prompt nobody is there to answer
                lib.libc.free(block)
                return int(PAM_CONV_ERR)
        responses[0] = replies
        return int(PAM_SUCCESS)

    return conversation


def authenticate(service: str, username: str, password: str) -> bool:
    """Whether ``service`` accepts the password (auth and account stages); a refusal does not wait."""
    if "\x00" in password:
        return False
    try:
        pam = _Handle(service, username, _answers(password.encode()))
    except PamError:
        return False
    try:
        return pam.step(pam.lib.pam_authenticate) is None and pam.step(pam.lib.pam_acct_mgmt) is None
    finally:
        pam.end()


def account_stage(service: str, username: str) -> str | None:
    """PAM's account management for ``username`` under ``service``: None if it accepts, else its reason."""
    try:
        pam = _Handle(service, username, _answers(None))
    except PamError as exc:
        return str(exc)
    try:
        return pam.step(pam.lib.pam_acct_mgmt, PAM_SILENT)
    finally:
        pam.end()


class Session:
    """A login session for a shell (see the module's docstring); messages go to ``show``, ``tty`` is PAM_TTY."""

    def __init__(self, service: str, username: str, show: Any, tty: str | None = None) -> None:
        self._pam = _Handle(service, username, _answers(None, show))
        self._opened = False
        if tty:  # PAM_TTY: pam_access, pam_securetty and pam_lastlog read it
            self._pam.lib.pam_set_item(self._pam.handle, PAM_TTY, ctypes.c_char_p(tty.encode()))

    def open(self) -> None:
        """The account stage, credentials and pam_open_session; PamError with PAM's reason if one refuses."""
        lib = self._pam.lib
        for step, flags in ((lib.pam_acct_mgmt, 0), (lib.pam_setcred, PAM_ESTABLISH_CRED)):
            reason = self._pam.step(step, flags)
            if reason is not None:
                raise PamError(reason)
        reason = self._pam.step(lib.pam_open_session)
        if reason is not None:
            raise PamError(reason)
        self._opened = True

    def environment(self) -> dict[str, str]:
        """What the session's modules put in PAM's environment (pam_env, pam_systemd, ...)."""
        found: dict[str, str] = {}
        listed = self._pam.lib.pam_getenvlist(self._pam.handle)
        index = 0
        while listed and listed[index]:
            name, _, value = listed[index].decode(errors="replace").partition("=")
            found[name] = value
            index += 1
        return found

    def close(self) -> None:
        """pam_close_session (when opened), credentials deleted, pam_end."""
        lib = self._pam.lib
        if self._opened:
            self._pam.step(lib.pam_close_session)
            self._pam.step(lib.pam_setcred, PAM_DELETE_CRED)
            self._opened = False
        self._pam.end()
