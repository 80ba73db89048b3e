"""A real IMAP server for tests: Debian's Dovecot, run in the foreground on 127.0.0.1.

Its own config file, a passwd-file user database and a throwaway mail folder, all in a
temporary directory; an unprivileged port; stopped (by its own process id) on exit. As root,
Dovecot's own unprivileged users run the login and mail processes, as Dovecot requires.
Optionally implicit TLS only (a certificate for 127.0.0.1 from a CA made for the test), and
an explicit CAPABILITY list in place of Dovecot's own.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import trustme

DOVECOT = "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "imap-test-password"

# Dovecot 2.3's own capabilities after login, less MOVE (its setting can add but not remove).
WITHOUT_MOVE = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES"
    " THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN"
    " NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES"
    " WITHIN CONTEXT=SEARCH LIST-STATUS BINARY LITERAL+"
)


def dovecot_missing() -> str | None:
    """Why Dovecot cannot run here, or None."""
    if not os.path.exists(DOVECOT):
        return "Debian's dovecot-imapd is not installed (make unit installs it with apt-get)"
    return None


def _free_port() -> int:
    from tests.support.smtpserver import free_port

    return free_port()


class ImapServer:
    """Dovecot serving one user's Maildir over IMAP (plain, or implicit TLS) on 127.0.0.1."""

    def __init__(self, *, tls: bool = False, capability: str | None = None) -> None:
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="digest-imap-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.tls = tls
        self.capability = capability
        self.ca = trustme.CA() if tls else None
        self.ca_file = self.root / "ca.pem"  # the CA to trust, written when tls is on

    def _tls_settings(self) -> str:
        """Dovecot's ssl lines: off, or required with a certificate for 127.0.0.1."""
        if self.ca is None:
            return "ssl = no\n"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        issued = self.ca.issue_cert("127.0.0.1")
        issued.private_key_pem.write_to_path(str(self.root / "key.pem"))
        with open(self.root / "cert.pem", "wb") as chain:
            for blob in issued.cert_chain_pems:
                chain.write(blob.bytes())
        return f"ssl = required\nssl_cert = <{self.root}/cert.pem\nssl_key = <{self.root}/key.pem\n"

    def settings(self, *lines: str) -> str:
        """config.yaml's bounces block reading this server, with extra lines under imap."""
        return (
            f"bounces:\n  imap:\n    host: 127.0.0.1\n    port: {self.port}\n"
            f"    tls: {str(self.tls).lower()}\n    username: {USER}\n    password: {PASSWORD}\n"
            "    timeout: 5\n" + "".join(f"    {line}\n" for line in lines)
        )

    def context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate."""
        assert self.ca is not None
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def _users(self) -> tuple[str, str, str, str, int, int]:
        """(internal user, internal group, login user, mail user, uid, gid) to run as."""
        if os.getuid() != 0:
            me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
            return me, group, me, me, os.getuid(), os.getgid()
        mail = pwd.getpwnam("dovecot")
        return "dovecot", "dovecot", "dovenull", "dovecot", mail.pw_uid, mail.pw_gid

    def __enter__(self) -> ImapServer:
        internal, group, login, _, uid, gid = self._users()
        root = self.root
        for folder in ("run", "state", "mail", "home"):
            (root / folder).mkdir()
        os.chmod(root, 0o755)
        for folder in ("mail", "home"):
            os.chown(root / folder, uid, gid)
        (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:::::\n", encoding="utf-8")
        (root / "dovecot.conf").write_text(
            f"""base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{self._tls_settings()}disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = {uid}
first_valid_gid = {gid}
{f"imap_capability = {self.capability}" if self.capability else ""}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
  default_fields = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {0 if self.tls else self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.port if self.tls else 0}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
""",
            encoding="utf-8",
        )
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self._greeting().startswith(b"* OK"):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"dovecot did not start; its log: {self.log()}")

    def _greeting(self) -> bytes:
        """The server's first line, read over TLS when it serves TLS."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
            if not self.tls:
                return raw.recv(100)
            with self.context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                return sock.recv(100)

    def log(self) -> str:
        """Dovecot's log so far."""
        path = self.root / "dovecot.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self) -> imaplib.IMAP4:
        """A logged-in standard-library client, for putting messages in and looking."""
        client = (
            imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=self.context(), timeout=10)
            if self.tls
            else imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        )
        client.login(USER, PASSWORD)
        return client

    def append(self, folder: str, *messages: bytes) -> None:
        """Deliver messages into a folder."""
        client = self.client()
        try:
            for message in messages:
                status, reply = client.append(folder, None, None, message)
                assert status == "OK", reply
        finally:
            client.logout()

    def messages(self, folder: str) -> list[tuple[bytes, bytes]]:
        """(flags, full message) for every message in a folder; reading sets no flag."""
        client = self.client()
        try:
            status, _ = client.select(f'"{folder}"', readonly=True)
            if status != "OK":
                return []
            _, data = client.uid("SEARCH", "ALL")
            found = []
            for uid in data[0].split():
                _, parts = client.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                head, body = parts[0]  # type: ignore[misc]
                found.append((head, body))
            return found
        finally:
            client.logout()
