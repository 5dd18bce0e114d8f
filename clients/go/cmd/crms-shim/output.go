package main

import (
	"syscall"
)

// The job writes its stdout and stderr to two pipes that the shim copies to
// its own fds 1 and 2 (the run's stdout and stderr files), so that it can
// keep, in output.order, the order in which the two streams were written:
// one 8-byte record each time the stream being written changes, and one
// last record when the run ends. A record is the stream's fd number (1 or
// 2) in its first byte and, in the other seven (big-endian), the offset in
// that stream's file where its run of bytes ended. The next run is the
// other stream's, from where its previous run ended. Records are 8 bytes so
// that none straddles a page. A reader that finds no order file (runs
// without the shim, or from before it kept one) shows stdout, then stderr.
//
// The order is the order the shim read the bytes in: writes to the two
// streams closer together than the shim wakes up (microseconds) come out
// grouped by stream, as with any two pipes. The shim is the pipes' only
// reader, so a job never waits on the worker; if the shim itself is killed,
// the job's next write gets SIGPIPE.

// orderFile is the order index in the run directory.
const orderFile = "output.order"

// orderRecordBytes is the size of one record of orderFile.
const orderRecordBytes = 8

// copyChunk is how much one read from a pipe takes (a pipe's default capacity).
const copyChunk = 64 * 1024

type output struct {
	epoll   int
	pipes   [2]int // read ends of the job's stdout and stderr; -1 once closed
	wake    [2]int // a pipe whose read end tells the copier to drain and stop
	order   int    // output.order; -1 when it could not be created
	current int    // index of the stream written last; -1 before any
	offsets [2]int64
	buf     []byte
	done    chan struct{}
}

// newOutput makes the job's stdout and stderr pipes; it returns the write
// ends to give to the job (the caller closes them once it has started).
// On any error it returns nil, and the job writes to the files directly.
func newOutput(o *options) (*output, [2]int) {
	out := &output{pipes: [2]int{-1, -1}, wake: [2]int{-1, -1}, order: -1, current: -1, epoll: -1}
	var jobEnds [2]int
	fail := func() (*output, [2]int) {
		for _, fd := range []int{out.pipes[0], out.pipes[1], jobEnds[0], jobEnds[1], out.wake[0], out.wake[1], out.epoll} {
			if fd > 0 {
				_ = syscall.Close(fd)
			}
		}
		return nil, [2]int{}
	}
	for i := range out.pipes {
		var p [2]int
		if syscall.Pipe2(p[:], syscall.O_CLOEXEC) != nil {
			return fail()
		}
		out.pipes[i], jobEnds[i] = p[0], p[1]
		// Only the shim's end is non-blocking: the job writes as it would to a file.
		if syscall.SetNonblock(p[0], true) != nil {
			return fail()
		}
	}
	if syscall.Pipe2(out.wake[:], syscall.O_CLOEXEC) != nil {
		return fail()
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fail()
	}
	out.epoll = ep
	for _, fd := range []int{out.pipes[0], out.pipes[1], out.wake[0]} {
		if syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}) != nil {
			return fail()
		}
	}
	flags := syscall.O_WRONLY | syscall.O_CREAT | syscall.O_TRUNC | syscall.O_APPEND | syscall.O_CLOEXEC
	if o.dirFd >= 0 {
		out.order, err = syscall.Openat(o.dirFd, orderFile, flags, 0o644)
	} else {
		out.order, err = syscall.Open(o.dir+"/"+orderFile, flags, 0o644)
	}
	if err != nil {
		out.order = -1
	}
	out.buf = make([]byte, copyChunk)
	out.done = make(chan struct{})
	return out, jobEnds
}

// record appends the end of the current stream's run to output.order.
func (out *output) record() {
	if out.order < 0 || out.current < 0 {
		return
	}
	var rec [orderRecordBytes]byte
	end := out.offsets[out.current]
	for i := orderRecordBytes - 1; i > 0; i-- {
		rec[i] = byte(end)
		end >>= 8
	}
	rec[0] = byte(out.current + 1)
	if n, err := syscall.Write(out.order, rec[:]); err != nil || n != len(rec) {
		// A torn index would misplace everything after it: keep none from here.
		_ = syscall.Close(out.order)
		out.order = -1
	}
}

// copyOnce moves what one read of stream i gives to its file; false once the
// pipe has nothing more now (empty, or closed by every writer).
func (out *output) copyOnce(i int) bool {
	fd := out.pipes[i]
	if fd < 0 {
		return false
	}
	n, err := syscall.Read(fd, out.buf)
	if err == syscall.EINTR {
		return true
	}
	if err == syscall.EAGAIN {
		return false
	}
	if n <= 0 {
		_ = syscall.EpollCtl(out.epoll, syscall.EPOLL_CTL_DEL, fd, nil)
		_ = syscall.Close(fd)
		out.pipes[i] = -1
		return false
	}
	if out.current != i {
		out.record()
		out.current = i
	}
	// The file is the shim's fd 1 or 2. Bytes it refuses (a full disk) are
	// dropped rather than stopping the job, which would block on a full pipe.
	data := out.buf[:n]
	for len(data) > 0 {
		w, err := syscall.Write(i+1, data)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || w <= 0 {
			break
		}
		out.offsets[i] += int64(w)
		data = data[w:]
	}
	return true
}

// drainReads bounds the reads after stop: enough for two full pipes of the
// largest size an unprivileged job can set (1 MiB each), and an end even if
// a process that left the group goes on writing.
const drainReads = 2 * (1 << 20) / copyChunk

// run copies until stop is called and what the pipes held is copied, or
// until every writer has closed them.
func (out *output) run() {
	defer close(out.done)
	stopping := false
	for !stopping && (out.pipes[0] >= 0 || out.pipes[1] >= 0) {
		_, stopping = out.poll(-1)
	}
	for i := 0; stopping && i < drainReads; i++ {
		if copied, _ := out.poll(0); !copied {
			break
		}
	}
	out.record()
	for i, fd := range out.pipes {
		if fd >= 0 {
			_ = syscall.Close(fd)
			out.pipes[i] = -1
		}
	}
}

// poll waits up to msec (-1: no limit) for the pipes and copies one read
// from each ready one, in the order they became ready (the order written).
// It says whether it copied anything and whether stop was called.
func (out *output) poll(msec int) (copied, stopping bool) {
	var events [3]syscall.EpollEvent
	n, err := syscall.EpollWait(out.epoll, events[:], msec)
	if err != nil {
		return false, err != syscall.EINTR
	}
	for _, ev := range events[:n] {
		switch int(ev.Fd) {
		case out.wake[0]:
			stopping = true
		case out.pipes[0]:
			copied = out.copyOnce(0) || copied
		case out.pipes[1]:
			copied = out.copyOnce(1) || copied
		}
	}
	return copied, stopping
}

// stop has the copier drain what the job wrote and waits for it: every
// process that could write has ended. A process that left the group and
// still holds the pipes gets EPIPE from now on.
func (out *output) stop() {
	_, _ = syscall.Write(out.wake[1], []byte{0})
	<-out.done
	if out.order >= 0 {
		_ = syscall.Close(out.order)
	}
}
