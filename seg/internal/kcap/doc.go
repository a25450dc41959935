// Package kcap captures real Linux TCP/IPv4 and ICMP packets for seg's
// golden tests. It is test support only.
//
// Invariants: everything happens inside two network namespaces created
// here (one per locked OS thread, via unshare(CLONE_NEWNET)); the root
// namespace is never configured and never carries a packet. Namespace A
// holds TUN "kcapA" with 198.18.0.1/24, namespace B holds TUN "kcapB"
// with 198.18.0.2/24, and this process relays IPv4 packets between the two
// TUN devices, recording each. TUN without offloads makes the kernel
// compute full checksums, so the recorded bytes are exactly what Linux
// puts on a wire. The namespaces vanish when Capture returns: the locked
// threads exit and every descriptor is closed. All waits are bounded.
package kcap
