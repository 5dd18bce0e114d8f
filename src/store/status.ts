/** etcd health as operators need it: each member's size, leader, raft index and alarms. */
import { create } from "@bufbuild/protobuf";
import { type EtcdMember, EtcdMemberSchema } from "../../gen/crms/v1/admin_pb.js";
import { internals } from "./internals.js";
import type { Store } from "./store.js";

export interface MemberStatus {
  members: EtcdMember[];
  alarms: string[];
  revision: number;
}

const alarmNames: Record<string, string> = {
  "0": "NONE",
  "1": "NOSPACE",
  "2": "CORRUPT",
  None: "NONE",
  Nospace: "NOSPACE",
  Corrupt: "CORRUPT",
};

/** Asks every member for its status, and the cluster for its alarms. */
export async function memberStatus(store: Store): Promise<MemberStatus> {
  const { etcd, memberClient } = internals(store);
  const list = await etcd.cluster.memberList({});
  const alarmRes = await etcd.maintenance.alarm({ action: "Get", alarm: "None", memberID: "0" });
  const alarmsByMember = new Map<string, string[]>();
  for (const a of alarmRes.alarms) {
    const name = alarmNames[String(a.alarm)] ?? String(a.alarm);
    const id = BigInt(a.memberID).toString(16);
    alarmsByMember.set(id, [...(alarmsByMember.get(id) ?? []), name]);
  }
  let revision = 0;
  const members: EtcdMember[] = [];
  for (const m of list.members) {
    const id = BigInt(m.ID).toString(16);
    const endpoint = m.clientURLs[0] ?? "";
    const member = create(EtcdMemberSchema, { endpoint, id, name: m.name, alarms: alarmsByMember.get(id) ?? [] });
    try {
      const s = await memberClient(endpoint).maintenance.status({});
      member.version = s.version;
      member.dbSize = BigInt(s.dbSize);
      member.dbSizeInUse = BigInt(s.dbSizeInUse || s.dbSize);
      member.leader = s.leader === s.header.member_id;
      member.raftIndex = BigInt(s.raftIndex);
      revision = Math.max(revision, Number(s.header.revision));
    } catch (err) {
      member.error = err instanceof Error ? err.message : String(err);
    }
    members.push(member);
  }
  return { members, alarms: [...new Set([...alarmsByMember.values()].flat())], revision };
}
