package main

import (
	"fmt"
	"math"

	"k8s.io/apimachinery/pkg/api/resource"
)

// memoryLimitEnv holds the container's memory limit in bytes: the Deployment sets it from the downward API
// (resourceFieldRef limits.memory). Without a limit on the container, the downward API gives the node's
// allocatable memory, so the soft limit below is then no tighter than the node.
const memoryLimitEnv = "MEMORY_LIMIT"

// memoryLimitFraction of the container's memory limit becomes the Go runtime's soft memory limit. The runtime
// counts only the memory it manages (heap, goroutine stacks, its own metadata), which is nearly all of the
// manager's anonymous memory; the container's memory also holds the binary's file-backed pages and the heap's
// overshoot while a collection runs (the limit is soft). Measured with `make bench-load` (the manager binary as
// its own process): RSS 94 MiB after one run = 72 MiB file-backed + 22 MiB anonymous (Go runtime sys 30 MiB);
// 127 MiB after 30 runs at once = 74 MiB file-backed + 53 MiB anonymous (Go runtime sys 60 MiB). File-backed
// pages are clean and the kernel reclaims them before the cgroup's OOM killer acts, so what must stay under the
// limit is the anonymous part: a tenth of the limit (about 26 MiB of the shipped 256 MiB) is the overshoot's room,
// as the Go GC guide's 5-10% headroom advises. Near the limit the binary's pages are read again from disk: slower,
// not killed.
const memoryLimitFraction = 0.9

// softMemoryLimit is the limit to hand debug.SetMemoryLimit at start, or 0 to leave the runtime's: an explicit
// GOMEMLIMIT wins (the runtime has read it already), and no container limit sets nothing.
func softMemoryLimit(gomemlimit, containerLimit string) (int64, error) {
	if gomemlimit != "" || containerLimit == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(containerLimit)
	if err != nil {
		return 0, fmt.Errorf("$%s=%q is not a quantity: %w", memoryLimitEnv, containerLimit, err)
	}
	limit, ok := q.AsInt64()
	if !ok || limit <= 0 {
		return 0, fmt.Errorf("$%s=%q is not a positive number of bytes", memoryLimitEnv, containerLimit)
	}
	return int64(math.Floor(float64(limit) * memoryLimitFraction)), nil
}
