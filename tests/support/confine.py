"""Run a command under the system-call filter, address families and MemoryDenyWriteExecute the
units in deploy/ ask systemd for, without systemd: the kernel's own seccomp filter (through
libseccomp) and PR_SET_MDWE. Tests use it to show digest works inside those limits.

    python tests/support/confine.py ALLOWED_SYSCALLS_FILE COMMAND [ARGS...]

The first argument names a file of system-call names, one a line: every other call fails with
EPERM (as SystemCallErrorNumber=EPERM makes it), and socket() is allowed for AF_UNIX, AF_INET and
AF_INET6 only (RestrictAddressFamilies=).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)


class ArgumentComparison(ctypes.Structure):
    """libseccomp's struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def libseccomp() -> ctypes.CDLL | None:
    """libseccomp, if this machine has it (systemd needs it, so it usually does)."""
    name = ctypes.util.find_library("seccomp")
    return ctypes.CDLL(name, use_errno=True) if name else None


def expand(groups: str) -> set[str]:
    """The system calls named by systemd filter groups such as "@system-service", as
    `systemd-analyze syscall-filter` lists them, nested groups expanded."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    members: dict[str, list[str]] = {}
    current: list[str] = []
    for line in listing.splitlines():
        if line.startswith("@"):
            current = members.setdefault(line.split()[0], [])
        elif line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())

    def names(item: str, seen: frozenset[str]) -> set[str]:
        if not item.startswith("@"):
            return {item}
        if item in seen:
            return set()
        found: set[str] = set()
        for member in members.get(item, []):
            found |= names(member, seen | {item})
        return found

    return set().union(*(names(group, frozenset()) for group in groups.split()))


def confine(allowed: set[str]) -> None:
    """Apply MDWE and the filter to this process (and everything it executes)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE) failed")
    seccomp = libseccomp()
    if seccomp is None:
        raise OSError(errno.ENOENT, "libseccomp is not installed")
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgumentComparison),
    ]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    context = seccomp.seccomp_init(0x00050000 | errno.EPERM)  # SCMP_ACT_ERRNO(EPERM)
    for name in sorted(allowed - {"socket"}):
        number = seccomp.seccomp_syscall_resolve_name(name.encode())
        if number >= 0:  # a name this architecture does not have resolves to a negative number
            seccomp.seccomp_rule_add_array(context, SCMP_ACT_ALLOW, number, 0, None)
    socket_call = seccomp.seccomp_syscall_resolve_name(b"socket")
    for family in FAMILIES:
        comparison = ArgumentComparison(0, SCMP_CMP_EQ, family, 0)
        result = seccomp.seccomp_rule_add_array(
            context, SCMP_ACT_ALLOW, socket_call, 1, ctypes.byref(comparison)
        )
        if result != 0:
            raise OSError(-result, "seccomp_rule_add_array failed")
    result = seccomp.seccomp_load(context)
    if result != 0:
        raise OSError(-result, "seccomp_load failed")


def main() -> None:
    allowed = set(Path(sys.argv[1]).read_text(encoding="utf-8").split())
    confine(allowed)
    os.execv(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
