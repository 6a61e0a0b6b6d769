"""Deleting links off the caller's path, in batches.

Every link deletion waits in the kernel for an RCU barrier before it returns (about 17 ms on
this kind of VM, most of an endpoint's create-attach-delete). A :class:`LinkReaper` takes a
link out of service at once — down, renamed to a tombstone name (so its name is free again),
put in a device group of its own — and a background thread deletes the whole group in one
request, so one barrier covers every link retired meanwhile.

A retired veth's peer keeps its name in its namespace until the reaping: before giving that
name to a new interface in the same namespace, call :meth:`LinkReaper.flush` (or catch
AlreadyExists, flush, retry).

The group number must belong to silo alone in that namespace: every link in it is deleted.

Imports :mod:`silo.errors`, :mod:`silo.kernel.netlink`.
"""

from __future__ import annotations

import itertools
import os
import threading

from silo.errors import NotFound, SiloError, invalid
from silo.kernel.netlink import Netlink, check_ifname

DEFAULT_GROUP = 0x5110DEAD


class LinkReaper:
    """Retires links now and deletes them in batches on a thread of its own (with its own
    rtnetlink socket in ``netns``). :meth:`close` deletes what is left and stops the thread."""

    def __init__(self, netns: str | None = None, *, prefix: str = "silo",
                 group: int = DEFAULT_GROUP, delay: float = 0.1, batch: int = 64) -> None:
        if not isinstance(group, int) or isinstance(group, bool) or not 0 < group <= 0xFFFFFFFF:
            raise invalid("group", f"must be in 1..4294967295, got {group!r}",
                          op="linkreaper::new")
        if not prefix or len(prefix) > 6 or not prefix.isalnum():
            raise invalid("prefix", f"must be 1-6 letters or digits, got {prefix!r}",
                          op="linkreaper::new")
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 60:
            raise invalid("delay", f"must be 0..60 seconds, got {delay!r}", op="linkreaper::new")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise invalid("batch", f"must be a positive integer, got {batch!r}",
                          op="linkreaper::new")
        self.group = group
        self.prefix = prefix
        # A deletion holds the rtnl lock through an expedited RCU grace period, stalling every
        # other link change meanwhile: wait up to ``delay`` seconds for ``batch`` links.
        self.delay = delay
        self.batch = batch
        self._flushing = 0
        self._nl = Netlink(netns)
        try:  # what a previous run retired and never reaped
            self._nl.delete_group(group)
        except NotFound:
            pass
        except SiloError:
            self._nl.close()
            raise
        self._names = itertools.count()
        self._tag = f"{os.getpid() & 0xFFFF:04x}"
        self._cond = threading.Condition()
        self._retired = 0        # links retired so far
        self._covered = 0        # of those, how many a finished group delete covered
        self._closing = False
        self.last_error: SiloError | None = None
        self._thread = threading.Thread(target=self._loop, name="silo-linkreaper", daemon=True)
        self._thread.start()

    def retire(self, nl: Netlink, name: str) -> None:
        """Take ``name`` (in ``nl``'s namespace, the reaper's) out of service now: down, in
        the reaper's group, renamed to a tombstone; deleted soon after. NotFound if absent."""
        op = "linkreaper::retire"
        check_ifname(name, op=op)
        with self._cond:
            tomb = f"{self.prefix}z{self._tag}{next(self._names) & 0xFFFF:04x}"
        # Down and in the group first: a rename needs the link down, and from here on the
        # link is the reaper's even if the rename fails.
        nl.set_link(name, up=False, group=self.group)
        try:
            nl.set_link(name, rename=tomb)
        except NotFound:
            pass  # a reaping already running took it: gone, as wanted
        except SiloError:
            pass  # still in the group: it goes at the next reaping under its old name
        with self._cond:
            self._retired += 1
            self._cond.notify_all()

    def flush(self) -> None:
        """Return once every link retired before this call is deleted."""
        with self._cond:
            target = self._retired
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._covered < target and self._thread.is_alive():
                    self._cond.wait()
            finally:
                self._flushing -= 1

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._covered == self._retired and not self._closing:
                    self._cond.wait()
                if self._covered == self._retired:
                    return  # closing with nothing left
                # Let a batch gather, unless someone waits for it or we are closing.
                self._cond.wait_for(lambda: self._closing or self._flushing > 0 or
                                    self._retired - self._covered >= self.batch,
                                    timeout=self.delay)
                upto = self._retired  # every link retired so far is in the group now
            try:
                self._nl.delete_group(self.group)
                self.last_error = None
            except NotFound:
                pass  # nothing in the group (every retired link was gone already)
            except SiloError as err:
                self.last_error = err
            with self._cond:
                self._covered = upto
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        try:
            self._nl.delete_group(self.group)
        except SiloError:
            pass
        self._nl.close()

    def __enter__(self) -> LinkReaper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DEFAULT_GROUP", "LinkReaper"]
