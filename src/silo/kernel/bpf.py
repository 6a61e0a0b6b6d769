"""eBPF through bpf(2): hash maps and one small classifier, the network's fast path.

``redirect_program`` assembles a ``sched_cls`` program (direct action) for the ingress of an
endpoint's host veth: an IPv4 or IPv6 frame over one of the protocols given (for IPv6, with
no extension header) from the endpoint's own MAC and address, whose destination MAC and address
are a key of its network's map of that IP version (``dst MAC (6) . 2 zero bytes . dst IP``
to the destination's host veth ifindex, u32), is redirected to that veth (``bpf_redirect``):
it never meets the bridge, br_netfilter or conntrack. Anything else passes (``TC_ACT_OK``)
and takes the normal path. Hand-assembled (no compiler on the host); the kernel's verifier
checks every packet access.

Imports :mod:`silo.errors`, :mod:`silo.kernel.libc`.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import struct
from collections.abc import Callable

from silo.errors import Internal, NotSupported, invalid
from silo.kernel import libc

BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, BPF_PROG_LOAD = 0, 2, 3, 5
BPF_MAP_TYPE_HASH = 1
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_ANY = 0
FWD_VALUE_SIZE = 4
_ATTR_SIZE = 128
_key_sizes: dict[int, int] = {}     # fd of a map this module made -> its key size


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], op: str) -> int:
    try:
        nr = libc.syscall_number("bpf")
    except OSError as err:
        raise NotSupported(f"bpf(2): {err.strerror}", op=op) from err
    ret = int(libc.libc().syscall(nr, cmd, attr, _ATTR_SIZE))
    if ret < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return ret


def _attr(data: bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(data.ljust(_ATTR_SIZE, b"\0"), _ATTR_SIZE)


def create_fwd_map(version: int = 4, max_entries: int = 65536) -> int:
    """A hash map ``key -> ifindex (u32)`` for IPv4 (``version`` 4: 12-byte keys) or IPv6
    (24-byte keys); its fd, to give back with :func:`close_map`."""
    op = "bpf::create_map"
    if version not in (4, 6):
        raise invalid("version", f"must be 4 or 6, got {version!r}", op=op)
    size = 8 + (4 if version == 4 else 16)
    try:
        fd = _bpf(BPF_MAP_CREATE, _attr(struct.pack(
            "=IIIII", BPF_MAP_TYPE_HASH, size, FWD_VALUE_SIZE, max_entries, 0)), op)
    except OSError as err:
        raise Internal(f"bpf map: {err.strerror}", op=op) from err
    _key_sizes[fd] = size
    return fd


def close_map(fd: int) -> None:
    _key_sizes.pop(fd, None)
    os.close(fd)


def fwd_key(mac: str, ip: str) -> bytes:
    """The map key of a destination: MAC, two zero bytes, IP address (network order)."""
    try:
        raw_mac = bytes(int(p, 16) for p in mac.split(":"))
        raw_ip = ipaddress.ip_address(ip).packed
    except ValueError as err:
        raise invalid("key", f"{mac!r} . {ip!r}: {err}", op="bpf::fwd_key") from err
    if len(raw_mac) != 6:
        raise invalid("key", f"{mac!r} is not a MAC address", op="bpf::fwd_key")
    return raw_mac + b"\0\0" + raw_ip


def _elem(cmd: int, fd: int, key: bytes, value: bytes | None, op: str) -> None:
    # The kernel reads the map's key size from the pointer, whatever the buffer holds.
    size = _key_sizes.get(fd)
    if size is None:
        raise invalid("fd", f"{fd} is not a map made by create_fwd_map", op=op)
    if len(key) != size:
        raise invalid("key", f"must be {size} bytes, got {len(key)}", op=op)
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

R0, R1, R2, R3, R4, R5, R6, R10 = 0, 1, 2, 3, 4, 5, 6, 10
_SIZE = {4: 0x00, 2: 0x08, 1: 0x10}
TC_ACT_OK = 0
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


# Per IP version: ethertype, the shortest frame read, source address offset, protocol offset,
# destination address offset, address length.
_V4 = (0x0800, 34, 26, 23, 30, 4)
_V6 = (0x86DD, 54, 22, 20, 38, 16)

Item = bytes | tuple[str, Callable[[int], bytes]] | str   # insn, jump to a label, a label


def redirect_program(src_mac: str,
                     sources: dict[int, tuple[str, int, tuple[int, ...]]]) -> bytes:
    """The fast path's classifier for one endpoint (see the module's doc): ``sources`` maps
    an IP version to the endpoint's address of that version, the fd of its network's map of
    that version and the IP protocols taken; a version it lacks passes."""
    mac = fwd_key(src_mac, "0.0.0.0")[:6]
    prog: list[Item] = [_mov(R6, R1), _ldx(4, R2, R6, SKB_DATA), _ldx(4, R3, R6, SKB_DATA_END),
                        _mov(R4, R2), _add_imm(R4, 14),
                        ("pass", lambda off: _jgt(R4, R3, off)),
                        _ldx(2, R5, R2, 12)]
    for version in sorted(sources):
        ethertype = (_V4 if version == 4 else _V6)[0]
        prog.append((f"v{version}", _if_eq(R5, ethertype.to_bytes(2, "big"))))
    prog.append(("pass", _ja))
    for version, (ip, map_fd, protos) in sorted(sources.items()):
        prog += [f"v{version}", *_section(version, mac, ip, map_fd, protos)]
    prog += ["pass", _mov_imm(R0, TC_ACT_OK), _exit()]
    return _resolve(prog)


def _if_eq(reg: int, field: bytes) -> Callable[[int], bytes]:
    """A jump taken when the packet field just loaded into ``reg`` equals ``field``."""
    return lambda off: _jeq32_imm(reg, _le(field), off)


def _if_ne(reg: int, field: bytes) -> Callable[[int], bytes]:
    return lambda off: _jne32_imm(reg, _le(field), off)


def _section(version: int, mac: bytes, ip: str, map_fd: int,
             protos: tuple[int, ...]) -> list[Item]:
    """Checks and lookup for one IP version: source MAC and address, protocol, then the key
    (destination MAC, two zero bytes, destination address) on the stack, looked up."""
    _type, least, src_off, proto_off, dst_off, alen = _V4 if version == 4 else _V6
    raw = ipaddress.ip_address(ip).packed
    if len(raw) != alen:
        raise invalid("sources", f"{ip!r} is not an IPv{version} address", op="bpf::program")
    out: list[Item] = [_mov(R4, R2), _add_imm(R4, least),
                       ("pass", lambda off: _jgt(R4, R3, off)),
                       _ldx(4, R4, R2, 6), ("pass", _if_ne(R4, mac[:4])),
                       _ldx(2, R4, R2, 10), ("pass", _if_ne(R4, mac[4:]))]
    for k in range(0, alen, 4):
        out += [_ldx(4, R4, R2, src_off + k), ("pass", _if_ne(R4, raw[k:k + 4]))]
    out.append(_ldx(1, R4, R2, proto_off))
    # on a match, each test jumps over the tests left and the jump to "pass"
    out += [_jeq32_imm(R4, proto, len(protos) - n) for n, proto in enumerate(protos)]
    out.append(("pass", _ja))
    key = -(8 + alen)                                   # the key's place on the stack
    out += [_ldx(4, R4, R2, 0), _stx(4, R10, R4, key),
            _ldx(2, R4, R2, 4), _stx(2, R10, R4, key + 4), _sth_imm(R10, key + 6, 0)]
    for k in range(0, alen, 4):
        out += [_ldx(4, R4, R2, dst_off + k), _stx(4, R10, R4, key + 8 + k)]
    out += [*_ld_map_fd(R1, map_fd), _mov(R2, R10), _add_imm(R2, key),
            _call(HELPER_MAP_LOOKUP), ("pass", lambda off: _jeq_imm(R0, 0, off)),
            _ldx(4, R1, R0, 0), _mov_imm(R2, 0), _call(HELPER_REDIRECT), _exit()]
    return out


def _resolve(prog: list[Item]) -> bytes:
    """Instructions with their jumps to labels made, once every label's place is known."""
    where: dict[str, int] = {}
    n = 0
    for item in prog:
        if isinstance(item, str):
            where[item] = n
        else:
            n += 1
    out = []
    n = 0
    for item in prog:
        if isinstance(item, str):
            continue
        out.append(item[1](where[item[0]] - n - 1) if isinstance(item, tuple) else item)
        n += 1
    return b"".join(out)


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
