"""silo.kernel.bpf and the tc attach of its classifier, against the real kernel: the map, the
verifier's verdict on the hand-assembled program, and a frame redirected between two veths of
a namespace that are on no bridge (only the program can carry it)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import pytest

from silo.errors import Internal, InvalidArgument
from silo.kernel import bpf, tc
from silo.kernel.netlink import Netlink
from tests.kernel.netfixtures import requires_netns

pytestmark = [pytest.mark.kernel, requires_netns]
V4, V6 = (6, 17, 1, 2), (6, 17, 58)     # TCP, UDP, ICMP, IGMP; TCP, UDP, ICMPv6


def test_the_key_is_mac_two_zero_bytes_and_the_address() -> None:
    assert bpf.fwd_key("02:00:00:00:00:0a", "10.1.2.3") == \
        bytes([2, 0, 0, 0, 0, 10, 0, 0, 10, 1, 2, 3])
    assert bpf.fwd_key("02:00:00:00:00:0a", "fd00::1") == \
        bytes([2, 0, 0, 0, 0, 10, 0, 0, 0xfd] + [0] * 14 + [1])
    for mac, ip in (("02:00:00:00:0a", "10.1.2.3"), ("02:00:00:00:00:0a", "10.1.2")):
        with pytest.raises(InvalidArgument):
            bpf.fwd_key(mac, ip)


def test_map_set_and_delete() -> None:
    fd = bpf.create_fwd_map(4, 16)
    try:
        key = bpf.fwd_key("02:00:00:00:00:0a", "10.1.2.3")
        bpf.map_set(fd, key, 7)
        bpf.map_set(fd, key, 8)               # replaces
        bpf.map_delete(fd, key)
        bpf.map_delete(fd, key)               # quiet when gone
        for bad in (b"short", key + b"x"):     # the kernel would read past a short key
            with pytest.raises(InvalidArgument):
                bpf.map_set(fd, bad, 1)
            with pytest.raises(InvalidArgument):
                bpf.map_delete(fd, bad)
        with pytest.raises(InvalidArgument):
            bpf.map_set(0, key, 1)             # no map of ours: its key size is not known
        with pytest.raises(InvalidArgument):
            bpf.create_fwd_map(5)
    finally:
        bpf.close_map(fd)


def test_the_verifier_accepts_the_program_and_a_bad_one_is_refused_with_its_log() -> None:
    fd4, fd6 = bpf.create_fwd_map(4, 16), bpf.create_fwd_map(6, 16)
    try:
        for sources in ({4: ("10.1.2.3", fd4, V4)}, {6: ("fd00::3", fd6, V6)},
                        {4: ("10.1.2.3", fd4, V4), 6: ("fd00::3", fd6, V6)}):
            prog = bpf.load_classifier(bpf.redirect_program("02:00:00:00:00:0a", sources))
            os.close(prog)
        with pytest.raises(InvalidArgument):
            bpf.redirect_program("02:00:00:00:00:0a", {6: ("10.1.2.3", fd6, V6)})
    finally:
        bpf.close_map(fd4)
        bpf.close_map(fd6)
    # a map fd that is no map (stdin): refused, and the error carries the kernel's words
    insns = bpf.redirect_program("02:00:00:00:00:0a", {4: ("10.1.2.3", 0, V4)})
    with pytest.raises(Internal) as err:
        bpf.load_classifier(insns)
    assert "bpf program refused" in err.value.message


def run_in(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={ns}", *argv], capture_output=True, text=True,
                          timeout=30)


def test_a_frame_is_redirected_between_veths_on_no_bridge(
        netns_factory: Callable[[], str]) -> None:
    host, a, b = netns_factory(), netns_factory(), netns_factory()
    with Netlink(host) as nl:
        nl.add_veth("ha", "eth0", peer_netns=a, peer_mac="02:00:00:00:00:0a")
        nl.add_veth("hb", "eth0", peer_netns=b, peer_mac="02:00:00:00:00:0b")
        for name in ("ha", "hb"):
            nl.set_link(name, up=True)
        index = {name: nl.link(name).index for name in ("ha", "hb")}  # type: ignore[union-attr]
    for ns, n, peer, peer_mac in ((a, 2, 3, "02:00:00:00:00:0b"),
                                  (b, 3, 2, "02:00:00:00:00:0a")):
        assert run_in(ns, "ip", "addr", "add", f"10.9.0.{n}/24", "dev", "eth0").returncode == 0
        assert run_in(ns, "ip", "addr", "add", f"fd09::{n}/64", "dev", "eth0",
                      "nodad").returncode == 0
        assert run_in(ns, "ip", "link", "set", "eth0", "up").returncode == 0
        for peer_ip in (f"10.9.0.{peer}", f"fd09::{peer}"):
            assert run_in(ns, "ip", "neigh", "add", peer_ip, "lladdr", peer_mac, "dev", "eth0",
                          "nud", "permanent").returncode == 0
    assert run_in(a, "busybox", "ping", "-c", "1", "-W", "1", "10.9.0.3").returncode != 0
    assert run_in(a, "busybox", "ping6", "-c", "1", "-W", "1", "fd09::3").returncode != 0
    fd, fd6 = bpf.create_fwd_map(4, 16), bpf.create_fwd_map(6, 16)
    try:
        with Netlink(host) as nl:
            for host_veth, mac, n in (("ha", "02:00:00:00:00:0a", 2),
                                      ("hb", "02:00:00:00:00:0b", 3)):
                bpf.map_set(fd, bpf.fwd_key(mac, f"10.9.0.{n}"), index[host_veth])
                bpf.map_set(fd6, bpf.fwd_key(mac, f"fd09::{n}"), index[host_veth])
                prog = bpf.load_classifier(bpf.redirect_program(
                    mac, {4: (f"10.9.0.{n}", fd, V4), 6: (f"fd09::{n}", fd6, V6)}))
                tc.attach_ingress_bpf(host_veth, prog, nl=nl)
                os.close(prog)
        assert "silo" in run_in(host, "tc", "filter", "show", "dev", "ha", "ingress").stdout
        assert run_in(a, "busybox", "ping", "-c", "1", "-W", "1", "10.9.0.3").returncode == 0
        assert run_in(a, "busybox", "ping6", "-c", "1", "-W", "1", "fd09::3").returncode == 0
        # a frame from another source address is not the endpoint's: not redirected
        assert run_in(a, "ip", "addr", "add", "10.9.0.99/24", "dev", "eth0").returncode == 0
        assert run_in(a, "busybox", "ping", "-c", "1", "-W", "1", "-I", "10.9.0.99",
                      "10.9.0.3").returncode != 0
        # its key gone, nothing is redirected to b
        bpf.map_delete(fd, bpf.fwd_key("02:00:00:00:00:0b", "10.9.0.3"))
        assert run_in(a, "busybox", "ping", "-c", "1", "-W", "1", "10.9.0.3").returncode != 0
        with Netlink(host) as nl:
            tc.detach_ingress("ha", nl=nl)
            tc.detach_ingress("ha", nl=nl)            # quiet when there is none
        assert "silo" not in run_in(host, "tc", "filter", "show", "dev", "ha",
                                    "ingress").stdout
    finally:
        bpf.close_map(fd)
        bpf.close_map(fd6)
