package worker

// What a worker offers (Hello.resources): cpus, memory and gpus detected at
// start, each overridable by a flag, plus named countable resources. The same
// rules as the TypeScript worker (src/worker/resources.ts).

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
)

// ResourceName is the rule for named resources: 1 to 63 of [a-z0-9_.-].
var ResourceName = regexp.MustCompile(`^[a-z0-9_.-]{1,63}$`)

// DetectGPUs is the number of GPUs `nvidia-smi -L` lists (one line each); 0
// when it is absent, fails or takes over 10 s.
func DetectGPUs() uint32 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nvidia-smi", "-L").Output()
	if err != nil {
		return 0
	}
	n := uint32(0)
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n
}

// totalMemory is MemTotal of /proc/meminfo in bytes; 0 when unknown.
func totalMemory() uint64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// DetectResources is what this machine offers: runtime.NumCPU() (at least
// slots, so that --slots N alone still runs N default one-cpu jobs at once),
// total memory, GPUs from nvidia-smi -L; no named resources.
func DetectResources(slots int) *crmsv1.Resources {
	cpus := runtime.NumCPU()
	if slots > cpus {
		cpus = slots
	}
	return &crmsv1.Resources{Cpus: uint32(cpus), MemoryBytes: totalMemory(), Gpus: DetectGPUs()}
}

var sizePattern = regexp.MustCompile(`(?i)^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$`)

// ParseBytes reads a size: plain bytes, or a number with a binary suffix K,
// M, G or T (also KiB, KB...: powers of 1024): 32G, 1.5G, 512M.
func ParseBytes(s string) (uint64, error) {
	m := sizePattern.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("expected bytes or a size like 512M, 32G (K, M, G, T: powers of 1024), got %q", s)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	shift := strings.Index("KMGT", strings.ToUpper(m[2])) + 1
	if m[2] == "" {
		shift = 0
	}
	v := math.Floor(n * math.Pow(1024, float64(shift)))
	if v >= 1<<63 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return uint64(v), nil
}

// FormatBytes is a byte count for people: 32 GiB, 1.5 MiB, 512 B.
func FormatBytes(b uint64) string {
	n, unit := float64(b), 0
	for n >= 1024 && unit < 5 {
		n /= 1024
		unit++
	}
	if unit == 0 {
		return strconv.FormatUint(b, 10) + " B"
	}
	s := strconv.FormatFloat(n, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGTP"[unit-1]) + "iB"
}

// DescribeResources is one line for the start log: "cpus 8, memory 32 GiB, gpus 0, license=4".
func DescribeResources(r *crmsv1.Resources) string {
	s := fmt.Sprintf("cpus %d, memory %s, gpus %d", r.GetCpus(), FormatBytes(r.GetMemoryBytes()), r.GetGpus())
	names := make([]string, 0, len(r.GetNamed()))
	for name := range r.GetNamed() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s += fmt.Sprintf(", %s=%d", name, r.GetNamed()[name])
	}
	return s
}

// memoryLimits is the line logged at start: how runs with a memory
// reservation are limited (the shim's -memory-check), or the fallback
// without a shim.
func memoryLimits(shim string) string {
	if shim == "" {
		return "address-space limit (RLIMIT_AS, sh ulimit -v), best effort: no run shim"
	}
	out, err := exec.Command(shim, "-memory-check").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "the run shim cannot tell how it limits memory"
	}
	return strings.TrimSpace(string(out))
}

// limitedArgv runs command under an address-space limit of bytes without the
// shim: sh's `ulimit -v`, then exec (which finds the program in the job's
// PATH as lookPath did). Best effort, like the shim's own fallback.
func limitedArgv(bytes uint64, command []string) (string, []string) {
	kib := max(bytes/1024, 1)
	argv := []string{"sh", "-c", `ulimit -v "$1" || exit 126; shift; exec "$@"`, "crms-limit", strconv.FormatUint(kib, 10)}
	return "/bin/sh", append(argv, command...)
}

// gpuEnv is CUDA_VISIBLE_DEVICES for the reserved GPU indices; "" for none.
func gpuEnv(indices []uint32) string {
	if len(indices) == 0 {
		return ""
	}
	parts := make([]string, len(indices))
	for i, n := range indices {
		parts[i] = strconv.FormatUint(uint64(n), 10)
	}
	return "CUDA_VISIBLE_DEVICES=" + strings.Join(parts, ",")
}
