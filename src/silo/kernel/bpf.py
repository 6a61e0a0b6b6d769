"""eBPF through bpf(2): hash maps and one small classifier, the network's fast path.

``redirect_program`` assembles a ``sched_cls`` program (direct action) for the ingress of an
endpoint's host veth: an IPv4 frame from the endpoint's own MAC and address, over TCP, UDP,
ICMP or IGMP, whose destination MAC and address are a key of ``map_fd`` (the endpoint's
network's map: ``dst MAC (6) . 2 zero bytes . dst IPv4 (4)`` to the destination's host veth
ifindex, u32) is redirected to that veth (``bpf_redirect``): it never meets the bridge,
br_netfilter or conntrack. Anything else passes (``TC_ACT_OK``) and takes the normal path.
Hand-assembled (no compiler on the host); the kernel's verifier checks every packet access.

Imports :mod:`silo.errors` only.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import platform
import struct
from collections.abc import Callable

from silo.errors import Internal, NotSupported, invalid

_SYSCALL = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, BPF_PROG_LOAD = 0, 2, 3, 5
BPF_MAP_TYPE_HASH = 1
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_ANY = 0
FWD_KEY_SIZE, FWD_VALUE_SIZE = 12, 4
_ATTR_SIZE = 128


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], op: str) -> int:
    if _SYSCALL is None:
        raise NotSupported(f"bpf(2) on {platform.machine()} is not known here", op=op)
    ret = _libc.syscall(_SYSCALL, cmd, attr, _ATTR_SIZE)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def _attr(data: bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(data.ljust(_ATTR_SIZE, b"\0"), _ATTR_SIZE)


def create_fwd_map(max_entries: int = 65536) -> int:
    """A hash map ``key (12 bytes) -> ifindex (u32)``; its fd (the caller closes it)."""
    op = "bpf::create_map"
    try:
        return _bpf(BPF_MAP_CREATE, _attr(struct.pack(
            "=IIIII", BPF_MAP_TYPE_HASH, FWD_KEY_SIZE, FWD_VALUE_SIZE, max_entries, 0)), op)
    except OSError as err:
        raise Internal(f"bpf map: {err.strerror}", op=op) from err


def fwd_key(mac: str, ip: str) -> bytes:
    """The map key of a destination: MAC, two zero bytes, IPv4 address (network order)."""
    try:
        raw_mac = bytes(int(p, 16) for p in mac.split(":"))
        raw_ip = ipaddress.IPv4Address(ip).packed
    except ValueError as err:
        raise invalid("key", f"{mac!r} . {ip!r}: {err}", op="bpf::fwd_key") from err
    if len(raw_mac) != 6:
        raise invalid("key", f"{mac!r} is not a MAC address", op="bpf::fwd_key")
    return raw_mac + b"\0\0" + raw_ip


def _elem(cmd: int, fd: int, key: bytes, value: bytes | None, op: str) -> None:
    # The kernel reads the map's key size from the pointer, whatever the buffer holds.
    if len(key) != FWD_KEY_SIZE:
        raise invalid("key", f"must be {FWD_KEY_SIZE} bytes, got {len(key)}", op=op)
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value or b"", max(len(value or b""), 1))
    attr = _attr(struct.pack("=IIQQQ", fd, 0, ctypes.addressof(kbuf),
                             ctypes.addressof(vbuf) if value is not None else 0, BPF_ANY))
    _bpf(cmd, attr, op)


def map_set(fd: int, key: bytes, ifindex: int) -> None:
    op = "bpf::map_set"
    try:
        _elem(BPF_MAP_UPDATE_ELEM, fd, key, struct.pack("=I", ifindex), op)
    except OSError as err:
        raise Internal(f"bpf map update: {err.strerror}", op=op) from err


def map_delete(fd: int, key: bytes) -> None:
    """Quiet when the key is not there."""
    op = "bpf::map_delete"
    try:
        _elem(BPF_MAP_DELETE_ELEM, fd, key, None, op)
    except OSError as err:
        if err.errno != 2:
            raise Internal(f"bpf map delete: {err.strerror}", op=op) from err


# -- assembly ---------------------------------------------------------------------------------

R0, R1, R2, R3, R4, R6, R10 = 0, 1, 2, 3, 4, 6, 10
_SIZE = {4: 0x00, 2: 0x08, 1: 0x10}
TC_ACT_OK = 0
FAST_PROTOCOLS = (6, 17, 1, 2)      # TCP, UDP, ICMP, IGMP: what the default inbound ACL passes
HELPER_MAP_LOOKUP, HELPER_REDIRECT = 1, 23
SKB_DATA, SKB_DATA_END = 76, 80     # offsetof(struct __sk_buff, data / data_end)


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def _ldx(size: int, dst: int, src: int, off: int) -> bytes:
    return _insn(0x61 | _SIZE[size], dst, src, off)


def _stx(size: int, dst: int, src: int, off: int) -> bytes:
    return _insn(0x63 | _SIZE[size], dst, src, off)


def _sth_imm(dst: int, off: int, imm: int) -> bytes:
    return _insn(0x6A, dst, 0, off, imm)


def _mov(dst: int, src: int) -> bytes:
    return _insn(0xBF, dst, src)


def _mov_imm(dst: int, imm: int) -> bytes:
    return _insn(0xB7, dst, 0, 0, imm)


def _add_imm(dst: int, imm: int) -> bytes:
    return _insn(0x07, dst, 0, 0, imm)


def _jne32_imm(dst: int, imm: int, off: int) -> bytes:
    return _insn(0x56, dst, 0, off, imm)


def _jeq32_imm(dst: int, imm: int, off: int) -> bytes:
    return _insn(0x16, dst, 0, off, imm)


def _jgt(dst: int, src: int, off: int) -> bytes:
    return _insn(0x2D, dst, src, off)


def _jeq_imm(dst: int, imm: int, off: int) -> bytes:
    return _insn(0x15, dst, 0, off, imm)


def _ja(off: int) -> bytes:
    return _insn(0x05, 0, 0, off)


def _call(helper: int) -> bytes:
    return _insn(0x85, 0, 0, 0, helper)


def _exit() -> bytes:
    return _insn(0x95)


def _ld_map_fd(dst: int, fd: int) -> list[bytes]:
    return [_insn(0x18, dst, 1, 0, fd), _insn(0, 0, 0, 0, 0)]   # src 1: BPF_PSEUDO_MAP_FD


def _le(data: bytes) -> int:
    """A packet field as the program's little-endian load sees it, as a signed imm32."""
    v = int.from_bytes(data, "little")
    return v - (1 << 32) if v >= 1 << 31 else v


