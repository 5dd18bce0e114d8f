package worker

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"time"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
)

// DefaultShipCap is how many bytes of a finished run's output (both streams)
// are sent to the control plane to be kept with its history; the rest is
// counted as cut, which the control plane marks where it serves the output.
const DefaultShipCap = 64 << 20

const shipChunk = 4 << 20

// shares says how many bytes of each stream to send under cap: each keeps at
// least half of it when it needs it (as the TypeScript worker does).
func shares(stdout, stderr, limit int64) (int64, int64) {
	keepErr := min(stderr, max(limit/2, limit-stdout))
	return min(stdout, limit-keepErr), keepErr
}

// shipOutput sends both streams of the run in runDir through
// WorkerService.UploadOutput, in order, and returns what the control plane
// answered. An empty stderr is not sent (nothing to keep; one call less per
// job); stdout always is, so every run that wrote its files leaves a record.
func shipOutput(ctx context.Context, client crmsv1.WorkerServiceClient, jobID string, attempt uint32, runDir string, limit int64) error {
	names := []string{"stdout", "stderr"}
	streams := []crmsv1.OutputStream{crmsv1.OutputStream_OUTPUT_STREAM_STDOUT, crmsv1.OutputStream_OUTPUT_STREAM_STDERR}
	sizes := []int64{-1, -1}
	for i, n := range names {
		if st, err := os.Stat(filepath.Join(runDir, n)); err == nil {
			sizes[i] = st.Size()
		}
	}
	if sizes[0] < 0 && sizes[1] < 0 {
		return nil
	}
	keepOut, keepErr := shares(max(0, sizes[0]), max(0, sizes[1]), limit)
	keep := []int64{keepOut, keepErr}
	for i, n := range names {
		if sizes[i] < 0 || (i == 1 && sizes[i] == 0) {
			continue
		}
		if err := shipFile(ctx, client, jobID, attempt, streams[i], filepath.Join(runDir, n), sizes[i], keep[i]); err != nil {
			return err
		}
	}
	return nil
}

func shipFile(ctx context.Context, client crmsv1.WorkerServiceClient, jobID string, attempt uint32, stream crmsv1.OutputStream, file string, size, send int64) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	var offset int64
	for last := false; !last; {
		buf := make([]byte, min(shipChunk, send-offset))
		n, err := io.ReadFull(f, buf)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return err
		}
		last = offset+int64(n) >= send || n == 0
		req := &crmsv1.UploadOutputRequest{
			JobId: jobID, Attempt: attempt, Stream: stream,
			Offset: offset, Data: buf[:n], Last: last,
		}
		if last {
			req.CutBytes = size - (offset + int64(n))
		}
		callCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
		_, err = client.UploadOutput(callCtx, req)
		cancel()
		if err != nil {
			return err
		}
		offset += int64(n)
	}
	return nil
}
