"""Real guests on ``/dev/kvm`` whose port I/O goes through bpfio.

Stage 8.  It owns :mod:`.abi` (the KVM ioctl structures), :mod:`.vmm` (the VM and its
vCPUs), :mod:`.guests` (building the example guests with nasm) and :mod:`.offload`
(handing provably simple writes to KVM as ioeventfds or coalesced PIO).  It may import
every stage below it; the package re-exports the VMM's public names, so
``from bpfio.kvm import run_guest`` keeps working.
"""

from bpfio.kvm.vmm import *  # noqa: F401,F403 - the package's public API is the VMM's
from bpfio.kvm.vmm import __all__  # noqa: F401
