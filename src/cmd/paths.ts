/** Where crms keeps local state: $CRMS_HOME, else $XDG_STATE_HOME/crms, else ~/.local/state/crms. */
import { homedir } from "node:os";
import { join } from "node:path";

export function stateDir(): string {
  if (process.env.CRMS_HOME) return process.env.CRMS_HOME;
  return join(process.env.XDG_STATE_HOME || join(homedir(), ".local", "state"), "crms");
}

export function defaultDataDir(name: string): string {
  return join(stateDir(), name);
}
