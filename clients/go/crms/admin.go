package crms

import (
	"context"

	crmsv1 "github.com/crms-dev/crms/clients/go/gen/crms/v1"
)

// ClusterStatus reports etcd members, database size against quota, alarms,
// and counts of workers and jobs.
func (c *Client) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	resp, err := c.admin.GetClusterStatus(ctx, &crmsv1.GetClusterStatusRequest{})
	if err != nil {
		return nil, wrapError("GetClusterStatus", err)
	}
	return clusterStatusFromProto(resp), nil
}

// Compact compacts etcd's history up to revision (0: the current one) and
// returns the revision compacted to.
func (c *Client) Compact(ctx context.Context, revision int64) (int64, error) {
	resp, err := c.admin.Compact(ctx, &crmsv1.CompactRequest{Revision: revision})
	if err != nil {
		return 0, wrapError("Compact", err)
	}
	return resp.GetRevision(), nil
}

// Defragment defragments every etcd member, one at a time, and returns the
// members before and after.
func (c *Client) Defragment(ctx context.Context) (before, after []EtcdMember, err error) {
	resp, err := c.admin.Defragment(ctx, &crmsv1.DefragmentRequest{})
	if err != nil {
		return nil, nil, wrapError("Defragment", err)
	}
	return membersFromProto(resp.GetBefore()), membersFromProto(resp.GetAfter()), nil
}

// DisarmAlarms clears etcd alarms and returns those that were active.
func (c *Client) DisarmAlarms(ctx context.Context) ([]string, error) {
	resp, err := c.admin.DisarmAlarms(ctx, &crmsv1.DisarmAlarmsRequest{})
	if err != nil {
		return nil, wrapError("DisarmAlarms", err)
	}
	return resp.GetDisarmed(), nil
}

// Recover gets etcd out of NOSPACE: compact, defragment each member, disarm,
// then check that a write works. Live jobs are kept.
func (c *Client) Recover(ctx context.Context) (*RecoverResult, error) {
	resp, err := c.admin.Recover(ctx, &crmsv1.RecoverRequest{})
	if err != nil {
		return nil, wrapError("Recover", err)
	}
	return &RecoverResult{
		CompactedRevision: resp.GetCompactedRevision(),
		Members:           membersFromProto(resp.GetMembers()),
		Disarmed:          resp.GetDisarmed(),
		Writable:          resp.GetWritable(),
	}, nil
}

// RunRetention deletes finished jobs past their retention now and returns
// how many it deleted.
func (c *Client) RunRetention(ctx context.Context) (uint64, error) {
	resp, err := c.admin.RunRetention(ctx, &crmsv1.RunRetentionRequest{})
	if err != nil {
		return 0, wrapError("RunRetention", err)
	}
	return resp.GetDeleted(), nil
}