def redirect_program(src_mac: str, src_ip: str, map_fd: int) -> bytes:
    """The fast path's classifier for one endpoint (see the module's doc)."""
    mac = fwd_key(src_mac, src_ip)[:6]
    ip = ipaddress.IPv4Address(src_ip).packed
    # Instructions, or jumps to the "pass" label at the end: made once its offset is known.
    prog: list[bytes | Callable[[int], bytes]] = [
        _mov(R6, R1), _ldx(4, R2, R6, SKB_DATA), _ldx(4, R3, R6, SKB_DATA_END),
        _mov(R4, R2), _add_imm(R4, 34),
        lambda off: _jgt(R4, R3, off),                                  # shorter than 34
        _ldx(2, R4, R2, 12), lambda off: _jne32_imm(R4, _le(b"\x08\x00"), off),   # IPv4
        _ldx(4, R4, R2, 6), lambda off: _jne32_imm(R4, _le(mac[:4]), off),        # src MAC
        _ldx(2, R4, R2, 10), lambda off: _jne32_imm(R4, _le(mac[4:]), off),
        _ldx(4, R4, R2, 26), lambda off: _jne32_imm(R4, _le(ip), off),            # src IPv4
        _ldx(1, R4, R2, 23)]                                            # protocol
    # on a match, each test jumps over the tests left and the jump to "pass"
    prog += [_jeq32_imm(R4, proto, len(FAST_PROTOCOLS) - n)
             for n, proto in enumerate(FAST_PROTOCOLS)]
    prog += [_ja,
             _ldx(4, R4, R2, 0), _stx(4, R10, R4, -16),                # key: dst MAC,
             _ldx(2, R4, R2, 4), _stx(2, R10, R4, -12),
             _sth_imm(R10, -10, 0),                                    # two zero bytes,
             _ldx(4, R4, R2, 30), _stx(4, R10, R4, -8),                # dst IPv4
             *_ld_map_fd(R1, map_fd),
             _mov(R2, R10), _add_imm(R2, -16), _call(HELPER_MAP_LOOKUP),
             lambda off: _jeq_imm(R0, 0, off),                         # not a key
             _ldx(4, R1, R0, 0), _mov_imm(R2, 0), _call(HELPER_REDIRECT), _exit()]
    end = len(prog)
    out = [item if isinstance(item, bytes) else item(end - n - 1)
           for n, item in enumerate(prog)]
    return b"".join([*out, _mov_imm(R0, TC_ACT_OK), _exit()])                # "pass"


def load_classifier(insns: bytes, name: str = "silo_fwd") -> int:
    """Load a ``sched_cls`` program; its fd. The verifier's log is in the error."""
    op = "bpf::load"
    if len(insns) % 8:
        raise invalid("insns", "must be whole 8-byte instructions", op=op)
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = _attr(struct.pack("=IIQQIIQII16s", BPF_PROG_TYPE_SCHED_CLS, len(insns) // 8,
                             ctypes.addressof(code), ctypes.addressof(lic), 1, len(log),
                             ctypes.addressof(log), 0, 0, name.encode()[:15]))
    try:
        return _bpf(BPF_PROG_LOAD, attr, op)
    except OSError as err:
        text = log.value.decode(errors="replace").strip()[-2000:]
        raise Internal(f"bpf program refused: {err.strerror}\n{text}", op=op) from err


__all__ = ["create_fwd_map", "fwd_key", "load_classifier", "map_delete", "map_set",
           "redirect_program"]
