// Command conformance runs the cross-client conformance scenario against a
// crms control plane with the Go client and prints one JSON line:
//
//	conformance localhost:7070
//	{"client":"go","final_state":"SUCCEEDED","output":"conformance\n","killed_state":"KILLED","unknown_code":"NOT_FOUND","invalid_code":"INVALID_ARGUMENT"}
//
// The scenario: submit ["sh","-c","echo conformance"], wait, report its final
// state and whole stdout; submit ["sleep","60"], wait until RUNNING (watch),
// kill it, wait, report its final state; GetJob("999999999") and a submit
// with an empty command, report their gRPC code names. It exits 1 (after
// printing what it has) if a step fails outright.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/crms-dev/crms/clients/go/crms"
)

type result struct {
	Client      string `json:"client"`
	FinalState  string `json:"final_state"`
	Output      string `json:"output"`
	KilledState string `json:"killed_state"`
	UnknownCode string `json:"unknown_code"`
	InvalidCode string `json:"invalid_code"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: conformance ADDRESS")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := scenario(ctx, os.Args[1])
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(1)
	}
}

func scenario(ctx context.Context, address string) (*result, error) {
	res := &result{Client: "go"}
	c, err := crms.Dial(ctx, address)
	if err != nil {
		return res, err
	}
	defer c.Close()

	job, err := c.Submit(ctx, crms.JobSpec{Command: []string{"sh", "-c", "echo conformance"}})
	if err != nil {
		return res, fmt.Errorf("submit: %w", err)
	}
	job, err = c.Wait(ctx, job.ID)
	if err != nil {
		return res, fmt.Errorf("wait: %w", err)
	}
	res.FinalState = job.State.String()
	out, err := c.ReadOutput(ctx, job.ID)
	if err != nil {
		return res, fmt.Errorf("output: %w", err)
	}
	res.Output = string(out.Stdout)

	job, err = c.Submit(ctx, crms.JobSpec{Command: []string{"sleep", "60"}})
	if err != nil {
		return res, fmt.Errorf("submit sleep: %w", err)
	}
	running, err := c.WaitUntil(ctx, job.ID, func(j *crms.Job) bool { return j.State == crms.StateRunning })
	if err != nil {
		return res, fmt.Errorf("wait for RUNNING: %w", err)
	}
	if running.State != crms.StateRunning {
		return res, fmt.Errorf("job %s ended %s before it ran", job.ID, running.State)
	}
	if _, err := c.Kill(ctx, job.ID, 0); err != nil {
		return res, fmt.Errorf("kill: %w", err)
	}
	job, err = c.Wait(ctx, job.ID)
	if err != nil {
		return res, fmt.Errorf("wait after kill: %w", err)
	}
	res.KilledState = job.State.String()

	_, err = c.GetJob(ctx, "999999999")
	res.UnknownCode = crms.ErrorCodeName(err)

	_, err = c.Submit(ctx, crms.JobSpec{Command: []string{}})
	res.InvalidCode = crms.ErrorCodeName(err)
	return res, nil
}
