/**
 * Help for one command (`crms CMD --help`, `crms help CMD`) cut from the
 * usage text, and shell completion scripts built from the command table.
 */
import { COMMON_FLAGS, DEV_FLAGS, type Flags, flagNames, SERVER_FLAGS, WORKER_FLAGS } from "../config.js";
import { QUEUE_FLAGS, QUEUE_SUBCOMMANDS } from "./queue.js";
import { RESOURCE_FLAGS } from "./resources.js";

/** The options of a table of one type, long and short forms: `--output`, `-o`. */
function spellings(type: "string" | "boolean"): string[] {
  return Object.entries(COMMON_FLAGS as Flags)
    .filter(([, o]) => o.type === type)
    .flatMap(([name, o]) => [`--${name}`, ...(o.short ? [`-${o.short}`] : [])]);
}

/** The global options (taking a value, and flags): taken before or after the command. */
export const GLOBAL_VALUE_OPTIONS = spellings("string");
export const GLOBAL_FLAGS = spellings("boolean");

/** Each command with its own options (for completion; the parsers check them). */
export const COMMANDS: Record<string, string[]> = {
  submit: [
    "--name",
    "--env",
    "--cwd",
    "--label",
    "--constraint",
    "--on",
    "--priority",
    "--retries",
    "--lost-retries",
    "--timeout",
    "--hold",
    "--wait",
    "--array",
    "--after",
    "--request-id",
    "--keep-on-disconnect",
    ...flagNames(RESOURCE_FLAGS),
  ],
  jobs: ["--state", "--worker", "--label", "--array", "--tasks", "--sort", "--limit", "--watch", "-w"],
  job: [],
  logs: ["--follow", "-f"],
  history: ["--since", "--until", "--state", "--user", "--queue", "--worker", "--name", "--label", "--limit"],
  usage: ["--since", "--by"],
  kill: ["--grace", "--force"],
  run: ["--on"],
  release: ["--on"],
  requeue: ["--failed"],
  hold: [],
  delete: [],
  workers: ["--watch", "-w"],
  worker: flagNames(WORKER_FLAGS),
  drain: [],
  resume: [],
  stop: ["--keep-runs"],
  admin: ["--keep-finished", "--name", "--role", "--worker", "--bootstrap"],
  queue: QUEUE_FLAGS,
  server: flagNames(SERVER_FLAGS),
  dev: flagNames(DEV_FLAGS),
  completion: [],
  help: [],
  version: [],
};

const SUBCOMMANDS: Record<string, string[]> = {
  admin: ["status", "compact", "defrag", "disarm", "recover", "gc", "token"],
  worker: ["forget"],
  queue: QUEUE_SUBCOMMANDS,
  completion: ["bash", "zsh", "fish"],
  help: Object.keys(COMMANDS),
};

/** The entries of `usage` for `cmd` (an entry: a line indented two spaces and its deeper-indented lines), with the global options. */
export function usageOf(cmd: string, usage: string): string | undefined {
  const lines = usage.split("\n");
  const entries: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    if (!/^ {2}\S/.test(line)) continue;
    const words = line.trim().split(/\s+/);
    const alternatives = line.split("|").map((part) => part.trim().split(/\s+/)[0]);
    if (words[0] !== cmd && !(line.includes(" | ") && alternatives.includes(cmd))) continue;
    const entry = [line];
    while (i + 1 < lines.length && /^ {3,}\S/.test(lines[i + 1] ?? "")) entry.push(lines[++i] ?? "");
    entries.push(entry.join("\n"));
  }
  if (!entries.length) return undefined;
  const globalAt = lines.findIndex((l) => l.startsWith("Global:"));
  const global = globalAt >= 0 ? lines.slice(globalAt).join("\n") : "";
  return `Usage: crms ${cmd} ...\n\n${entries.join("\n")}\n\n${global}`.trimEnd();
}

/** `crms completion bash|zsh|fish`. */
export function completionScript(shell: string): string | undefined {
  const commands = Object.keys(COMMANDS).join(" ");
  const globals = [...GLOBAL_VALUE_OPTIONS, ...GLOBAL_FLAGS].join(" ");
  const cases = Object.entries(COMMANDS)
    .map(([cmd, opts]) => `    ${cmd}) words="${[...(SUBCOMMANDS[cmd] ?? []), ...opts].join(" ")}" ;;`)
    .join("\n");
  const bash = `# crms completion for bash: source <(crms completion bash)
_crms() {
  local cur=\${COMP_WORDS[COMP_CWORD]} cmd="" i words=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      ${GLOBAL_VALUE_OPTIONS.join("|")}) ((i++)) ;;
      -*) ;;
      *) cmd=\${COMP_WORDS[i]}; break ;;
    esac
  done
  if [[ -z $cmd ]]; then
    COMPREPLY=($(compgen -W "${commands} ${globals}" -- "$cur"))
    return
  fi
  case "$cmd" in
${cases}
  esac
  case "\${COMP_WORDS[COMP_CWORD-1]}" in
    -o|--output) COMPREPLY=($(compgen -W "table wide json yaml name" -- "$cur")); return ;;
  esac
  COMPREPLY=($(compgen -W "$words ${globals}" -- "$cur"))
}
complete -o default -F _crms crms
`;
  switch (shell) {
    case "bash":
      return bash;
    case "zsh":
      return `# crms completion for zsh: source <(crms completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash.split("\n").slice(1).join("\n")}`;
    case "fish": {
      const out = [
        "# crms completion for fish: crms completion fish | source",
        `complete -c crms -f -n __fish_use_subcommand -a "${commands}"`,
        ...[...GLOBAL_VALUE_OPTIONS, ...GLOBAL_FLAGS]
          .filter((o) => o.startsWith("--"))
          .map((o) => `complete -c crms -l ${o.slice(2)}`),
        `complete -c crms -s o -l output -x -a "table wide json yaml name"`,
      ];
      for (const [cmd, opts] of Object.entries(COMMANDS)) {
        const cond = `__fish_seen_subcommand_from ${cmd}`;
        if (SUBCOMMANDS[cmd]) out.push(`complete -c crms -f -n "${cond}" -a "${SUBCOMMANDS[cmd].join(" ")}"`);
        for (const o of opts) {
          out.push(
            o.startsWith("--")
              ? `complete -c crms -n "${cond}" -l ${o.slice(2)}`
              : `complete -c crms -n "${cond}" -s ${o.slice(1)}`,
          );
        }
      }
      return `${out.join("\n")}\n`;
    }
    default:
      return undefined;
  }
}

/**
 * Moves the global options written before the command to just after it
 * (`crms --server X jobs` = `crms jobs --server X`), so each command's parser
 * sees them; what follows the command is left as it is.
 */
export function hoistGlobals(argv: string[]): { cmd: string | undefined; args: string[] } {
  const globals: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i] ?? "";
    const name = a.split("=")[0] ?? a;
    if (GLOBAL_VALUE_OPTIONS.includes(name)) {
      globals.push(a);
      if (!a.includes("=") && i + 1 < argv.length) globals.push(argv[++i] ?? "");
    } else if (GLOBAL_FLAGS.includes(a)) globals.push(a);
    else break;
  }
  const [cmd, ...rest] = argv.slice(i);
  return { cmd, args: [...globals, ...rest] };
}
