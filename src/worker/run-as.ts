/**
 * `crms worker --run-as USER`: the uid, gid and home of the account jobs run
 * as, so that a job does not run with the worker's (root) privileges.
 */
import { readFileSync } from "node:fs";

/** The account a job runs as. */
export interface RunAs {
  user: string;
  uid: number;
  gid: number;
  home: string;
}

/** Looks a user name (or numeric uid) up in /etc/passwd; throws when it is not there. */
export function resolveRunAs(user: string, passwd = "/etc/passwd"): RunAs {
  const lines = readFileSync(passwd, "utf8").split("\n");
  for (const line of lines) {
    const [name, , uid, gid, , home] = line.split(":");
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (name === user || uid === user) return { user: name, uid: Number(uid), gid: Number(gid), home: home || "/" };
  }
  throw new Error(`--run-as: no user ${JSON.stringify(user)} in ${passwd}`);
}

/** Checks that this process may switch to the account (it must be root to run jobs as another user). */
export function checkCanRunAs(runAs: RunAs): void {
  const me = process.getuid?.();
  if (me !== undefined && me !== 0 && me !== runAs.uid) {
    throw new Error(`--run-as ${runAs.user} needs the worker to run as root (it runs as uid ${me})`);
  }
}
