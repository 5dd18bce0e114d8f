package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
)

// The run shim keeps beside a run's output files an order index
// (cmd/crms-shim/output.go): one 8-byte record each time the stream being
// written changes, and one when the run ends, each the stream's fd number in
// its first byte and, big-endian in the other seven, the offset in that
// stream's file where its run of bytes ended.
const (
	orderFile        = "output.order"
	orderRecordBytes = 8
)

// errRunNotFound: the run directory does not exist and the run is not starting.
type errRunNotFound struct{ dir string }

func (e errRunNotFound) Error() string {
	return fmt.Sprintf("no output on this worker: %s does not exist", e.dir)
}

// outputReader reads one run's output files and its order index.
type outputReader struct {
	ctx     context.Context
	dir     string
	files   [3]*os.File // stdout, stderr, order index
	offsets [2]int64
	order   int64 // bytes of the order index read
	emit    func(stream crmsv1.OutputStream, data []byte, offset int64) bool
}

var outputStreams = [2]crmsv1.OutputStream{crmsv1.OutputStream_OUTPUT_STREAM_STDOUT, crmsv1.OutputStream_OUTPUT_STREAM_STDERR}

// file opens stdout (0), stderr (1) or the order index (2) once it exists.
func (o *outputReader) file(i int) *os.File {
	if o.files[i] == nil {
		if f, err := os.Open(filepath.Join(o.dir, [3]string{"stdout", "stderr", orderFile}[i])); err == nil {
			o.files[i] = f
		}
	}
	return o.files[i]
}

func (o *outputReader) size(i int) (int64, error) {
	f := o.file(i)
	if f == nil {
		return 0, nil
	}
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}

// upTo emits stream i from its offset up to end. errStop: emit said stop.
func (o *outputReader) upTo(i int, end int64) error {
	for o.offsets[i] < end {
		if err := o.ctx.Err(); err != nil {
			return err
		}
		f := o.file(i)
		if f == nil {
			return nil
		}
		buf := make([]byte, min(int64(maxChunkBytes), end-o.offsets[i]))
		n, err := f.ReadAt(buf, o.offsets[i])
		if n == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			return nil // truncated underneath us
		}
		offset := o.offsets[i]
		o.offsets[i] += int64(n)
		if !o.emit(outputStreams[i], buf[:n], offset) {
			return errStop
		}
	}
	return nil
}

var errStop = errors.New("stopped")

// pass emits what was written since the last pass, in the order written.
func (o *outputReader) pass() error {
	// The sizes before the index: a byte within them that no record covers
	// yet belongs to the run of bytes being written now, which can only be
	// one stream's (the shim records a run's end before the other stream's
	// next bytes). Without an index this is stdout, then stderr.
	var sizes [2]int64
	for i := range sizes {
		n, err := o.size(i)
		if err != nil {
			return err
		}
		sizes[i] = n
	}
	if index := o.file(2); index != nil {
		size, err := o.size(2)
		if err != nil {
			return err
		}
		records := make([]byte, (size-o.order)/orderRecordBytes*orderRecordBytes)
		n, _ := index.ReadAt(records, o.order)
		for r := 0; r+orderRecordBytes <= n; r += orderRecordBytes {
			stream := int(records[r]) - 1
			if stream != 0 && stream != 1 {
				break // not a record: read on as if there were no more
			}
			var end int64
			for _, b := range records[r+1 : r+orderRecordBytes] {
				end = end<<8 | int64(b)
			}
			o.order += orderRecordBytes
			if err := o.upTo(stream, end); err != nil {
				return err
			}
		}
	}
	for i, size := range sizes {
		if err := o.upTo(i, size); err != nil {
			return err
		}
	}
	return nil
}

// readOutput reads a run's stdout and stderr from offset 0 in chunks of at
// most 64 KiB, calling emit for each (emit returns false to stop), in the
// order they were written when the run shim kept an order index, else
// stdout, then stderr. Without follow it ends at the current end of both
// files; with follow it polls until isEnded() holds, then reads what is
// left and ends. It returns nil when done, ctx's error when stopped, or the
// error that stopped it.
func readOutput(ctx context.Context, dir string, follow bool, isEnded func() bool, emit func(stream crmsv1.OutputStream, data []byte, offset int64) bool) error {
	o := &outputReader{ctx: ctx, dir: dir, emit: emit}
	defer func() {
		for _, f := range o.files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for {
		// Sample "ended" before reading, so a final read always follows the end.
		endedBefore := isEnded()
		if _, err := os.Stat(dir); err != nil && endedBefore {
			return errRunNotFound{dir: dir}
		}
		if err := o.pass(); err != nil {
			if errors.Is(err, errStop) {
				return ctx.Err()
			}
			return err
		}
		if !follow || endedBefore {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(followPoll):
		}
	}
}
