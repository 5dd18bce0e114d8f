// Command gocrms-session is GoCRMS's Python CLI session (GoCRMS README,
// "Python CLI") redone with the crms Go client, line for line as
// clients/python/examples/gocrms_session.py prints it:
//
//	GoCRMS:                                         crms:
//	  crms.createJob("1256", ["java", "-version"])    c.Submit(ctx, crms.JobSpec{..., Hold: true})
//	  crms.getJobs()                                  c.ListJobs(ctx, crms.JobFilter{})
//	  crms.getWorkers()                               c.Workers(ctx)
//	  crms.runJob("1256", ["wenzhe"])                 c.RunJob(ctx, id, worker)
//	  job = crms.getJob("1256")                       c.Wait(ctx, id) / c.GetJob(ctx, id)
//	  job.stateOfWorkers['wenzhe'].status             job.State, job.Worker
//	  job.stateOfWorkers['wenzhe'].stdouterr          c.ReadOutput(ctx, id)
//
// The job is created first (held: it does not run yet), then run on a worker
// named at that point, as in GoCRMS; only the job id is assigned by crms.
//
// Usage: gocrms-session ADDRESS [WORKER]
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/crms-dev/crms/clients/go/crms"
)

func main() { os.Exit(run(os.Args[1:])) }

// pyQuote quotes a string as Python's repr does for plain text ('...'), so
// this session prints what the Python one prints.
func pyQuote(s string) string {
	q := strconv.Quote(s)
	return "'" + strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`) + "'"
}

func run(args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "Usage: gocrms-session ADDRESS [WORKER]")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := crms.Dial(ctx, args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()

	// crms.getWorkers(): name -> parallel slots
	workers, err := c.Workers(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var slots []string
	target := ""
	for _, w := range workers {
		slots = append(slots, fmt.Sprintf("%s: %d", pyQuote(w.Name), w.Slots))
		if target == "" && w.State == crms.WorkerUp {
			target = w.Name
		}
	}
	fmt.Printf("workers: {%s}\n", strings.Join(slots, ", "))
	if len(args) > 1 {
		target = args[1]
	}
	if target == "" {
		fmt.Fprintln(os.Stderr, "no worker is up")
		return 1
	}

	// crms.createJob(...): created, not yet run
	job, err := c.Submit(ctx, crms.JobSpec{
		Command: []string{"sh", "-c", `echo "crms version 0.1"; echo "Picked up options: none" >&2`},
		Name:    "gocrms-session",
		Hold:    true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("created job %s: %s\n", job.ID, job.State)

	// crms.getJobs(): id -> state
	jobs, err := c.ListJobs(ctx, crms.JobFilter{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var states []string
	for _, j := range jobs {
		states = append(states, fmt.Sprintf("%s: %s", pyQuote(j.ID), pyQuote(j.State.String())))
	}
	fmt.Printf("jobs: {%s}\n", strings.Join(states, ", "))

	// crms.runJob(id, [worker])
	job, err = c.RunJob(ctx, job.ID, target)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("run job %s on %s: %s\n", job.ID, target, job.State)

	// job = crms.getJob(id); job.stateOfWorkers[worker].status / .stdouterr
	if _, err = c.Wait(ctx, job.ID); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	job, err = c.GetJob(ctx, job.ID)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	exit := "none"
	if job.ExitCode != nil {
		exit = fmt.Sprint(*job.ExitCode)
	}
	fmt.Printf("job %s on %s: %s (exit code %s)\n", job.ID, job.Worker, job.State, exit)
	out, err := c.ReadOutput(ctx, job.ID)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("stdouterr: %s\n", pyQuote(string(out.Stdout)+string(out.Stderr)))
	if job.State != crms.StateSucceeded {
		return 1
	}
	return 0
}
