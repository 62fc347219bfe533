"""What a run needs to know before and after: which exit loop, whether /dev/kvm works, the result."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field

from bpfio.errors import KvmError
from bpfio.kvm import abi as K
from bpfio.kvm.vcpu import VcpuStats

DEV_KVM = "/dev/kvm"
LOOPS = ("native", "python")
DEFAULT_LOOP: str | None = None     # None: native where native code can run, else python


def choose_loop(loop: str | None = None) -> tuple[str, str]:
    """Return (the exit loop to run, a notice line or "") for a requested ``loop``.

    None asks for the default: ``DEFAULT_LOOP`` if set, else native where native
    code can run here (x86-64 Linux, exec mappings allowed, ``BPFIO_JIT`` not 0),
    else python with a notice saying why.  Asking for ``native`` where it cannot
    run is a :class:`KvmError`.
    """
    from bpfio.exec.jit.mem import unavailable_reason
    if loop is not None and loop not in LOOPS:
        raise KvmError(f"unknown exit loop {loop!r} (native or python)")
    wanted = loop or DEFAULT_LOOP
    if wanted == "python":
        return "python", ""
    why = unavailable_reason()
    if why is None:
        return "native", ""
    if wanted == "native" and loop is not None:
        raise KvmError(f"the native exit loop cannot run here: {why}")
    return "python", f"note: native exit loop unavailable ({why}); using the Python loop"


def available() -> tuple[bool, str]:
    """Return (True, "") if /dev/kvm can run guests here, else (False, why not)."""
    try:
        fd = os.open(DEV_KVM, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        return False, f"{DEV_KVM} cannot be opened: {err.strerror}"
    try:
        version = fcntl.ioctl(fd, K.KVM_GET_API_VERSION, 0)
        if version != K.KVM_API_VERSION:
            return False, f"KVM API version {version}, expected {K.KVM_API_VERSION}"
        return True, ""
    except OSError as err:
        return False, f"KVM_GET_API_VERSION failed: {err.strerror}"
    finally:
        os.close(fd)


@dataclass
class RunResult:
    """The outcome of :meth:`Vm.run`: per-vCPU stats and the wall time."""

    vcpus: list[VcpuStats]
    seconds: float
    offload: dict = field(default_factory=dict)
    handler_seconds: float | None = None    # time inside the port handler (timed runs)
    loop: str = "python"                    # which exit loop ran: "native" or "python"

    @property
    def handler_share(self) -> float | None:
        """Fraction of the wall time spent in the port handler (timed runs only)."""
        if self.handler_seconds is None or self.seconds <= 0:
            return None
        return self.handler_seconds / self.seconds

    @property
    def exits(self) -> int:
        """Total returns from KVM_RUN over all vCPUs."""
        return sum(v.exits for v in self.vcpus)

    @property
    def io_exits(self) -> int:
        """Total KVM_EXIT_IO exits over all vCPUs."""
        return sum(v.io_exits for v in self.vcpus)

    @property
    def accesses(self) -> int:
        """Total port accesses handled in userspace (string elements counted)."""
        return sum(v.accesses for v in self.vcpus)

    @property
    def exits_per_second(self) -> float:
        """PIO exits per wall-clock second over the whole run."""
        return self.io_exits / self.seconds if self.seconds > 0 else 0.0
