# rig's QEMU builds only the devices rig's arm64 guests use (configure gets
# --without-default-devices --with-devices-aarch64=rig): the virt board (which selects
# its own GIC, PL011, PCIe host and, with rig's patch, the Mali model) and what
# rig.qemu.argv plugs into it. Every other board and device of the Arm targets is left
# out, a fifth fewer compile steps on a cold build.
CONFIG_ARM_VIRT=y
# virtio-*-pci: balloon, rng, blk and net on every guest; virtio-gpu-pci is --gpu virtio-gpu.
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_BALLOON=y
CONFIG_VIRTIO_RNG=y
CONFIG_VIRTIO_BLK=y
CONFIG_VIRTIO_NET=y
CONFIG_VIRTIO_GPU=y
# pvpanic-pci: the guest tells QEMU of a panic before it flushes the report.
CONFIG_PVPANIC_PCI=y
