package worker

// Resources offered and usage measured, with real processes: CPU time
// against what /proc saw, memory limits, CUDA_VISIBLE_DEVICES, Hello.

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]uint64{"123456": 123456, "32G": 32 << 30, "1.5G": 1536 << 20, "512M": 512 << 20, "4KiB": 4096, "2t": 2 << 40} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"lots", "4X", "-1", ""} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) did not fail", bad)
		}
	}
	if s := DescribeResources(&crmsv1.Resources{Cpus: 8, MemoryBytes: 32 << 30, Named: map[string]uint64{"license": 4}}); s != "cpus 8, memory 32 GiB, gpus 0, license=4" {
		t.Errorf("DescribeResources: %q", s)
	}
}

// burn is a job that burns CPU, then writes its own utime+stime in seconds
// (fields 14 and 15 of /proc/self/stat, in 1/100 s) to the file "seen" of
// its working directory (the run directory).
var burn = []string{"sh", "-c", "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; " +
	"s=$(cat /proc/$$/stat); set -- ${s##*) }; echo $(( ${12} + ${13} )) > seen"}

func runWith(t *testing.T, shim string, spec *crmsv1.JobSpec, gpus []uint32) (*Run, Outcome) {
	t.Helper()
	r, err := startRun(runOptions{
		jobID: "1", attempt: 1, spec: spec, dataDir: t.TempDir(), workerName: "w",
		baseEnv: os.Environ(), shim: shim, gpuIndices: gpus,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, waitDone(t, r, 60*time.Second)
}

func TestUsageIsWhatProcSaw(t *testing.T) {
	shim := buildShim(t)
	for _, via := range []string{shim, ""} {
		r, o := runWith(t, via, &crmsv1.JobSpec{Command: burn}, []uint32{1, 3})
		ticks, err := os.ReadFile(filepath.Join(r.dir, "seen"))
		n, _ := strconv.Atoi(strings.TrimSpace(string(ticks)))
		seen := float64(n) / 100
		u := o.Usage
		if err != nil || u == nil || seen < 0.1 { // 0.25 s on a fast day, 0.6 s on a slow one
			t.Fatalf("shim %q: outcome %+v, seen %q %v", via, o, ticks, err)
		}
		t.Logf("shim %q: cpu_seconds %.3f (/proc saw %.2f), max_rss_bytes %d, wall %.3f, gpu_seconds %.3f", via, u.CpuSeconds, seen, u.MaxRssBytes, u.WallSeconds, u.GpuSeconds)
		if math.Abs(u.CpuSeconds-seen) > 0.1*seen+0.02 {
			t.Errorf("shim %q: cpu_seconds %v, /proc saw %v", via, u.CpuSeconds, seen)
		}
		if u.MaxRssBytes == 0 || u.WallSeconds < seen-0.02 || math.Abs(u.GpuSeconds-2*u.WallSeconds) > 0.01 {
			t.Errorf("shim %q: usage %v", via, u)
		}
	}
}

func TestMemoryReservationIsALimitAndGPUsAreVisibleDevices(t *testing.T) {
	shim := buildShim(t)
	allocate := []string{"sh", "-c", "echo started; x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo allocated"}
	for _, via := range []string{shim, ""} {
		limited := &crmsv1.JobSpec{Command: allocate, Resources: &crmsv1.Resources{MemoryBytes: 16 << 20}}
		_, o := runWith(t, via, limited, nil)
		if string(o.StdoutTail) != "started\n" || (o.ExitCode != nil && *o.ExitCode == 0) {
			t.Errorf("shim %q: a 16 MiB reservation allocated 100 MB: %+v", via, o)
		}
		_, o = runWith(t, via, &crmsv1.JobSpec{Command: allocate}, nil)
		if string(o.StdoutTail) != "started\nallocated\n" {
			t.Errorf("shim %q: no reservation, no limit: %+v", via, o)
		}
		missing := &crmsv1.JobSpec{Command: []string{"no-such-program-crms"}, Resources: &crmsv1.Resources{MemoryBytes: 16 << 20}}
		if _, o = runWith(t, via, missing, nil); o.Error != "command not found: no-such-program-crms" {
			t.Errorf("shim %q: %+v", via, o)
		}
		env := &crmsv1.JobSpec{Command: []string{"sh", "-c", "echo $CUDA_VISIBLE_DEVICES"}, Env: map[string]string{"CUDA_VISIBLE_DEVICES": "7"}}
		if _, o = runWith(t, via, env, []uint32{0, 2}); string(o.StdoutTail) != "0,2\n" {
			t.Errorf("shim %q: CUDA_VISIBLE_DEVICES %q", via, o.StdoutTail)
		}
	}
}

func TestHelloOffersResourcesAndFinishedCarriesUsage(t *testing.T) {
	shim := buildShim(t)
	for _, given := range []*crmsv1.Resources{nil, {Cpus: 3, MemoryBytes: 5 << 30, Gpus: 2, Named: map[string]uint64{"license": 4}}} {
		f, addr := startFake(t)
		var logs logBook
		w, err := New(Options{
			Name: "gw", Slots: 2, Servers: []string{addr}, DataDir: t.TempDir(), Version: "test",
			Heartbeat: time.Second, AckTimeout: time.Second, Shim: shim, Resources: given,
			Logf: func(format string, args ...any) { logs.add(fmt.Sprintf(format, args...)) },
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		s := f.next(t)
		h := expect(t, s, hello)
		r := h.GetResources()
		if given == nil {
			if r.GetCpus() != uint32(max(runtime.NumCPU(), 2)) || r.GetMemoryBytes() != totalMemory() || r.GetMemoryBytes() == 0 || r.GetGpus() != DetectGPUs() {
				t.Fatalf("detected %v", r)
			}
		} else if r.GetCpus() != 3 || r.GetMemoryBytes() != 5<<30 || r.GetGpus() != 2 || r.GetNamed()["license"] != 4 || h.Slots != 2 {
			t.Fatalf("given %v, hello %v", given, h)
		}
		if !strings.Contains(logs.String(), "starting: 2 slots, "+DescribeResources(r)+", servers") || !strings.Contains(logs.String(), "memory reservations: ") {
			t.Fatalf("log %s", logs.String())
		}
		s.send <- welcome(1)
		s.send <- &crmsv1.AttachResponse{Msg: &crmsv1.AttachResponse_Assign{Assign: &crmsv1.Assign{
			JobId: "1", Attempt: 1, GpuIndices: []uint32{1}, Spec: &crmsv1.JobSpec{Command: []string{"sh", "-c", "echo $CUDA_VISIBLE_DEVICES; sleep 0.2"}}}}}
		expect(t, s, started)
		fin := expect(t, s, finished)
		u := fin.GetUsage()
		if string(fin.StdoutTail) != "1\n" || u == nil || u.WallSeconds < 0.2 || u.MaxRssBytes == 0 || math.Abs(u.GpuSeconds-u.WallSeconds) > 0.01 {
			t.Fatalf("finished %v", fin)
		}
		w.Stop(true, "test over")
	}
}

func TestAReAdoptedRunReportsTheUsageOfTheShimsRecord(t *testing.T) {
	shim := buildShim(t)
	dataDir := t.TempDir()
	opts := runOptions{jobID: "1", attempt: 1, dataDir: dataDir, workerName: "w", baseEnv: os.Environ(), shim: shim,
		spec: &crmsv1.JobSpec{Command: []string{"sh", "-c", "sleep 0.5"}}, gpuIndices: []uint32{0}}
	first, err := startRun(opts)
	if err != nil {
		t.Fatal(err)
	}
	var rec *pidRecord
	for i := 0; i < 100 && rec == nil; i++ {
		time.Sleep(20 * time.Millisecond)
		rec, _ = readRecord[pidRecord](filepath.Join(first.dir, "pid"))
	}
	if rec == nil {
		t.Fatal("no pid record")
	}
	first.Detach() // the worker process goes; the shim keeps the run
	adopted, err := adoptRun(runOptions{jobID: "1", attempt: 1, dataDir: dataDir}, *rec)
	if err != nil {
		t.Fatal(err)
	}
	o := waitDone(t, adopted, 10*time.Second)
	if u := o.Usage; u == nil || u.WallSeconds < 0.5 || math.Abs(u.GpuSeconds-u.WallSeconds) > 0.01 {
		t.Fatalf("outcome %+v", o)
	}
}
