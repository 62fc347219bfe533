"""Real guests on ``/dev/kvm`` whose port I/O goes through bpfio.

Stage 8.  It owns :mod:`.abi` (the KVM ioctl structures), :mod:`.vmm` (the VM and its
vCPUs), :mod:`.guests` (building the example guests with nasm) and :mod:`.offload`
(handing provably simple writes to KVM as ioeventfds or coalesced PIO).  It may import
every stage below it; the package re-exports the VMM's public names, so
``from bpfio.kvm import run_guest`` keeps working.
"""

from bpfio.kvm.vmm import *  # noqa: F401,F403 - the package's public API is the VMM's
from bpfio.kvm.vmm import __all__  # noqa: F401
# The old module's constants, outside __all__ but importable from it before the split.
from bpfio.kvm.vcpu import GDT_ADDR, STACK_STRIDE, STACK_TOP  # noqa: F401,E402
from bpfio.kvm.vmm import DEFAULT_MEM, DEV_KVM, TSS_ADDR  # noqa: F401,E402
